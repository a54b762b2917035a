import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Archive } from '../archive/archive.ts';
import { AuditTrail, patientRefOf } from '../access/audit.ts';
import { AccessPolicy, scopeCondition } from '../access/policy.ts';
import { actorOf } from '../access/principal.ts';
import { HttpProblem, problemErrorHandler } from '../dicomweb/problem.ts';
import { findPatientRecords, recordSummary, timelineOf } from '../patients/timeline.ts';
import type { PatientPage } from './portal-types.ts';
import { scopeOfRequest } from './access-scope.ts';
import { recentExamsElsewhere } from '../workflow/redundancy.ts';

const text = { type: 'string', minLength: 1, maxLength: 64 } as const;

interface SearchQuery { name?: string; birthDate?: string; ins?: string; PatientID?: string; site?: string; limit?: number; offset?: number }

/** Records a search page holds at most (and by default). */
const pageSize = 100;
interface TimelineQuery { site?: string; PatientID?: string; IssuerOfPatientID?: string; StudyInstanceUID?: string }

/**
 * The portal's patient API, under /api/patients: a search of patient records and a person's
 * timeline of exams. Both are scoped by the access policy (what the caller may not see is
 * absent) and recorded in the audit trail as queries, with the patients they touched.
 */
export async function patientRoutes(app: FastifyInstance, options: { archive: Archive; redundancyWindowDays?: Readonly<Record<string, number>> }): Promise<void> {
  const { archive } = options;
  const audit = new AuditTrail(archive.index.sql);
  const policy = new AccessPolicy(archive.index.sql);
  const who = (request: FastifyRequest) => ({ ...actorOf(request.principal!), source: request.ip, via: 'api' as const });

  app.setErrorHandler(problemErrorHandler('patient request'));

  const siteOf = (code: string | undefined) => {
    if (code === undefined) return undefined;
    const site = archive.sites.get(code);
    if (!site) throw new HttpProblem(400, `unknown site ${code}`);
    return site;
  };

  app.get<{ Querystring: SearchQuery }>('/', {
    schema: {
      querystring: {
        type: 'object', additionalProperties: false,
        properties: {
          name: text, birthDate: { type: 'string', pattern: '^[0-9]{8}(-([0-9]{8})?)?$|^-[0-9]{8}$' },
          ins: { type: 'string', pattern: '^[0-9AB]{13,15}$' }, PatientID: text, site: text,
          limit: { type: 'integer', minimum: 1, maximum: pageSize }, offset: { type: 'integer', minimum: 0, maximum: 100_000 },
        },
      },
    },
  }, async (request, reply) => {
    const q = request.query;
    if (!q.name && !q.birthDate && !q.ins && !q.PatientID) throw new HttpProblem(400, 'name at least one of name, birthDate, ins, PatientID');
    const site = siteOf(q.site);
    const restriction = scopeCondition(await scopeOfRequest(policy, request));
    const limit = q.limit ?? pageSize;
    const offset = q.offset ?? 0;
    // One more than the page: whether there is a next one, without counting every match.
    const page = await findPatientRecords(archive.index, archive.siteById, {
      ...(q.name ? { name: q.name } : {}), ...(q.birthDate ? { PatientBirthDate: q.birthDate } : {}),
      ...(q.ins ? { INS: q.ins } : {}), ...(q.PatientID ? { PatientID: q.PatientID } : {}), ...(site ? { site } : {}),
    }, restriction, limit + 1, offset);
    const found = page.slice(0, limit);
    await audit.record({
      action: 'query', outcome: 'success', ...who(request), patients: found.map((r) => patientRefOf(archive.siteById, { siteId: r.siteId, patient: r })),
      details: { portal: 'patient-search', matches: { ...q }, results: found.length },
    });
    reply.header('cache-control', 'no-store');
    const answer: PatientPage = { patients: found.map(({ siteId: _siteId, ...r }) => r), offset, limit, ...(page.length > limit ? { next: offset + limit } : {}) };
    return answer;
  });

  app.get<{ Querystring: TimelineQuery }>('/timeline', {
    schema: {
      querystring: {
        type: 'object', additionalProperties: false,
        properties: { site: text, PatientID: text, IssuerOfPatientID: text, StudyInstanceUID: { type: 'string', pattern: '^[0-9.]{1,64}$' } },
      },
    },
  }, async (request, reply) => {
    const q = request.query;
    let recordId: number | undefined;
    if (q.StudyInstanceUID) recordId = (await archive.index.studyPatient(q.StudyInstanceUID))?.patientId;
    else {
      const site = siteOf(q.site);
      if (!site || !q.PatientID) throw new HttpProblem(400, 'name the patient record (site and PatientID) or one of its studies (StudyInstanceUID)');
      recordId = await archive.index.patientRecordId(site.id, q.IssuerOfPatientID ?? site.issuerOfPatientID, q.PatientID);
    }
    const scope = await scopeOfRequest(policy, request);
    // A record the caller has no reason to see answers as one that does not exist.
    if (recordId === undefined || !(await policy.seesAnyExamOf(scope, recordId))) {
      await audit.record({ action: 'query', outcome: 'refused', ...who(request), details: { portal: 'timeline', query: { ...q } } });
      throw new HttpProblem(404, 'no such patient');
    }
    const records = (await Promise.all((await policy.samePerson([recordId])).map((id) => archive.index.patientRecord(id))))
      .flatMap((r) => (r ? [r] : []));
    const restriction = scopeCondition(scope);
    const studies = await timelineOf(archive.index, archive.siteById, records, restriction);
    // samePerson lists the record asked for first.
    const self = records[0]!;
    await audit.record({
      action: 'query', outcome: 'success', ...who(request), patients: records.map((r) => patientRefOf(archive.siteById, r)),
      details: { portal: 'timeline', studies: studies.length },
    });
    reply.header('cache-control', 'no-store');
    const { siteId: _siteId, ...patient } = recordSummary(archive.siteById, self.siteId, self.patient);
    // The banner of recent exams at other sites (src/workflow/redundancy.ts): those the caller may not open counted, not named.
    const recent = await recentExamsElsewhere(archive.index.sql, { patientId: recordId, siteId: self.siteId }, options.redundancyWindowDays ?? {}, scope,
      (id) => archive.siteById.get(id)?.code ?? '?');
    return { patient: { ...patient, NumberOfPatientRelatedStudies: studies.length }, studies, ...(recent ? { recentElsewhere: recent } : {}) };
  });
}
