import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Archive } from '../archive/archive.ts';
import { AuditTrail, patientRefOf } from '../access/audit.ts';
import { AccessPolicy, mayActForSites, scopeCondition } from '../access/policy.ts';
import { actorOf } from '../access/principal.ts';
import { HttpProblem, problemErrorHandler } from '../dicomweb/problem.ts';
import {
  defaultReferenceLevels, dosesOfStudies, mergeReferenceLevels, effectiveDoseMethod, effectiveDoseOf, referenceTableCsv, siteReferenceTable, type ReferenceLevel,
} from '../workflow/dose-records.ts';
import { scopeOfRequest } from './access-scope.ts';

const text = { type: 'string', minLength: 1, maxLength: 64 } as const;

/**
 * /api/dose: a person's dose timeline (the exams the caller may see, with the effective-dose
 * method stated), and a site's exams against the diagnostic reference levels (JSON, CSV) for
 * its radiation protection officer. The rules are src/workflow/dose-records.ts's.
 */
export async function doseRoutes(app: FastifyInstance, options: { archive: Archive; referenceLevels?: readonly ReferenceLevel[] }): Promise<void> {
  const { archive } = options;
  const sql = archive.index.sql;
  const audit = new AuditTrail(sql);
  const policy = new AccessPolicy(sql);
  const levels = mergeReferenceLevels(defaultReferenceLevels, options.referenceLevels ?? []);
  const who = (request: FastifyRequest) => ({ ...actorOf(request.principal!), source: request.ip, via: 'api' as const });
  app.setErrorHandler(problemErrorHandler('dose request'));

  app.get<{ Querystring: { site: string; PatientID: string; IssuerOfPatientID?: string } }>('/patients', {
    schema: { querystring: { type: 'object', required: ['site', 'PatientID'], additionalProperties: false, properties: { site: text, PatientID: text, IssuerOfPatientID: text } } },
  }, async (request, reply) => {
    const q = request.query;
    const site = archive.sites.get(q.site);
    if (!site) throw new HttpProblem(400, `unknown site ${q.site}`);
    const recordId = await archive.index.patientRecordId(site.id, q.IssuerOfPatientID ?? site.issuerOfPatientID, q.PatientID);
    const scope = await scopeOfRequest(policy, request);
    if (recordId === undefined || !(await policy.seesAnyExamOf(scope, recordId))) {
      await audit.record({ action: 'query', outcome: 'refused', ...who(request), details: { dose: 'timeline', query: { ...q } } });
      throw new HttpProblem(404, 'no such patient');
    }
    const records = await policy.samePerson([recordId]);
    const restriction = scopeCondition(scope);
    const studies = await archive.index.studiesOfPatients(records, restriction);
    const dateOf = new Map(studies.map((s) => [s.StudyInstanceUID, s.StudyDate ?? '']));
    const doses = (await dosesOfStudies(sql, studies.map((s) => s.StudyInstanceUID)))
      .sort((a, b) => (dateOf.get(a.StudyInstanceUID) ?? '').localeCompare(dateOf.get(b.StudyInstanceUID) ?? ''));
    let cumulative = 0;
    const exams = doses.map((d) => {
      const e = effectiveDoseOf(d);
      if (e) cumulative += e.mSv;
      return {
        StudyInstanceUID: d.StudyInstanceUID, StudyDate: dateOf.get(d.StudyInstanceUID) || undefined, site: archive.siteById.get(d.siteId)?.code,
        modality: d.modality, region: d.region, source: d.source, status: d.status, CTDIvol_mGy: d.CTDIvol, DLP_mGycm: d.DLP, DAP_Gym2: d.DAP,
        ...(d.problems.length > 0 ? { problems: d.problems } : {}),
        ...(e ? { effectiveDose_mSv: e.mSv, kFactor: e.k } : {}), cumulativeEffectiveDose_mSv: Math.round(cumulative * 100) / 100,
      };
    });
    await audit.record({
      action: 'query', outcome: 'success', ...who(request),
      patients: [patientRefOf(archive.siteById, { siteId: site.id, patient: { PatientID: q.PatientID, IssuerOfPatientID: q.IssuerOfPatientID ?? site.issuerOfPatientID } })],
      details: { dose: 'timeline', exams: exams.length },
    });
    reply.header('cache-control', 'no-store');
    return { method: effectiveDoseMethod, cumulativeEffectiveDose_mSv: Math.round(cumulative * 100) / 100, exams };
  });

  // A site's table is for those who act for the site (its members, the territory): no patient identity in it.
  const tableOf = async (request: FastifyRequest<{ Params: { site: string }; Querystring: { from?: string; to?: string } }>) => {
    const site = archive.sites.get(request.params.site);
    if (!site || !mayActForSites(request.principal!, [site.id])) throw new HttpProblem(404, `unknown site ${request.params.site}`);
    await audit.record({ action: 'query', outcome: 'success', ...who(request), details: { dose: 'reference-levels', site: site.code } });
    return siteReferenceTable(sql, site.id, levels, { ...(request.query.from ? { from: request.query.from } : {}), ...(request.query.to ? { to: request.query.to } : {}) });
  };
  const tableSchema = {
    params: { type: 'object', required: ['site'], properties: { site: text } },
    querystring: { type: 'object', additionalProperties: false, properties: { from: text, to: text } },
  } as const;
  app.get<{ Params: { site: string }; Querystring: { from?: string; to?: string } }>('/sites/:site/reference-levels', { schema: tableSchema }, async (request) => ({
    source: 'arrêté du 23 mai 2019 (décision ASN 2019-DC-0667), and the levels configured', levels: await tableOf(request),
  }));
  app.get<{ Params: { site: string }; Querystring: { from?: string; to?: string } }>('/sites/:site/reference-levels.csv', { schema: tableSchema }, async (request, reply) =>
    reply.type('text/csv; charset=utf-8').header('Content-Disposition', `attachment; filename="nrd-${request.params.site}.csv"`).send(referenceTableCsv(await tableOf(request))));
}
