import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AuditTrail } from '../access/audit.ts';
import { actorOf } from '../access/principal.ts';
import type { Archive } from '../archive/archive.ts';
import { isMonth, type BillingConfig } from '../config/billing-config.ts';
import { BillingError, invoiceCsv, invoiceFor, invoicePdf } from '../billing/invoice.ts';
import { monthlyUsage, monthsBetween, type SiteUsage } from '../billing/metering.ts';
import { HttpProblem, problemErrorHandler } from '../dicomweb/problem.ts';

const month = { type: 'string', pattern: '^[0-9]{4}-(0[1-9]|1[0-2])$' } as const;
const site = { type: 'string', minLength: 1, maxLength: 32 } as const;

/**
 * /api/billing, for the territory's operator (territory-admin) only: the usage per site and
 * month (GET /usage?month= or ?from=&to=, at most 36 months), and a site's invoice for a
 * month (GET /invoice?site=&month= as JSON, /invoice.csv, /invoice.pdf). No patient data;
 * each read is in the audit trail, each refusal too.
 */
export async function billingRoutes(app: FastifyInstance, options: { archive: Archive; billing: BillingConfig }): Promise<void> {
  const { archive, billing } = options;
  const audit = new AuditTrail(archive.index.sql);
  app.setErrorHandler(problemErrorHandler('billing'));
  const origin = (request: FastifyRequest) => ({ ...actorOf(request.principal!), source: request.ip, via: 'api' as const });
  app.addHook('preHandler', async (request) => {
    if (request.principal!.roles.includes('territory-admin')) return;
    await audit.record({ action: 'query', outcome: 'refused', ...origin(request), details: { what: 'billing', url: request.url.split('?')[0] } });
    throw new HttpProblem(403, 'billing is for the territory\'s administrators');
  });

  app.get<{ Querystring: { month?: string; from?: string; to?: string } }>('/usage', {
    schema: { querystring: { type: 'object', additionalProperties: false, properties: { month, from: month, to: month } } },
  }, async (request) => {
    const q = request.query;
    const from = q.month ?? q.from;
    const to = q.month ?? q.to ?? from;
    if (from === undefined || to === undefined || (q.month !== undefined && (q.from !== undefined || q.to !== undefined))) {
      throw new HttpProblem(400, 'give month=YYYY-MM, or from=YYYY-MM and to=YYYY-MM');
    }
    if (to < from) throw new HttpProblem(400, 'from must come before to');
    const months = monthsBetween(from, to);
    if (months.at(-1) !== to) throw new HttpProblem(400, 'at most 36 months at a time');
    const usage: SiteUsage[] = [];
    for (const m of months) usage.push(...await monthlyUsage(archive, m));
    await audit.record({ action: 'query', outcome: 'success', ...origin(request), details: { what: 'billing usage', from, to } });
    return { from, to, months, usage };
  });

  const invoice = async (request: FastifyRequest<{ Querystring: { site: string; month: string } }>, format: string) => {
    const { site: code, month: m } = request.query;
    if (!isMonth(m)) throw new HttpProblem(400, 'month must be YYYY-MM');
    try {
      const result = await invoiceFor(archive, billing, code, m);
      await audit.record({ action: 'query', outcome: 'success', ...origin(request), details: { what: 'invoice', site: code, month: m, format } });
      return result;
    } catch (e) {
      if (e instanceof BillingError) throw new HttpProblem(e.code === 'not-found' ? 404 : 400, e.message);
      throw e;
    }
  };
  const invoiceQuery = { schema: { querystring: { type: 'object', required: ['site', 'month'], additionalProperties: false, properties: { site, month } } } };

  app.get<{ Querystring: { site: string; month: string } }>('/invoice', invoiceQuery, async (request) => ({ invoice: await invoice(request, 'json') }));

  app.get<{ Querystring: { site: string; month: string } }>('/invoice.csv', invoiceQuery, async (request, reply) => {
    const result = await invoice(request, 'csv');
    return reply
      .header('content-type', 'text/csv; charset=utf-8')
      .header('content-disposition', `attachment; filename="invoice-${result.site}-${result.month}.csv"`)
      .send(invoiceCsv(result));
  });

  app.get<{ Querystring: { site: string; month: string } }>('/invoice.pdf', invoiceQuery, async (request, reply) => {
    const result = await invoice(request, 'pdf');
    return reply
      .header('content-type', 'application/pdf')
      .header('content-disposition', `attachment; filename="invoice-${result.site}-${result.month}.pdf"`)
      .send(await invoicePdf(result, { issuer: billing.issuer, generatedAt: new Date() }));
  });
}
