/**
 * Monthly invoices per site: the site's subscribed services (billing.sites) priced with its
 * tariffs over the month's metering (src/billing/metering.ts). One line per service and item
 * with its quantity, unit price and amount, in whole cents: the set-up fee in the month a
 * subscription starts, exams archived, storage (GB of 10^9 bytes stored at the end of the
 * month, when the site has a storage price), exams shared, share links opened (counted, not
 * priced), teleradiology acts, second readings, DMP publications. A line with nothing to
 * count is left out: a month without activity is an invoice without lines, not an error.
 * As CSV (`atrium billing invoice`, the operator's API) and as PDF.
 */
import type { Archive } from '../archive/archive.ts';
import { billingServices, isMonth, type BillingConfig, type BillingService, type ServiceTariff } from '../config/billing-config.ts';
import { monthlyUsage, type SiteUsage } from './metering.ts';

export class BillingError extends Error {
  constructor(readonly code: 'invalid' | 'not-found', message: string) {
    super(message);
  }
}

export interface InvoiceLine {
  service: BillingService;
  /** What is counted: set-up fee, exams archived, storage (GB-month), exams shared... */
  item: string;
  /** A count, or GB with six decimals for storage (as text, exactly what was priced). */
  quantity: string;
  unitPriceCents: number;
  amountCents: number;
}

export interface Invoice {
  site: string;
  siteName: string;
  month: string;
  currency: string;
  lines: InvoiceLine[];
  totalCents: number;
  usage: SiteUsage;
}

const GB = 1_000_000_000n;

/** bytes x cents per GB, rounded half up to the cent, in exact integer arithmetic. */
function storageAmountCents(bytes: number, centsPerGB: number): number {
  const b = BigInt(Math.max(0, Math.trunc(bytes)));
  return Number((b * BigInt(centsPerGB) + GB / 2n) / GB);
}

/** Bytes as GB with six decimals ("0.012345"), truncated. */
function gigabytes(bytes: number): string {
  const micro = (BigInt(Math.max(0, Math.trunc(bytes))) * 1_000_000n) / GB;
  return `${micro / 1_000_000n}.${String(micro % 1_000_000n).padStart(6, '0')}`;
}

/** The lines a service bills for a month. */
function serviceLines(service: BillingService, tariff: ServiceTariff, from: string, u: SiteUsage): InvoiceLine[] {
  const lines: InvoiceLine[] = [];
  const count = (item: string, n: number, unit: number) => {
    if (n > 0) lines.push({ service, item, quantity: String(n), unitPriceCents: unit, amountCents: n * unit });
  };
  if (u.month === from && tariff.setupFeeCents > 0) lines.push({ service, item: 'set-up fee', quantity: '1', unitPriceCents: tariff.setupFeeCents, amountCents: tariff.setupFeeCents });
  switch (service) {
    case 'archive':
      count('exams archived', u.examsArchived, tariff.perExamCents);
      if (tariff.storagePerGBMonthCents !== undefined && u.bytesTotal > 0) {
        lines.push({ service, item: 'storage (GB-month)', quantity: gigabytes(u.bytesTotal), unitPriceCents: tariff.storagePerGBMonthCents, amountCents: storageAmountCents(u.bytesTotal, tariff.storagePerGBMonthCents) });
      }
      break;
    case 'sharing':
      count('exams shared', u.examsShared, tariff.perExamCents);
      count('share links opened', u.shareLinksOpened, 0);
      break;
    case 'teleradiology':
      count('teleradiology acts', u.teleActs, tariff.perExamCents);
      count('second readings', u.secondReadings, tariff.perSecondReadingCents ?? tariff.perExamCents);
      break;
    case 'dmp':
      count('DMP publications', u.dmpPublications, tariff.perExamCents);
      break;
  }
  return lines;
}

/** A site's invoice for a month (YYYY-MM). */
export async function invoiceFor(archive: Archive, billing: BillingConfig, siteCode: string, month: string): Promise<Invoice> {
  if (!isMonth(month)) throw new BillingError('invalid', `the month must be YYYY-MM, not ${month}`);
  const site = archive.sites.get(siteCode);
  if (!site) throw new BillingError('not-found', `site ${siteCode} is not a site of this territory`);
  const [usage] = await monthlyUsage(archive, month, [siteCode]);
  const subscription = billing.sites.find((s) => s.site === siteCode);
  const lines: InvoiceLine[] = [];
  for (const service of billingServices) {
    const from = subscription?.services[service];
    const tariff = subscription?.tariffs[service];
    // Subscribed from `from`: nothing before it. (A tariff is present: checked at start.)
    if (from === undefined || tariff === undefined || month < from) continue;
    lines.push(...serviceLines(service, tariff, from, usage!));
  }
  return {
    site: siteCode, siteName: site.name, month, currency: billing.currency, lines,
    totalCents: lines.reduce((n, l) => n + l.amountCents, 0), usage: usage!,
  };
}

export const money = (cents: number): string => `${cents < 0 ? '-' : ''}${Math.trunc(Math.abs(cents) / 100)}.${String(Math.abs(cents) % 100).padStart(2, '0')}`;

const csvField = (s: string) => (/[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s);

/** The invoice as CSV: a header, then one line per service and item (no total line: the sum of the amounts). */
export function invoiceCsv(invoice: Invoice): string {
  const rows = [['service', 'item', 'quantity', 'unit_price', 'amount', 'currency']];
  for (const l of invoice.lines) rows.push([l.service, l.item, l.quantity, money(l.unitPriceCents), money(l.amountCents), invoice.currency]);
  return `${rows.map((r) => r.map(csvField).join(',')).join('\n')}\n`;
}

const serviceLabel: Record<BillingService, string> = { archive: 'Archivage', sharing: 'Partage', teleradiology: 'Téléradiologie', dmp: 'DMP' };
const itemLabel: Record<string, string> = {
  'set-up fee': 'Frais de mise en service', 'exams archived': 'Examens archivés', 'storage (GB-month)': 'Stockage (Go-mois)',
  'exams shared': 'Examens partagés', 'share links opened': 'Liens de partage ouverts', 'teleradiology acts': 'Actes de télé-interprétation',
  'second readings': 'Télé-expertises', 'DMP publications': 'Publications au DMP',
};

/** The invoice as a one-page PDF (French labels, as the sites' invoices are). */
export async function invoicePdf(invoice: Invoice, o: { issuer: string; generatedAt: Date }): Promise<Buffer> {
  // Loaded when a PDF is made, not at start (pdfkit and its fonts cost about 0.4 s of CPU to load).
  const { default: PDFDocument } = await import('pdfkit');
  const doc = new PDFDocument({ size: 'A4', margin: 50, info: { Title: `Facture ${invoice.site} ${invoice.month}`, Author: o.issuer, Creator: 'Atrium', CreationDate: o.generatedAt } });
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    doc.on('data', (c: Buffer) => chunks.push(c));
    doc.on('end', () => resolve(Buffer.concat(chunks)));
    doc.on('error', reject);
  });
  const euros = (cents: number) => `${money(cents).replace('.', ',')} ${invoice.currency === 'EUR' ? '€' : invoice.currency}`;
  doc.font('Helvetica-Bold').fontSize(16).text(`Relevé de facturation ${invoice.month}`);
  doc.font('Helvetica').fontSize(10).fillColor('#444').text(`${o.issuer} · ${invoice.siteName} (${invoice.site}) · édité le ${o.generatedAt.toISOString().slice(0, 10)}`);
  doc.moveDown(1.5).fillColor('black');
  const cols = [50, 150, 330, 400, 480];
  const header = ['Service', 'Poste', 'Quantité', 'Prix unitaire', 'Montant'];
  let y = doc.y;
  doc.font('Helvetica-Bold').fontSize(9);
  header.forEach((h, i) => doc.text(h, cols[i]!, y, { width: i >= 2 ? 70 : 170, align: i >= 2 ? 'right' : 'left' }));
  y += 16;
  doc.moveTo(50, y - 4).lineTo(550, y - 4).strokeColor('#999').lineWidth(0.5).stroke();
  doc.font('Helvetica').fontSize(9);
  if (invoice.lines.length === 0) {
    doc.text('Aucune activité facturable ce mois-ci.', 50, y);
    y += 16;
  }
  for (const l of invoice.lines) {
    const cells = [serviceLabel[l.service], itemLabel[l.item] ?? l.item, l.quantity.replace('.', ','), euros(l.unitPriceCents), euros(l.amountCents)];
    cells.forEach((c, i) => doc.text(c, cols[i]!, y, { width: i >= 2 ? 70 : 170, align: i >= 2 ? 'right' : 'left' }));
    y += 16;
  }
  doc.moveTo(50, y).lineTo(550, y).strokeColor('#999').lineWidth(0.5).stroke();
  doc.font('Helvetica-Bold').text('Total HT', cols[3]!, y + 6, { width: 70, align: 'right' }).text(euros(invoice.totalCents), cols[4]!, y + 6, { width: 70, align: 'right' });
  const u = invoice.usage;
  doc.font('Helvetica').fontSize(8).fillColor('#444').text(
    `Volumes du mois : ${u.examsArchived} examens archivés, ${u.instancesStored} objets reçus et ${u.instancesDeleted} supprimés ; ` +
    `stockés en fin de mois : ${u.instancesTotal} objets, ${u.bytesTotal} octets. Comptes issus du journal de comptage (metering_events).`, 50, y + 40, { width: 500 });
  doc.end();
  return done;
}
