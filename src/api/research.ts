import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AuditTrail, patientRef } from '../access/audit.ts';
import { actorOf, homeSiteOf } from '../access/principal.ts';
import { may, mayActForSites, sitesActedFor } from '../access/policy.ts';
import type { Archive } from '../archive/archive.ts';
import { HttpProblem, problemErrorHandler } from '../dicomweb/problem.ts';
import { ResearchKeys, researchKeyFile } from '../research/keys.ts';
import { checkedDefinition, migrateResearch, ResearchError, ResearchStore, type ResearchProject } from '../research/projects.ts';
import { cohortOf, exportZipPath, findInterrupted, manifestNow, restartExport, startExport, type ExportKind, type Manifest } from '../research/export.ts';

const id = { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: '^[0-9]{1,12}$' } } } as const;

function asProblem(e: unknown): unknown {
  if (e instanceof ResearchError) {
    return new HttpProblem({ 'bad-request': 400, 'not-found': 404, conflict: 409, forbidden: 403, destination: 502 }[e.code], e.message);
  }
  return e;
}

/**
 * /api/research: projects (cohort criteria, Annex E options, approval), their de-identified
 * exports with manifests, the registry of patients who object to research use, and the
 * trusted third party's re-identification. A project, an export, an objection belong to a site:
 * another site's are answered as absent. docs/research.md.
 */
export async function researchRoutes(app: FastifyInstance, options: { archive: Archive; dataDir: string }): Promise<void> {
  const { archive, dataDir } = options;
  const audit = new AuditTrail(archive.index.sql);
  let opened: Promise<ResearchStore> | undefined;
  const storeOf = () => (opened ??= (async () => {
    await migrateResearch(archive.index.sql);
    return new ResearchStore(archive.index.sql, await ResearchKeys.open(researchKeyFile(dataDir)));
  })().catch((e: unknown) => {
    opened = undefined;
    throw e;
  }));
  app.setErrorHandler(problemErrorHandler('research'));
  app.addHook('preHandler', async (request) => {
    const p = request.principal!;
    if (may(p, 'research') || may(p, 'approve-research') || may(p, 'reidentify') || may(p, 'record-objection')) return;
    await audit.record({ action: 'research-project', outcome: 'refused', ...actorOf(p), source: request.ip, via: 'api', details: { url: request.url.split('?')[0] } });
    throw new HttpProblem(403, 'this caller may not use research');
  });
  const need = async (request: FastifyRequest, capability: 'research' | 'approve-research' | 'reidentify' | 'record-objection') => {
    if (may(request.principal!, capability)) return;
    await audit.record({ action: capability === 'reidentify' ? 'reidentify' : 'research-project', outcome: 'refused', ...actorOf(request.principal!), source: request.ip, via: 'api', details: { capability } });
    throw new HttpProblem(403, `this caller may not ${capability.replaceAll('-', ' ')}`);
  };
  /** The project if the caller acts for its site; else absent, as one that does not exist. */
  const projectFor = async (request: FastifyRequest, projectId: string): Promise<ResearchProject> => {
    const p = await (await storeOf()).project(Number(projectId));
    if (!p || !mayActForSites(request.principal!, [p.siteId])) throw new HttpProblem(404, 'no such project');
    return p;
  };
  const siteCode = (siteId: number) => archive.siteById.get(siteId)?.code;
  const shown = (p: ResearchProject) => ({ ...p, site: siteCode(p.siteId) });

  app.get('/projects', async (request) => ({ projects: (await (await storeOf()).projects(sitesActedFor(request.principal!))).map(shown) }));

  app.post<{ Body: Record<string, unknown> }>('/projects', async (request, reply) => {
    await need(request, 'research');
    const p = request.principal!;
    try {
      const def = checkedDefinition(request.body);
      const site = typeof request.body?.site === 'string' ? archive.sites.get(request.body.site) : homeSiteOf(p);
      if (!site || !mayActForSites(p, [site.id])) throw new HttpProblem(400, 'site: one of the caller\'s sites');
      for (const code of def.criteria.sites ?? []) {
        const s = archive.sites.get(code);
        if (!s || !mayActForSites(p, [s.id])) throw new HttpProblem(400, `criteria.sites: ${code} is not one of the caller's sites`);
      }
      const project = await (await storeOf()).createProject(site.id, def, p.id);
      await audit.record({ action: 'research-project', outcome: 'success', ...actorOf(p), source: request.ip, via: 'api', details: { project: project.id, created: true } });
      return reply.code(201).send(shown(project));
    } catch (e) {
      throw asProblem(e);
    }
  });

  app.get<{ Params: { id: string } }>('/projects/:id', { schema: { params: id } }, async (request) => {
    const project = await projectFor(request, request.params.id);
    const store = await storeOf();
    await findInterrupted(store, dataDir, { projectId: project.id });
    const exports = (await store.exportsOf(project.id)).map(({ manifest: _m, ...e }) => e);
    return { ...shown(project), exports };
  });

  /** The cohort's size now (studies, patients), without identities. */
  app.get<{ Params: { id: string } }>('/projects/:id/cohort', { schema: { params: id } }, async (request) => {
    const project = await projectFor(request, request.params.id);
    const cohort = await cohortOf(archive, project);
    return { studies: cohort.length, patients: new Set(cohort.map((s) => s.patientId)).size };
  });

  app.post<{ Params: { id: string } }>('/projects/:id/approve', { schema: { params: id } }, async (request) => {
    const project = await projectFor(request, request.params.id);
    await need(request, 'approve-research');
    // An approval is a person's decision: a machine client, even trusted for the territory, does not approve.
    if (request.principal!.kind !== 'user') throw new HttpProblem(403, 'a project is approved by a person');
    try {
      const approved = await (await storeOf()).approve(project.id, request.principal!.id);
      await audit.record({ action: 'research-project', outcome: 'success', ...actorOf(request.principal!), source: request.ip, via: 'api', details: { project: project.id, approved: true } });
      return shown(approved);
    } catch (e) {
      throw asProblem(e);
    }
  });

  app.post<{ Params: { id: string }; Body: { kind: ExportKind } }>('/projects/:id/exports', {
    schema: { params: id, body: { type: 'object', required: ['kind'], additionalProperties: false, properties: { kind: { enum: ['zip', 'folder', 'dicomweb'] } } } },
  }, async (request, reply) => {
    const project = await projectFor(request, request.params.id);
    await need(request, 'research');
    try {
      // Checked and recorded now, run in the background: GET /exports/:id says when it is done.
      const { id: exportId, done } = await startExport(archive, await storeOf(), project, request.body.kind, request.principal!, dataDir);
      done.catch((e: unknown) => request.log.warn({ err: e, researchExport: exportId }, 'research export failed'));
      return reply.code(202).header('location', `${request.url.replace(/\/projects\/.*$/, '')}/exports/${exportId}`).send({ id: exportId, status: 'running' });
    } catch (e) {
      throw asProblem(e);
    }
  });

  /** An export and its manifest as it reads now (patients who objected since are marked). */
  const exportFor = async (request: FastifyRequest, exportId: string) => {
    const store = await storeOf();
    if (Number.isSafeInteger(Number(exportId))) await findInterrupted(store, dataDir, { id: Number(exportId) });
    const row = await store.exportRow(Number(exportId));
    const project = row ? await store.project(row.projectId) : undefined;
    if (!row || !project || !mayActForSites(request.principal!, [project.siteId])) throw new HttpProblem(404, 'no such export');
    return { row, project, store };
  };

  app.get<{ Params: { id: string } }>('/exports/:id', { schema: { params: id } }, async (request) => {
    const { row, project, store } = await exportFor(request, request.params.id);
    return { ...row, ...(row.manifest ? { manifest: await manifestNow(archive, store, project.id, row.manifest as Manifest) } : {}) };
  });

  /** An interrupted (or failed) export run again from the start, under its id. */
  app.post<{ Params: { id: string } }>('/exports/:id/restart', { schema: { params: id } }, async (request, reply) => {
    const { row, project, store } = await exportFor(request, request.params.id);
    await need(request, 'research');
    try {
      const { done } = await restartExport(archive, store, project, row.id, row.kind as ExportKind, request.principal!, dataDir);
      done.catch((e: unknown) => request.log.warn({ err: e, researchExport: row.id }, 'research export failed'));
      await audit.record({ action: 'research-project', outcome: 'success', ...actorOf(request.principal!), source: request.ip, via: 'api', details: { project: project.id, researchExport: row.id, restarted: true } });
      return reply.code(202).send({ id: row.id, status: 'running' });
    } catch (e) {
      throw asProblem(e);
    }
  });

  app.get<{ Params: { id: string } }>('/exports/:id/download', { schema: { params: id } }, async (request, reply) => {
    const { row } = await exportFor(request, request.params.id);
    await need(request, 'research');
    if (row.kind !== 'zip' || row.status !== 'done') throw new HttpProblem(404, 'no such export');
    const file = exportZipPath(dataDir, row.id);
    const size = (await stat(file)).size;
    await audit.record({ action: 'download', outcome: 'success', ...actorOf(request.principal!), source: request.ip, via: 'api', details: { researchExport: row.id, researchProject: row.projectId, bytes: size } });
    return reply.type('application/zip').header('content-length', size)
      .header('content-disposition', `attachment; filename="research-export-${row.id}.zip"`).send(createReadStream(file));
  });

  /** The trusted third party reads who a pseudonym is, or what a replaced UID was; each reading audited. */
  app.post<{ Params: { id: string }; Body: { pseudonym?: string; uid?: string } }>('/projects/:id/reidentify', {
    schema: {
      params: id,
      body: { type: 'object', additionalProperties: false, properties: { pseudonym: { type: 'string', maxLength: 64 }, uid: { type: 'string', pattern: '^[0-9.]{1,64}$' } } },
    },
  }, async (request) => {
    const project = await projectFor(request, request.params.id);
    await need(request, 'reidentify');
    const b = request.body;
    if ((b.pseudonym === undefined) === (b.uid === undefined)) throw new HttpProblem(400, 'name a pseudonym or a uid');
    const found = await (await storeOf()).reidentify(project.id, b);
    const patients = (found?.identity?.records ?? []).map((r) => patientRef(r.site, r.IssuerOfPatientID, r.PatientID));
    await audit.record({
      action: 'reidentify', outcome: found ? 'success' : 'failure', ...actorOf(request.principal!), source: request.ip, via: 'api', patients,
      details: { project: project.id, ...(b.pseudonym ? { pseudonym: b.pseudonym } : { uid: b.uid }) },
    });
    if (!found) throw new HttpProblem(404, 'no such pseudonym or uid in this project');
    return found;
  });

  // The registry of objections to research use.

  app.get('/objections', async (request) => {
    await need(request, 'record-objection');
    return { objections: (await (await storeOf()).objectionsOfSites(sitesActedFor(request.principal!))).map((o) => ({ ...o, site: siteCode(o.siteId) })) };
  });

  const patientBody = {
    type: 'object', required: ['PatientID'], additionalProperties: false,
    properties: { site: { type: 'string', maxLength: 32 }, PatientID: { type: 'string', minLength: 1, maxLength: 64 }, IssuerOfPatientID: { type: 'string', minLength: 1, maxLength: 64 }, reason: { type: 'string', maxLength: 1024 } },
  } as const;
  const recordOf = async (request: FastifyRequest<{ Body: { site?: string; PatientID: string; IssuerOfPatientID?: string } }>) => {
    const b = request.body;
    const site = b.site !== undefined ? archive.sites.get(b.site) : homeSiteOf(request.principal!);
    const patientId = site && mayActForSites(request.principal!, [site.id])
      ? await archive.index.patientRecordId(site.id, b.IssuerOfPatientID ?? site.issuerOfPatientID, b.PatientID) : undefined;
    if (!site || patientId === undefined) throw new HttpProblem(404, 'no such patient record');
    return { site, patientId, ref: patientRef(site.code, b.IssuerOfPatientID ?? site.issuerOfPatientID, b.PatientID) };
  };

  app.post<{ Body: { site?: string; PatientID: string; IssuerOfPatientID?: string; reason?: string } }>('/objections', { schema: { body: patientBody } }, async (request, reply) => {
    await need(request, 'record-objection');
    const { site, patientId, ref } = await recordOf(request);
    const recorded = await (await storeOf()).recordObjection(patientId, site.id, request.body.reason, request.principal!.id);
    await audit.record({ action: 'research-objection', outcome: 'success', ...actorOf(request.principal!), source: request.ip, via: 'api', patients: [ref], details: { objection: recorded.id } });
    return reply.code(201).send(recorded);
  });

  app.post<{ Body: { site?: string; PatientID: string; IssuerOfPatientID?: string } }>('/objections/withdraw', { schema: { body: patientBody } }, async (request) => {
    await need(request, 'record-objection');
    const { patientId, ref } = await recordOf(request);
    const withdrawn = await (await storeOf()).withdrawObjection(patientId);
    await audit.record({ action: 'research-objection', outcome: 'success', ...actorOf(request.principal!), source: request.ip, via: 'api', patients: [ref], details: { withdrawn } });
    return { withdrawn };
  });
}
