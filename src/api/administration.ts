/**
 * /api/admin: the administrators' users and DICOM peers, through the same modules as the
 * CLI (`atrium user`, `atrium peer add`). A site administrator acts for their own sites only
 * (a user of another site, or a peer of another site, is answered as one that does not
 * exist); a territory administrator for every site. Every change is audited as user-admin.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Archive } from '../archive/archive.ts';
import { AuditTrail } from '../access/audit.ts';
import { sitesActedFor } from '../access/policy.ts';
import { actorOf, isRole, type Principal, type Role } from '../access/principal.ts';
import { UserDirectory, UserError, type User, type UserChanges } from '../access/users.ts';
import { addUser, userSummary } from '../cli/users.ts';
import { peerEntryOf } from '../cli/peers.ts';
import { ConfigError, type AtriumConfig, type PeerConfig } from '../config/config.ts';
import { PeerExists } from '../config/peer-directory.ts';
import { HttpProblem, problemErrorHandler } from '../dicomweb/problem.ts';
import { rulesSendingTo } from '../dimse/routing.ts';
import { requireCapability } from './access-scope.ts';

const roleList = { type: 'array', minItems: 1, maxItems: 6, items: { type: 'string', maxLength: 32 } } as const;
const siteList = { type: 'array', maxItems: 64, items: { type: 'string', minLength: 1, maxLength: 64 } } as const;

/** The site codes a principal administers, or undefined for every site. */
function administeredSites(archive: Archive, p: Principal): Set<string> | undefined {
  const ids = sitesActedFor(p);
  return ids === undefined ? undefined : new Set(ids.map((id) => archive.siteById.get(id)?.code ?? ''));
}

export async function administrationRoutes(app: FastifyInstance, options: { archive: Archive; config: AtriumConfig }): Promise<void> {
  const { archive, config } = options;
  const audit = new AuditTrail(archive.index.sql);
  const directory = new UserDirectory(archive.index.sql, archive.sites, archive.siteById);
  app.setErrorHandler(problemErrorHandler('administration request'));
  app.addHook('preHandler', requireCapability('administer-users', audit));
  app.addHook('preHandler', async (request) => {
    // Machine clients trusted for the territory may; people must be administrators (not a patient sharing).
    const p = request.principal!;
    if (p.kind === 'user' && !p.roles.includes('site-admin') && !p.roles.includes('territory-admin')) throw new HttpProblem(403, 'this caller may not administer users');
  });
  const who = (request: FastifyRequest) => ({ ...actorOf(request.principal!), source: request.ip, via: 'api' as const });
  const userError = (e: unknown): never => {
    if (e instanceof UserError) throw new HttpProblem(400, e.message, e.code);
    if (e instanceof ConfigError) throw new HttpProblem(400, e.message);
    throw e;
  };

  /** What the caller sees of a user: only the sites it administers. */
  const visible = (request: FastifyRequest, u: User) => {
    const mine = administeredSites(archive, request.principal!);
    const summary = userSummary(archive, u);
    return mine === undefined ? summary : { ...summary, sites: summary.sites.filter((s) => mine.has(s)) };
  };
  /** A user the caller may change: every one of its sites administered by the caller (else as if absent). */
  const mayChange = (request: FastifyRequest, u: User | undefined): u is User => {
    const mine = sitesActedFor(request.principal!);
    if (!u) return false;
    if (mine === undefined) return true;
    if (u.roles.includes('territory-admin') || u.siteIds.length === 0) return false;
    return u.siteIds.every((id) => mine.includes(id));
  };
  /** Roles and sites a site administrator may give: not the territory's, only its own sites. */
  const checkGiven = (request: FastifyRequest, roles: string[] | undefined, sites: string[] | undefined) => {
    for (const r of roles ?? []) if (!isRole(r)) throw new HttpProblem(400, `${r} is not a role`);
    const mine = administeredSites(archive, request.principal!);
    if (mine === undefined) return;
    if (roles?.includes('territory-admin')) throw new HttpProblem(403, 'only the territory\'s administrators make territory administrators');
    if (sites !== undefined && sites.length === 0) throw new HttpProblem(400, 'name at least one of your sites');
    for (const s of sites ?? []) if (!mine.has(s)) throw new HttpProblem(403, `${s} is not one of your sites`);
  };

  app.get('/users', async (request) => {
    const mine = sitesActedFor(request.principal!);
    const users = (await directory.listUsers()).filter((u) => mine === undefined || u.siteIds.some((id) => mine.includes(id)));
    return { users: users.map((u) => visible(request, u)) };
  });

  app.post<{ Body: { login: string; name: string; roles: string[]; sites?: string[]; rpps?: string; password?: string } }>('/users', {
    schema: {
      body: {
        type: 'object', required: ['login', 'name', 'roles'], additionalProperties: false,
        properties: {
          login: { type: 'string', minLength: 1, maxLength: 64 }, name: { type: 'string', minLength: 1, maxLength: 256 },
          roles: roleList, sites: siteList, rpps: { type: 'string', maxLength: 11 }, password: { type: 'string', maxLength: 1024 },
        },
      },
    },
  }, async (request, reply) => {
    const b = request.body;
    checkGiven(request, b.roles, b.sites ?? []);
    // Patient accounts name their record: made with the CLI (atrium user add --patient), not here.
    if (b.roles.includes('patient')) throw new HttpProblem(400, 'patient accounts are made with `atrium user add --patient`');
    const user = await addUser(archive, {
      login: b.login, displayName: b.name, roles: b.roles as Role[], sites: b.sites ?? [],
      ...(b.rpps ? { rpps: b.rpps } : {}), ...(b.password ? { password: b.password } : {}),
    }, { actor: request.principal!.id, via: 'api' }).catch(userError);
    return reply.code(201).send({ user: visible(request, user) });
  });

  app.put<{ Params: { login: string }; Body: { name?: string; roles?: string[]; sites?: string[]; rpps?: string; password?: string; disabled?: boolean } }>('/users/:login', {
    schema: {
      params: { type: 'object', required: ['login'], properties: { login: { type: 'string', minLength: 1, maxLength: 64 } } },
      body: {
        type: 'object', additionalProperties: false,
        properties: {
          name: { type: 'string', minLength: 1, maxLength: 256 }, roles: roleList, sites: siteList,
          rpps: { type: 'string', maxLength: 11 }, password: { type: 'string', maxLength: 1024 }, disabled: { type: 'boolean' },
        },
      },
    },
  }, async (request) => {
    const { login } = request.params;
    const user = await directory.findByLogin(login);
    if (!mayChange(request, user)) throw new HttpProblem(404, `user ${login} does not exist`);
    const b = request.body;
    checkGiven(request, b.roles, b.sites);
    if (b.roles?.includes('patient') !== user.roles.includes('patient') && b.roles !== undefined) throw new HttpProblem(400, 'a professional account does not become a patient account, nor the reverse');
    if (b.disabled === true && user.login === request.principal!.id) throw new HttpProblem(400, 'an administrator does not disable their own account');
    const changes: UserChanges = {
      ...(b.name !== undefined ? { displayName: b.name } : {}), ...(b.roles !== undefined ? { roles: b.roles as Role[] } : {}),
      ...(b.sites !== undefined ? { sites: b.sites } : {}), ...(b.rpps ? { rpps: b.rpps } : {}),
      ...(b.password ? { password: b.password } : {}), ...(b.disabled !== undefined ? { disabled: b.disabled } : {}),
    };
    const updated = await directory.updateUser(login, changes).catch(userError);
    await audit.record({
      action: 'user-admin', outcome: 'success', ...who(request),
      details: {
        operation: b.disabled === true ? 'disable' : b.disabled === false && user.disabledAt !== undefined ? 'enable' : 'update', login,
        ...(b.roles ? { roles: b.roles } : {}), ...(b.sites ? { sites: b.sites } : {}), ...(b.name ? { name: true } : {}),
        ...(b.password ? { localPassword: true } : {}), ...(b.rpps ? { rpps: b.rpps } : {}),
      },
    });
    return { user: visible(request, updated) };
  });

  // ---- DICOM peers: the configuration file's (read at start) and those added here, kept in the
  // index for every node at once (src/config/peer-directory.ts) ----
  const peerVisible = (request: FastifyRequest, site: unknown) => {
    const mine = administeredSites(archive, request.principal!);
    return mine === undefined || (typeof site === 'string' && mine.has(site));
  };

  app.get('/peers', async (request) => ({
    peers: (await archive.peers.fresh()).filter((p) => peerVisible(request, p.site)).map((p) => ({
      aeTitle: p.aeTitle, site: p.site, ...(p.host !== undefined ? { host: p.host, port: p.port } : {}), may: p.may, ...(p.territory ? { territory: true } : {}),
      origin: archive.peers.originOf(p.aeTitle),
    })),
    editable: true,
  }));

  type PeerBody = { site: string; host?: string; port?: number; store?: boolean; query?: boolean; retrieve?: boolean };
  const peerProperties = {
    site: { type: 'string', minLength: 1, maxLength: 64 },
    host: { type: 'string', minLength: 1, maxLength: 253, pattern: '^[A-Za-z0-9.:-]+$' }, port: { type: 'integer', minimum: 1, maximum: 65535 },
    store: { type: 'boolean' }, query: { type: 'boolean' }, retrieve: { type: 'boolean' },
  };
  /** A peer's entry as `atrium peer add` writes it (checked the same way: AE title, site, host and port together). */
  const peerEntry = (aeTitle: string, b: PeerBody): PeerConfig => peerEntryOf(aeTitle, {
    site: [b.site], ...(b.host !== undefined ? { host: b.host } : {}), ...(b.port !== undefined ? { port: String(b.port) } : {}),
    ...(b.store ? { store: true } : {}), ...(b.query ? { query: true } : {}), ...(b.retrieve ? { retrieve: true } : {}),
  }, config) as unknown as PeerConfig;

  app.post<{ Body: PeerBody & { aeTitle: string } }>('/peers', {
    schema: {
      body: {
        type: 'object', required: ['aeTitle', 'site'], additionalProperties: false,
        properties: { aeTitle: { type: 'string', minLength: 1, maxLength: 16 }, ...peerProperties },
      },
    },
  }, async (request, reply) => {
    const b = request.body;
    if (!peerVisible(request, b.site)) throw new HttpProblem(403, `${b.site} is not one of your sites`);
    let entry: PeerConfig;
    try {
      entry = peerEntry(b.aeTitle, b);
      await archive.peers.add(entry, request.principal!.id);
    } catch (e) {
      if (e instanceof PeerExists) throw new HttpProblem(409, e.message);
      userError(e);
      throw e;
    }
    await audit.record({ action: 'user-admin', outcome: 'success', ...who(request), details: { operation: 'peer-add', peer: entry } });
    return reply.code(201).send({ peer: entry, restartNeeded: false });
  });

  // A peer added here, changed for every node (a modality's new address, what it may do); the configuration file's are changed in the file.
  app.put<{ Params: { ae: string }; Body: PeerBody }>('/peers/:ae', {
    schema: {
      params: { type: 'object', required: ['ae'], properties: { ae: { type: 'string', minLength: 1, maxLength: 16 } } },
      body: { type: 'object', required: ['site'], additionalProperties: false, properties: peerProperties },
    },
  }, async (request) => {
    const { ae } = request.params;
    const before = await archive.peers.find(ae);
    if (!before || !peerVisible(request, before.site)) throw new HttpProblem(404, `peer ${ae} does not exist`);
    if (archive.peers.originOf(ae) === 'file') throw new HttpProblem(409, `peer ${ae} is in the configuration file: change it there, then restart`);
    if (!peerVisible(request, request.body.site)) throw new HttpProblem(403, `${request.body.site} is not one of your sites`);
    let entry: PeerConfig;
    try {
      entry = peerEntry(ae, request.body);
    } catch (e) {
      userError(e);
      throw e;
    }
    const rules = rulesSendingTo(config.routing.rules, ae);
    if (rules.length > 0 && (!entry.host || !entry.port)) throw new HttpProblem(409, `forwarding rules send to ${ae} (${rules.join(', ')}): it needs a host and port`, 'peer-in-routing-rules');
    if (!(await archive.peers.update(entry))) throw new HttpProblem(404, `peer ${ae} does not exist`);
    await audit.record({ action: 'user-admin', outcome: 'success', ...who(request), details: { operation: 'peer-update', peer: entry, before } });
    return { peer: entry, restartNeeded: false };
  });

  // A peer added here, removed for every node; the configuration file's are removed in the file (then a restart).
  app.delete<{ Params: { ae: string } }>('/peers/:ae', {
    schema: { params: { type: 'object', required: ['ae'], properties: { ae: { type: 'string', minLength: 1, maxLength: 16 } } } },
  }, async (request) => {
    const { ae } = request.params;
    const peer = await archive.peers.find(ae);
    if (!peer || !peerVisible(request, peer.site)) throw new HttpProblem(404, `peer ${ae} does not exist`);
    if (archive.peers.originOf(ae) === 'file') throw new HttpProblem(409, `peer ${ae} is in the configuration file: remove it there, then restart`);
    const rules = rulesSendingTo(config.routing.rules, ae);
    if (rules.length > 0) throw new HttpProblem(409, `forwarding rules send to ${ae} (${rules.join(', ')}): take it out of routing.rules in the configuration file first`, 'peer-in-routing-rules');
    if (!(await archive.peers.remove(ae))) throw new HttpProblem(404, `peer ${ae} does not exist`);
    await audit.record({ action: 'user-admin', outcome: 'success', ...who(request), details: { operation: 'peer-remove', peer: { aeTitle: ae, site: peer.site } } });
    return { removed: ae };
  });
}
