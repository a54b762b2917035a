import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Archive } from '../archive/archive.ts';
import type { TeleradiologyConfig } from '../config/config.ts';
import { HttpProblem, problemErrorHandler } from '../dicomweb/problem.ts';
import {
  requestStatuses, TeleError, TeleRequests, urgencies, type NewTeleRequest, type Origin, type RequestStatus, type TeleRequest,
} from '../workflow/tele-requests.ts';
import { TeleReports, type ReportContent } from '../workflow/tele-reports.ts';
import { agreements, SecondReadings, type Agreement } from '../workflow/second-readings.ts';
import { activityCsv, TeleActivity } from '../workflow/tele-activity.ts';
import { loadSignedReport } from '../exchange/signed-report.ts';
import { diagnosticReportOf } from '../exchange/fhir-diagnostic-report.ts';
import { renderReportPdf } from '../exchange/report-pdf.ts';
import { renderActivityPdf } from '../exchange/activity-pdf.ts';
import { ReportTemplates } from '../workflow/report-templates.ts';
import { AccessPolicy } from '../access/policy.ts';
import { RedundancyAlerts, redundancyOfTeleRequest } from '../workflow/redundancy.ts';
import { scopeOfRequest } from './access-scope.ts';


const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: '^[0-9]{1,12}$' } } } as const;
const short = { type: 'string', maxLength: 128 } as const;
const long = { type: 'string', maxLength: 20_000 } as const;

/** Types only: the domain names every missing mandatory field at once (the charter's list). */
const requestBody = {
  type: 'object', additionalProperties: false,
  properties: {
    site: short,
    patient: { type: 'object', additionalProperties: false, properties: { PatientID: { type: 'string', maxLength: 64 }, IssuerOfPatientID: { type: 'string', maxLength: 64 } } },
    StudyInstanceUID: { type: 'string', pattern: '^[0-9.]{1,64}$' },
    AccessionNumber: { type: 'string', maxLength: 16 },
    urgency: short, modality: { type: 'string', maxLength: 16 }, bodyPart: { type: 'string', maxLength: 64 }, specialty: { type: 'string', maxLength: 64 },
    clinicalContext: long, clinicalQuestion: long, proposedProtocol: long,
    requestingPhysician: { type: 'object', additionalProperties: false, properties: { name: { type: 'string', maxLength: 256 }, rpps: { type: 'string', maxLength: 11 }, mssante: { type: 'string', maxLength: 256 } } },
    copies: {
      type: 'array', maxItems: 10,
      items: { type: 'object', additionalProperties: false, properties: { name: { type: 'string', maxLength: 256 }, rpps: { type: 'string', maxLength: 11 }, mssante: { type: 'string', maxLength: 256 } } },
    },
  },
} as const;

const reportBody = {
  type: 'object', additionalProperties: false,
  properties: {
    template: { type: 'string', maxLength: 64 },
    fields: { type: 'object', maxProperties: 200, additionalProperties: { type: 'string', maxLength: 20_000 } },
    findings: { type: 'string', maxLength: 200_000 }, conclusion: long, baseVersion: { type: 'integer', minimum: 0 },
  },
} as const;

/**
 * /api/teleradiology: requests from the requesting sites, protocol decisions, worklists,
 * claims and assignment, the on-call rota, and reports (draft saved as typed, signature,
 * addenda). Each route translates; the rules are the workflow's (src/workflow/tele-*.ts).
 */
export async function teleradiologyRoutes(app: FastifyInstance, options: { archive: Archive; config: TeleradiologyConfig; redundancyWindowDays?: Readonly<Record<string, number>> }): Promise<void> {
  const requests = new TeleRequests(options.archive, options.config);
  // Redundant-exam alert (src/workflow/redundancy.ts): on the request's answer, as the caller may see its priors.
  const policy = new AccessPolicy(options.archive.index.sql);
  const alerts = new RedundancyAlerts(options.archive.index.sql, (id) => options.archive.siteById.get(id)?.code ?? '?');
  const redundancyOf = async (request: FastifyRequest, q: TeleRequest, record: boolean) => {
    const site = options.archive.sites.get(q.requestingSite);
    if (!site) return {};
    const r = await redundancyOfTeleRequest(options.archive.index.sql, { ...q, siteId: site.id }, options.redundancyWindowDays ?? {},
      await scopeOfRequest(policy, request), (id) => options.archive.siteById.get(id)?.code ?? '?', record);
    return r ? { redundancy: r } : {};
  };
  const reports = new TeleReports(requests);
  const secondReadings = new SecondReadings(requests);
  const activity = new TeleActivity(requests);
  const templates = new ReportTemplates(requests);
  const origin = (request: FastifyRequest): Origin => ({ source: request.ip, via: 'api' });
  const id = (request: FastifyRequest) => Number((request.params as { id: string }).id);

  app.setErrorHandler(problemErrorHandler('teleradiology request'));

  app.post<{ Body: NewTeleRequest }>('/requests', { schema: { body: requestBody } }, async (request, reply) => {
    const created = await requests.createRequest(request.principal!, request.body, origin(request));
    return reply.code(201).header('Location', `${request.url}/${created.id}`).send({ ...created, ...(await redundancyOf(request, created, true)) });
  });

  app.get('/requests/:id', { schema: { params: idParams } }, async (request) => {
    const q = await requests.requestFor(request.principal!, id(request), origin(request));
    const record = await options.archive.index.patientRecord(q.patientId);
    return { ...q, patient: record?.patient, ...(await redundancyOf(request, q, false)) };
  });

  app.post<{ Body: { decision: 'validated' | 'changed'; protocol?: string; reason?: string } }>('/requests/:id/protocol', {
    schema: {
      params: idParams,
      body: { type: 'object', required: ['decision'], additionalProperties: false, properties: { decision: { enum: ['validated', 'changed'] }, protocol: long, reason: long } },
    },
  }, async (request) => requests.decideProtocol(request.principal!, id(request), request.body, origin(request)));

  app.post<{ Body: { reason: string } }>('/requests/:id/return', {
    schema: { params: idParams, body: { type: 'object', required: ['reason'], additionalProperties: false, properties: { reason: long } } },
  }, async (request) => requests.returnRequest(request.principal!, id(request), request.body.reason, origin(request)));

  app.post('/requests/:id/claim', { schema: { params: idParams } }, async (request) => requests.claimReading(request.principal!, id(request), origin(request)));
  app.delete('/requests/:id/claim', { schema: { params: idParams } }, async (request) => requests.releaseReading(request.principal!, id(request), origin(request)));

  app.post<{ Body: { login: string } }>('/requests/:id/assign', {
    schema: { params: idParams, body: { type: 'object', required: ['login'], additionalProperties: false, properties: { login: { type: 'string', minLength: 1, maxLength: 64 } } } },
  }, async (request) => requests.assignTo(request.principal!, id(request), request.body.login, origin(request)));

  app.get<{ Querystring: { site?: string; modality?: string; bodyPart?: string; urgency?: string; specialty?: string; status?: string; mine?: string; limit?: number } }>('/worklist', {
    schema: {
      querystring: {
        type: 'object', additionalProperties: false,
        properties: {
          site: short, modality: short, bodyPart: short, urgency: { enum: [...urgencies] }, specialty: short,
          // A comma-separated list of statuses.
          status: { type: 'string', pattern: `^(${requestStatuses.join('|')})(,(${requestStatuses.join('|')}))*$` },
          mine: { enum: ['true', 'false'] }, limit: { type: 'integer', minimum: 1, maximum: 1000 },
        },
      },
    },
  }, async (request) => {
    const q = request.query;
    const entries = await requests.worklist(request.principal!, {
      ...(q.site !== undefined ? { site: q.site } : {}), ...(q.modality !== undefined ? { modality: q.modality } : {}),
      ...(q.bodyPart !== undefined ? { bodyPart: q.bodyPart } : {}), ...(q.urgency !== undefined ? { urgency: q.urgency } : {}),
      ...(q.specialty !== undefined ? { specialty: q.specialty } : {}),
      ...(q.status !== undefined ? { status: q.status.split(',') as RequestStatus[] } : {}),
      mine: q.mine === 'true', ...(q.limit !== undefined ? { limit: q.limit } : {}),
    });
    // The redundant-exam flag: how many recent exams of the kind the person had (the request names them to those who may see them).
    const counts = await alerts.countsOfRequests(entries.map((e) => e.id));
    return entries.map((e) => (counts.has(e.id) ? { ...e, redundancy: { priors: counts.get(e.id)! } } : e));
  });

  app.get('/requests/:id/report', { schema: { params: idParams } }, async (request) => reports.reportFor(request.principal!, id(request), origin(request)));

  // The report as a FHIR R4 DiagnosticReport, and as a PDF for humans (same access as the report).
  const signedReportFor = async (request: FastifyRequest) => {
    await reports.reportFor(request.principal!, id(request), origin(request));
    const signed = await loadSignedReport(options.archive, { requestId: id(request) });
    if (!signed) throw new TeleError('not-found', `request ${id(request)} has no report yet`);
    return signed;
  };
  app.get('/requests/:id/report/fhir', { schema: { params: idParams } }, async (request, reply) =>
    reply.type('application/fhir+json; charset=utf-8').send(diagnosticReportOf(await signedReportFor(request))));
  app.get('/requests/:id/report/pdf', { schema: { params: idParams } }, async (request, reply) =>
    reply.type('application/pdf').header('Content-Disposition', `inline; filename="compte-rendu-${id(request)}.pdf"`).send(await renderReportPdf(await signedReportFor(request), { ...(options.config.timeZone ? { timeZone: options.config.timeZone } : {}) })));

  app.put<{ Body: ReportContent }>('/requests/:id/report', { schema: { params: idParams, body: reportBody } },
    async (request) => reports.saveDraft(request.principal!, id(request), request.body, origin(request)));

  app.post<{ Body: { preliminary?: boolean } | undefined }>('/requests/:id/report/sign', {
    schema: { params: idParams, body: { type: 'object', additionalProperties: false, properties: { preliminary: { type: 'boolean' } } } },
  }, async (request) => reports.signReport(request.principal!, id(request), { preliminary: request.body?.preliminary === true }, origin(request)));

  app.post<{ Body: { text: string } }>('/requests/:id/report/addenda', {
    schema: { params: idParams, body: { type: 'object', required: ['text'], additionalProperties: false, properties: { text: long } } },
  }, async (request, reply) => reply.code(201).send(await reports.addAddendum(request.principal!, id(request), request.body.text, origin(request))));

  app.get('/requests/:id/deliveries', { schema: { params: idParams } }, async (request) => reports.deliveriesFor(request.principal!, id(request), origin(request)));

  app.post<{ Body: { specialty: string; question: string; expert?: string } }>('/requests/:id/second-readings', {
    schema: {
      params: idParams,
      body: { type: 'object', required: ['specialty', 'question'], additionalProperties: false, properties: { specialty: { type: 'string', maxLength: 64 }, question: long, expert: { type: 'string', maxLength: 64 } } },
    },
  }, async (request, reply) => reply.code(201).send(await secondReadings.askSecondReading(request.principal!, id(request), request.body, origin(request))));

  app.get('/second-readings', async (request) => secondReadings.askedOf(request.principal!));
  app.get('/second-readings/:id', { schema: { params: idParams } }, async (request) => secondReadings.secondReadingFor(request.principal!, id(request), origin(request)));
  app.post<{ Body: { findings?: string; conclusion: string; agreement: Agreement } }>('/second-readings/:id/answer', {
    schema: {
      params: idParams,
      body: { type: 'object', required: ['conclusion', 'agreement'], additionalProperties: false, properties: { findings: { type: 'string', maxLength: 200_000 }, conclusion: long, agreement: { enum: [...agreements] } } },
    },
  }, async (request) => secondReadings.answerSecondReading(request.principal!, id(request), request.body, origin(request)));

  // Activity by month (or year) of the acts done in [from, to); /activity.csv for spreadsheets.
  const activitySchema = {
    querystring: {
      type: 'object', required: ['from', 'to'], additionalProperties: false,
      properties: { from: short, to: short, by: { enum: ['month', 'year'] } },
    },
  } as const;
  type ActivityQuerystring = { Querystring: { from: string; to: string; by?: 'month' | 'year' } };
  app.get<ActivityQuerystring>('/activity', { schema: activitySchema }, async (request) =>
    activity.activity(request.principal!, { from: request.query.from, to: request.query.to, by: request.query.by ?? 'month' }, origin(request)));
  app.get<ActivityQuerystring>('/activity.csv', { schema: activitySchema }, async (request, reply) => {
    const rows = await activity.activity(request.principal!, { from: request.query.from, to: request.query.to, by: request.query.by ?? 'month' }, origin(request));
    return reply.type('text/csv; charset=utf-8').header('Content-Disposition', 'attachment; filename="teleradiology-activity.csv"').send(activityCsv(rows));
  });

  // The annual report as a PDF with its charts: the year's acts by month.
  app.get<{ Querystring: { year: number } }>('/activity.pdf', {
    schema: { querystring: { type: 'object', required: ['year'], additionalProperties: false, properties: { year: { type: 'integer', minimum: 2000, maximum: 2999 } } } },
  }, async (request, reply) => {
    const { year } = request.query;
    const who = request.principal!;
    const rows = await activity.activity(who, { from: `${year}-01-01T00:00:00Z`, to: `${year + 1}-01-01T00:00:00Z`, by: 'month' }, origin(request));
    const scope = who.territory === true || who.roles.includes('territory-admin') ? 'Tout le territoire' : `Sites : ${who.sites.map((s) => s.code).join(', ')}`;
    return reply.type('application/pdf').header('Content-Disposition', `attachment; filename="teleradiologie-activite-${year}.pdf"`)
      .send(await renderActivityPdf({ year, rows, scope, generatedAt: new Date() }));
  });

  app.get<{ Querystring: { modality?: string; bodyPart?: string } }>('/templates', {
    schema: { querystring: { type: 'object', additionalProperties: false, properties: { modality: short, bodyPart: short } } },
  }, async (request) => templates.templatesFor(request.query));
  app.put<{ Params: { code: string }; Body: { name: string; modality?: string; bodyPart?: string; fields: Array<{ name: string; label?: string; required?: boolean }>; findings?: string } }>('/templates/:code', {
    schema: {
      params: { type: 'object', required: ['code'], properties: { code: { type: 'string', maxLength: 64 } } },
      body: {
        type: 'object', required: ['name', 'fields'], additionalProperties: false,
        properties: {
          name: { type: 'string', minLength: 1, maxLength: 256 }, modality: { type: 'string', maxLength: 16 }, bodyPart: { type: 'string', maxLength: 64 }, findings: long,
          fields: {
            type: 'array', maxItems: 200,
            items: { type: 'object', required: ['name'], additionalProperties: false, properties: { name: { type: 'string', maxLength: 64 }, label: { type: 'string', maxLength: 256 }, required: { type: 'boolean' } } },
          },
        },
      },
    },
  }, async (request) => templates.putTemplate(request.principal!, { ...request.body, code: request.params.code }, origin(request)));

  app.post<{ Body: { login: string; specialty: string; startsAt: string; endsAt: string } }>('/oncall', {
    schema: {
      body: {
        type: 'object', required: ['login', 'specialty', 'startsAt', 'endsAt'], additionalProperties: false,
        properties: { login: { type: 'string', minLength: 1, maxLength: 64 }, specialty: { type: 'string', minLength: 1, maxLength: 64 }, startsAt: short, endsAt: short },
      },
    },
  }, async (request, reply) => reply.code(201).send(await requests.addShift(request.principal!, request.body, origin(request))));

  app.get<{ Querystring: { at?: string } }>('/oncall', {
    schema: { querystring: { type: 'object', additionalProperties: false, properties: { at: short } } },
  }, async (request) => {
    const at = request.query.at !== undefined ? new Date(request.query.at) : new Date();
    if (Number.isNaN(at.getTime())) throw new HttpProblem(400, 'at must be an ISO 8601 date and time');
    return requests.shiftsAt(request.principal!, at);
  });
}
