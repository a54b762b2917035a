import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Archive } from '../archive/archive.ts';
import { AuditTrail, patientRef, patientRefOf, patientRefsOfStudies } from '../access/audit.ts';
import type { Authenticator } from '../access/login.ts';
import type { AttemptLimiter } from '../access/attempt-limits.ts';
import { cookieHeader, secureCookieFor, sessionCookieName } from './auth.ts';
import { AccessPolicy, reasonToSee } from '../access/policy.ts';
import { actorOf } from '../access/principal.ts';
import { EMERGENCY_ACCESS_HOURS, Grants } from '../access/grants.ts';
import { ShareLinkError, ShareLinks } from '../access/share-links.ts';
import { UserDirectory } from '../access/users.ts';
import { HttpProblem, problemErrorHandler } from '../dicomweb/problem.ts';
import { requireCapability, scopeOfRequest } from './access-scope.ts';

const uid = { type: 'string', pattern: '^[0-9.]{1,64}$' } as const;
const patientSchema = {
  type: 'object', required: ['site', 'PatientID'], additionalProperties: false,
  properties: { site: { type: 'string', minLength: 1, maxLength: 64 }, PatientID: { type: 'string', minLength: 1, maxLength: 64 }, IssuerOfPatientID: { type: 'string', minLength: 1, maxLength: 64 } },
} as const;
const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: '^[0-9]{1,12}$' } } } as const;

interface PatientKey { site: string; PatientID: string; IssuerOfPatientID?: string }
interface Target { StudyInstanceUID?: string; patient?: PatientKey }

/** patientRef of patient records by index id (records no longer indexed are left out). */
async function patientRefsOfRecords(archive: Archive, ids: number[]): Promise<string[]> {
  const records = await Promise.all(ids.map((id) => archive.index.patientRecord(id)));
  return records.flatMap((r) => (r ? [patientRefOf(archive.siteById, r)] : []));
}

/**
 * POST /share/open: whoever holds a share link (a patient instead of a CD, a colleague)
 * opens it, with its PIN when it has one, and gets a session that sees only what the link
 * shares, until the link is revoked or expires. Attempts are limited per address here and
 * per link in the index (five wrong PINs lock it); every opening and refusal is audited.
 */
export async function shareLinkRoutes(app: FastifyInstance, options: { archive: Archive; authenticator: Authenticator; secureCookie: boolean; limiter: AttemptLimiter }): Promise<void> {
  const { archive, authenticator } = options;
  const audit = new AuditTrail(archive.index.sql);
  const links = new ShareLinks(archive.index.sql);
  const { limiter } = options;
  app.setErrorHandler(problemErrorHandler('share link request'));

  app.post<{ Body: { token: string; pin?: string } }>('/open', {
    schema: {
      body: {
        type: 'object', required: ['token'], additionalProperties: false,
        properties: { token: { type: 'string', minLength: 1, maxLength: 128 }, pin: { type: 'string', maxLength: 16 } },
      },
    },
  }, async (request, reply) => {
    const origin = { actor: 'share-link', actorKind: 'share-link' as const, source: request.ip, via: 'portal' as const };
    const limit = await limiter.hit(request.ip);
    if (!limit.allowed) {
      if (limit.firstRefusal) await audit.record({ action: 'share-open', outcome: 'refused', ...origin, details: { why: 'rate-limited' } });
      reply.header('Retry-After', String(limit.retryAfterSeconds));
      throw new HttpProblem(429, `too many attempts from this address: try again in ${limit.retryAfterSeconds} s`);
    }
    let link;
    try {
      link = await links.open(request.body.token, request.body.pin);
    } catch (e) {
      if (!(e instanceof ShareLinkError)) throw e;
      await audit.record({
        action: 'share-open', outcome: 'refused', ...origin, ...(e.linkId !== undefined ? { actor: `share-link:${e.linkId}` } : {}),
        details: { why: e.code, ...(e.linkId !== undefined ? { link: e.linkId } : {}) },
      });
      // An unknown, expired or revoked link is simply gone; a PIN problem says so.
      const status = e.code === 'pin-required' || e.code === 'wrong-pin' ? 401 : e.code === 'locked' ? 423 : 404;
      throw new HttpProblem(status, e.message);
    }
    const opened = await authenticator.openShareLinkSession(link.id, request.ip);
    const patients = link.StudyInstanceUID !== undefined
      ? await patientRefsOfStudies(archive.index, archive.siteById, [link.StudyInstanceUID])
      : await patientRefsOfRecords(archive, [link.patientId!]);
    await audit.record({
      action: 'share-open', outcome: 'success', ...origin, actor: opened.principal.id, patients,
      ...(link.StudyInstanceUID ? { StudyInstanceUID: link.StudyInstanceUID } : {}), details: { link: link.id },
    });
    reply.header('Set-Cookie', cookieHeader(sessionCookieName, opened.cookieValue, {
      secure: secureCookieFor(request, options.secureCookie), path: '/', maxAgeSeconds: Math.max(1, (Date.parse(link.expiresAt) - Date.now()) / 1000),
    }));
    return { link: { id: link.id, expiresAt: link.expiresAt, ...(link.StudyInstanceUID ? { StudyInstanceUID: link.StudyInstanceUID } : {}) }, csrfToken: opened.session.csrfToken };
  });
}

/**
 * /api/shares, /api/emergency-access and /api/audit: sharing an exam or a patient's exams
 * with a professional or by a link (instead of a CD), break-the-glass access and its review,
 * and "who looked at my images?". Each decision is the access policy's; each act is audited.
 */
export async function sharingRoutes(app: FastifyInstance, options: { archive: Archive; publicBaseUrl?: string }): Promise<void> {
  const { archive } = options;
  const audit = new AuditTrail(archive.index.sql);
  const policy = new AccessPolicy(archive.index.sql);
  const grants = new Grants(archive.index.sql);
  const links = new ShareLinks(archive.index.sql);
  const who = (request: FastifyRequest) => ({ ...actorOf(request.principal!), source: request.ip, via: 'api' as const });

  app.setErrorHandler(problemErrorHandler('sharing request'));

  /** The study or patient record a request names, if it exists and the caller may see it (else as if absent). */
  const resolve = async (request: FastifyRequest, target: Target): Promise<{ StudyInstanceUID?: string; patientId?: number; patientIds?: number[]; patients: string[] }> => {
    const scope = await scopeOfRequest(policy, request);
    if ((target.StudyInstanceUID === undefined) === (target.patient === undefined)) throw new HttpProblem(400, 'name either StudyInstanceUID or patient');
    if (target.StudyInstanceUID !== undefined) {
      const study = await archive.index.studyPatient(target.StudyInstanceUID);
      if (study && reasonToSee(scope, study)) return { StudyInstanceUID: target.StudyInstanceUID, patients: [patientRefOf(archive.siteById, study)] };
      throw new HttpProblem(404, `study ${target.StudyInstanceUID} is not in the archive`);
    }
    const p = target.patient!;
    const site = archive.sites.get(p.site);
    const issuer = p.IssuerOfPatientID ?? site?.issuerOfPatientID;
    const patientId = site && issuer ? await archive.index.patientRecordId(site.id, issuer, p.PatientID) : undefined;
    // A patient's share opens the records it names and what the sharer sees of them (never a linked person's other records).
    if (patientId !== undefined && await policy.seesAnyExamOf(scope, patientId)) return { patientId, patientIds: await policy.recordsToShare(scope, patientId), patients: [patientRef(p.site, issuer!, p.PatientID)] };
    throw new HttpProblem(404, `patient ${p.PatientID} of ${p.site} is not in the archive`);
  };

  // ---- shares ----
  app.post<{ Body: Target & { toUser?: string; expiresInHours?: number; link?: { expiresInHours: number; pin?: string } } }>('/shares', {
    preHandler: requireCapability('share', audit),
    schema: {
      body: {
        type: 'object', additionalProperties: false,
        properties: {
          StudyInstanceUID: uid, patient: patientSchema,
          toUser: { type: 'string', minLength: 1, maxLength: 128 },
          expiresInHours: { type: 'integer', minimum: 1, maximum: 24 * 365 },
          link: {
            type: 'object', required: ['expiresInHours'], additionalProperties: false,
            properties: { expiresInHours: { type: 'integer', minimum: 1, maximum: 24 * 90 }, pin: { type: 'string', pattern: '^[0-9]{4,8}$' } },
          },
        },
      },
    },
  }, async (request, reply) => {
    const b = request.body;
    if ((b.toUser === undefined) === (b.link === undefined)) throw new HttpProblem(400, 'share either toUser or as a link');
    const target = await resolve(request, b);
    if (b.toUser !== undefined) {
      const user = await new UserDirectory(archive.index.sql, archive.sites, archive.siteById).findByLogin(b.toUser);
      if (!user || user.disabledAt !== undefined) throw new HttpProblem(404, `user ${b.toUser} does not exist`);
      const grant = await grants.grant({
        kind: 'share', userId: Number(user.id), grantedBy: request.principal!.id, ...target,
        ...(b.expiresInHours ? { expiresAt: new Date(Date.now() + b.expiresInHours * 3_600_000) } : {}),
      });
      await audit.record({ action: 'share', outcome: 'success', ...who(request), patients: target.patients, ...(target.StudyInstanceUID ? { StudyInstanceUID: target.StudyInstanceUID } : {}), details: { grant: grant.id, toUser: b.toUser } });
      return reply.code(201).send({ grant });
    }
    const { link, token } = await links.create({ ...target, createdBy: request.principal!.id, expiresAt: new Date(Date.now() + b.link!.expiresInHours * 3_600_000), ...(b.link!.pin ? { pin: b.link!.pin } : {}) });
    const base = options.publicBaseUrl ?? `${request.protocol}://${request.host}`;
    // The token travels in the fragment: it never reaches a server log or a Referer header.
    const url = `${base}/share#${token}`;
    await audit.record({ action: 'share', outcome: 'success', ...who(request), patients: target.patients, ...(target.StudyInstanceUID ? { StudyInstanceUID: target.StudyInstanceUID } : {}), details: { link: link.id, expiresAt: link.expiresAt, pin: link.hasPin } });
    // qrcode is loaded at the first link made, not at start.
    const { default: QRCode } = await import('qrcode');
    return reply.code(201).send({ link, url, token, qrCodeSvg: await QRCode.toString(url, { type: 'svg', errorCorrectionLevel: 'M' }) });
  });

  app.get('/shares', async (request) => ({ links: await links.createdBy(request.principal!.id) }));

  app.delete<{ Params: { id: string } }>('/shares/links/:id', { schema: { params: idParams } }, async (request) => {
    const id = Number(request.params.id);
    const link = await links.get(id);
    if (!link || !(await policy.mayRevokeShare(request.principal!, link))) throw new HttpProblem(404, `share link ${id} does not exist`);
    const revoked = await links.revoke(id, request.principal!.id);
    await audit.record({ action: 'share-revoke', outcome: 'success', ...who(request), ...(link.StudyInstanceUID ? { StudyInstanceUID: link.StudyInstanceUID } : {}), details: { link: id } });
    return { link: revoked };
  });

  app.delete<{ Params: { id: string } }>('/shares/grants/:id', { schema: { params: idParams } }, async (request) => {
    const id = Number(request.params.id);
    const grant = await grants.get(id);
    if (!grant || grant.kind !== 'share' || !(await policy.mayRevokeShare(request.principal!, { ...grant, createdBy: grant.grantedBy }))) throw new HttpProblem(404, `share ${id} does not exist`);
    const revoked = await grants.revoke(id, request.principal!.id);
    await audit.record({ action: 'share-revoke', outcome: 'success', ...who(request), ...(grant.StudyInstanceUID ? { StudyInstanceUID: grant.StudyInstanceUID } : {}), details: { grant: id } });
    return { grant: revoked };
  });

  // ---- break-the-glass ----
  app.post<{ Body: { patient: PatientKey; reason: string } }>('/emergency-access', {
    preHandler: requireCapability('emergency-access', audit),
    schema: {
      body: {
        type: 'object', required: ['patient', 'reason'], additionalProperties: false,
        properties: { patient: patientSchema, reason: { type: 'string', minLength: 10, maxLength: 1024 } },
      },
    },
  }, async (request, reply) => {
    const principal = request.principal!;
    if (principal.userId === undefined) throw new HttpProblem(403, 'emergency access is declared by a person');
    const p = request.body.patient;
    const site = archive.sites.get(p.site);
    const issuer = p.IssuerOfPatientID ?? site?.issuerOfPatientID;
    const patientId = site && issuer ? await archive.index.patientRecordId(site.id, issuer, p.PatientID) : undefined;
    if (patientId === undefined) throw new HttpProblem(404, `patient ${p.PatientID} of ${p.site} is not in the archive`);
    const grant = await grants.grant({
      kind: 'emergency', userId: principal.userId, patientId, reason: request.body.reason, grantedBy: principal.id,
      expiresAt: new Date(Date.now() + EMERGENCY_ACCESS_HOURS * 3_600_000),
    });
    await audit.record({ action: 'emergency-access', outcome: 'success', ...who(request), reason: request.body.reason, patients: [patientRef(p.site, issuer!, p.PatientID)], details: { grant: grant.id, expiresAt: grant.expiresAt } });
    return reply.code(201).send({ grant });
  });

  /** Emergency accesses to the caller's sites' patients (every site for the territory), for review afterwards. */
  app.get('/emergency-access', { preHandler: requireCapability('read-audit', audit) }, async (request) => {
    const principal = request.principal!;
    if (principal.roles.includes('patient') && !principal.roles.some((r) => r !== 'patient')) throw new HttpProblem(403, 'this caller may not review emergency accesses');
    const everything = principal.territory === true || principal.roles.includes('territory-admin');
    const accesses = await grants.emergencyAccesses(everything ? undefined : principal.sites.map((s) => s.id));
    return {
      accesses: await Promise.all(accesses.map(async (a) => {
        const record = a.patientId !== undefined ? await archive.index.patientRecord(a.patientId) : undefined;
        return { ...a, site: archive.siteById.get(a.siteId)?.code, ...(record ? { PatientID: record.patient.PatientID } : {}) };
      })),
    };
  });

  app.post<{ Params: { id: string } }>('/emergency-access/:id/reviewed', { schema: { params: idParams }, preHandler: requireCapability('correct', audit) }, async (request) => {
    const id = Number(request.params.id);
    const principal = request.principal!;
    const everything = principal.territory === true || principal.roles.includes('territory-admin');
    // Reviewed by the territory's administrators, or by those of the patient's site.
    const access = await grants.get(id);
    const record = access?.kind === 'emergency' && access.patientId !== undefined ? await archive.index.patientRecord(access.patientId) : undefined;
    if (!record || !(everything || principal.sites.some((s) => s.id === record.siteId))) throw new HttpProblem(404, `emergency access ${id} does not exist`);
    const grant = await grants.markReviewed(id, principal.id);
    await audit.record({ action: 'emergency-access', outcome: 'success', ...who(request), details: { grant: id, reviewed: true } });
    return { grant };
  });

  // ---- who looked at my images? ----
  app.get<{ Querystring: { site?: string; PatientID?: string; IssuerOfPatientID?: string } }>('/audit/patient', {
    preHandler: requireCapability('read-audit', audit),
    schema: { querystring: { type: 'object', additionalProperties: false, properties: patientSchema.properties } },
  }, async (request) => {
    const principal = request.principal!;
    let refs: string[];
    if (principal.roles.includes('patient') && principal.patientId !== undefined && !principal.roles.some((r) => r !== 'patient')) {
      // A patient reads the trail of their own records (every site's, once linked).
      refs = await patientRefsOfRecords(archive, await policy.samePerson([principal.patientId]));
    } else {
      const q = request.query;
      const site = q.site ? archive.sites.get(q.site) : undefined;
      if (!site || !q.PatientID) throw new HttpProblem(400, 'name the patient record: site and PatientID');
      const everything = principal.territory === true || principal.roles.includes('territory-admin');
      if (!everything && !principal.sites.some((s) => s.id === site.id)) throw new HttpProblem(403, 'this caller reads the audit trail of its own sites\' patients only');
      refs = [patientRef(site.code, q.IssuerOfPatientID ?? site.issuerOfPatientID, q.PatientID)];
    }
    const events = (await Promise.all(refs.map((r) => audit.forPatient(r)))).flat().sort((a, b) => b.id - a.id);
    await audit.record({ action: 'query', outcome: 'success', ...who(request), patients: refs, details: { auditTrail: true, events: events.length } });
    // Who, by name: the professionals' display names and their sites' names (never another patient's record).
    const directory = new UserDirectory(archive.index.sql, archive.sites, archive.siteById);
    const names = new Map<string, string | undefined>();
    for (const e of events) {
      if (e.actorKind !== 'user' || names.has(e.actor)) continue;
      const user = await directory.findByLogin(e.actor);
      // A patient account (the reader themselves, or a relative's account opened on a share) is named by no one here.
      names.set(e.actor, user && !user.roles.includes('patient') ? user.displayName : undefined);
    }
    const patientCaller = principal.roles.includes('patient') && !principal.roles.some((r) => r !== 'patient');
    return {
      events: events.map((e) => ({
        id: e.id, at: e.at, action: e.action, outcome: e.outcome,
        // A patient reading their trail sees themselves by login, another patient account only as "a patient".
        actor: patientCaller && e.actorKind === 'user' && names.get(e.actor) === undefined && e.actor !== principal.id ? 'patient' : e.actor,
        actorKind: e.actorKind, site: e.site, via: e.via, reason: e.reason, StudyInstanceUID: e.StudyInstanceUID,
        ...(e.actorKind === 'user' && names.get(e.actor) !== undefined ? { actorName: names.get(e.actor) } : {}),
        ...(e.site !== undefined && archive.sites.get(e.site) ? { siteName: archive.sites.get(e.site)!.name } : {}),
      })),
    };
  });
}
