/**
 * Route schemas compiled at their route's first request (src/api/lazy-schema-compilers.ts):
 * the answers are those of fastify's default compilers (the same 400s, the same coercions and
 * defaults), every schema of the real server compiles, and a schema ajv refuses is reported
 * by compileRouteSchemas and answers 500 instead of stopping the start.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { attachPendingSchemas, compileRouteSchemas, lazySchemaController } from '../src/api/lazy-schema-compilers.ts';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';

const schema = {
  params: { type: 'object', properties: { id: { type: 'integer', minimum: 1 } }, required: ['id'] },
  querystring: {
    type: 'object', additionalProperties: false,
    properties: { limit: { type: 'integer', maximum: 100, default: 10 }, tags: { type: 'array', items: { type: 'string', pattern: '^[a-z]+$' } } },
  },
  body: {
    type: 'object', required: ['name'],
    properties: { name: { type: 'string', minLength: 2 }, when: { type: 'string', format: 'date' }, n: { type: 'number' } },
  },
};

function server(lazy: boolean): FastifyInstance {
  const controller = lazySchemaController();
  const app = Fastify({ ajv: { customOptions: { validateSchema: false } }, ...(lazy ? { schemaController: controller.options } : {}) });
  if (lazy) attachPendingSchemas(app, controller.pending);
  app.post('/things/:id', { schema }, async (request) => ({ params: request.params, query: request.query, body: request.body }));
  return app;
}

/** Requests valid and not, each part of the schema refusing in turn. */
const requests = [
  { url: '/things/3?limit=7&tags=ab&tags=cd', payload: { name: 'ok', n: '4.5', extra: true } },
  { url: '/things/3', payload: { name: 'ok', when: '2026-12-07' } },
  { url: '/things/0', payload: { name: 'ok' } },
  { url: '/things/x', payload: { name: 'ok' } },
  { url: '/things/3?limit=101', payload: { name: 'ok' } },
  { url: '/things/3?other=1', payload: { name: 'ok' } },
  { url: '/things/3?tags=AB', payload: { name: 'ok' } },
  { url: '/things/3', payload: { name: 'o' } },
  { url: '/things/3', payload: { when: '2026-12-07' } },
  { url: '/things/3', payload: { name: 'ok', when: '7 December' } },
  { url: '/things/3', payload: { name: 'ok', n: 'four' } },
  { url: '/things/3', payload: '[1, 2]', headers: { 'content-type': 'application/json' } },
];

describe('route schemas compiled at their first request', () => {
  it('answers every request as fastify\'s default compiler does (400s, coercions, defaults)', async () => {
    const eager = server(false);
    const lazy = server(true);
    try {
      let refused = 0;
      for (const r of requests) {
        const a = await eager.inject({ method: 'POST', ...r });
        const b = await lazy.inject({ method: 'POST', ...r });
        assert.equal(b.statusCode, a.statusCode, `${r.url} ${JSON.stringify(r.payload)}`);
        assert.deepEqual(b.json(), a.json(), `${r.url} ${JSON.stringify(r.payload)}`);
        if (a.statusCode === 400) refused++;
      }
      assert.ok(refused >= 8, `only ${refused} requests refused`);
      // The coerced and defaulted values reach the handler.
      const ok = (await lazy.inject({ method: 'POST', url: '/things/3', payload: { name: 'ok', n: '4.5' } })).json();
      assert.deepEqual(ok, { params: { id: 3 }, query: { limit: 10 }, body: { name: 'ok', n: 4.5 } });
    } finally {
      await eager.close();
      await lazy.close();
    }
  });

  it('reports a schema ajv refuses, and its route answers 500 rather than stopping the start', async () => {
    const controller = lazySchemaController();
    const app = Fastify({ schemaController: controller.options });
    attachPendingSchemas(app, controller.pending);
    app.get('/fine', { schema: { querystring: { type: 'object', properties: { a: { type: 'string' } } } } }, async () => 'fine');
    app.get('/broken', { schema: { querystring: { type: 'object', properties: { a: { type: 'string', notAKeyword: 1 } } } } }, async () => 'no');
    try {
      await app.ready();
      assert.equal((await app.inject({ method: 'GET', url: '/broken?a=1' })).statusCode, 500);
      assert.equal((await app.inject({ method: 'GET', url: '/fine?a=1' })).statusCode, 200);
      const failed = await compileRouteSchemas(app);
      // The GET route and the HEAD route fastify adds with the same schema.
      assert.deepEqual(failed.map((f) => f.route).sort(), ['GET /broken querystring', 'HEAD /broken querystring']);
      for (const f of failed) assert.match(f.error, /notAKeyword/);
    } finally {
      await app.close();
    }
  });

  describe('Atrium\'s own routes', () => {
    let atrium: RunningAtrium;
    before(async () => { atrium = await startAtrium({}); });
    after(async () => { await atrium?.close(); });

    it('every route schema compiles', async () => {
      assert.deepEqual(await compileRouteSchemas(atrium.app), []);
    });
  });
});
