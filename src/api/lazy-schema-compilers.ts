/**
 * Route schemas compiled at their route's first request instead of at start.
 *
 * Fastify compiles every route's JSON schemas with ajv when the route is registered: with
 * Atrium's few hundred routes that was about half a second of CPU before the first answer,
 * most of it for routes a given start never serves. The factories below wrap fastify's own
 * default compilers (@fastify/ajv-compiler and @fastify/fast-json-stringify-compiler, loaded
 * from fastify's own dependencies when first needed, with the same external schemas and the
 * same options fastify passes them): the compiled functions, their `.errors` and therefore the
 * 400 answers are the default ones; only the moment of compiling moves.
 *
 * A schema ajv refuses (strict mode: an unknown keyword) no longer stops the start: the route
 * answers 500 at its first request. compileRouteSchemas() compiles everything that is still
 * pending (serve runs it in the background after listening and logs what fails; tests call it).
 */
import { createRequire } from 'node:module';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';

type CompilersFactory = NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>;
type Validator = ((data: unknown, dataCxt?: unknown) => unknown) & { errors?: unknown };
type Serializer = (data: unknown) => string;
// What fastify passes the factories and their compilers (its types name ajv's, not needed here).
interface RouteSchema { schema: unknown; method: string; url: string; httpPart?: string; httpStatus?: string; contentType?: string }
type BuildValidator = (externalSchemas: unknown, options: unknown) => (routeSchema: RouteSchema) => Validator;
type BuildSerializer = (externalSchemas: unknown, options: unknown) => (routeSchema: RouteSchema) => Serializer;

/** A schema still to compile: what it is for (for the log), and how to compile it now. */
export interface PendingSchema { route: string; compile(): void }

// fastify's own dependencies, resolved as fastify resolves them.
const requireFromFastify = createRequire(createRequire(import.meta.url).resolve('fastify'));

const pendingOf = new WeakMap<object, Set<PendingSchema>>();

/**
 * The schemaController option of a Fastify server whose route schemas compile lazily; give
 * the server to attachPendingSchemas() once made, so that compileRouteSchemas() finds them.
 */
export function lazySchemaController(): { options: NonNullable<FastifyServerOptions['schemaController']>; pending: Set<PendingSchema> } {
  const pending = new Set<PendingSchema>();
  let validatorPool: BuildValidator | undefined;
  let serializerPool: BuildSerializer | undefined;
  const buildValidator: BuildValidator = (externalSchemas, options) => {
    let compilerOfRoute: ReturnType<BuildValidator> | undefined;
    const realCompiler = () => {
      validatorPool ??= (requireFromFastify('@fastify/ajv-compiler') as () => BuildValidator)();
      return (compilerOfRoute ??= validatorPool(externalSchemas, options));
    };
    return (routeSchema) => lazyValidator(() => realCompiler()(routeSchema), `${routeSchema.method} ${routeSchema.url} ${routeSchema.httpPart}`, pending);
  };
  const buildSerializer: BuildSerializer = (externalSchemas, options) => {
    let compilerOfRoute: ReturnType<BuildSerializer> | undefined;
    const realCompiler = () => {
      serializerPool ??= (requireFromFastify('@fastify/fast-json-stringify-compiler') as () => BuildSerializer)();
      return (compilerOfRoute ??= serializerPool(externalSchemas, options));
    };
    return (routeSchema) => lazySerializer(() => realCompiler()(routeSchema), `${routeSchema.method} ${routeSchema.url} response ${routeSchema.httpStatus}`, pending);
  };
  const compilersFactory = { buildValidator, buildSerializer } as unknown as CompilersFactory;
  return { options: { compilersFactory }, pending };
}

export function attachPendingSchemas(app: FastifyInstance, pending: Set<PendingSchema>): void {
  pendingOf.set(app, pending);
}

/**
 * A validator that compiles at its first use. Fastify calls it as ajv's functions
 * (`validate(data, { parentData, parentDataProperty })` when it has a `schemaEnv`) and reads
 * `.errors` after a false answer: both are forwarded to the compiled function.
 */
function lazyValidator(compile: () => Validator, route: string, pending: Set<PendingSchema>): Validator {
  let real: Validator | undefined;
  const entry: PendingSchema = { route, compile: () => { compiled(); } };
  const compiled = (): Validator => {
    if (!real) {
      real = compile();
      pending.delete(entry);
    }
    return real;
  };
  const validate: Validator = function (data: unknown, dataCxt?: unknown) {
    const v = compiled();
    const result = v(data, dataCxt);
    validate.errors = v.errors;
    return result;
  };
  // ajv's function properties, read from the compiled one (fastify tests schemaEnv).
  for (const property of ['schemaEnv', 'schema', 'source', 'evaluated'] as const) {
    Object.defineProperty(validate, property, { get: () => (compiled() as unknown as Record<string, unknown>)[property], enumerable: false });
  }
  pending.add(entry);
  return validate;
}

function lazySerializer(compile: () => Serializer, route: string, pending: Set<PendingSchema>): Serializer {
  let real: Serializer | undefined;
  const entry: PendingSchema = { route, compile: () => { compiled(); } };
  const compiled = (): Serializer => {
    if (!real) {
      real = compile();
      pending.delete(entry);
    }
    return real;
  };
  pending.add(entry);
  return (data: unknown) => compiled()(data);
}

/**
 * Compiles every route schema of `app` not compiled yet, `slice` of them at a time between
 * other work (setImmediate), and returns the routes whose schema does not compile, with why.
 */
export async function compileRouteSchemas(app: FastifyInstance, slice = 8): Promise<{ route: string; error: string }[]> {
  const failed: { route: string; error: string }[] = [];
  const pending = pendingOf.get(app);
  if (!pending) return failed;
  const seen = new Set<PendingSchema>();
  for (;;) {
    const batch = [...pending].filter((p) => !seen.has(p)).slice(0, slice);
    if (batch.length === 0) return failed;
    for (const p of batch) {
      seen.add(p);
      try {
        p.compile();
      } catch (e) {
        failed.push({ route: p.route, error: e instanceof Error ? e.message : String(e) });
      }
    }
    await new Promise((r) => setImmediate(r));
  }
}
