import { useEffect, useMemo, useState } from 'react';
import { getJson } from '../api.ts';
import type { Language } from '../i18n.ts';
import { errorText } from '../errors.ts';

/** As GET /api/billing/usage answers it (src/billing/metering.ts SiteUsage). */
interface SiteUsage {
  site: string; month: string; examsArchived: number; instancesStored: number; instancesDeleted: number; bytesGrowth: number;
  instancesTotal: number; bytesTotal: number; examsShared: number; shareLinksOpened: number; teleActs: number; secondReadings: number; dmpPublications: number;
}
interface InvoiceLine { service: string; item: string; quantity: string; unitPriceCents: number; amountCents: number }
interface Invoice { site: string; month: string; currency: string; lines: InvoiceLine[]; totalCents: number }

type Metric = 'examsArchived' | 'storedGB' | 'examsShared' | 'shareLinksOpened' | 'teleActs' | 'secondReadings' | 'dmpPublications';
const metrics: readonly Metric[] = ['examsArchived', 'storedGB', 'examsShared', 'shareLinksOpened', 'teleActs', 'secondReadings', 'dmpPublications'];

const texts = {
  fr: {
    title: 'Facturation : volumes par site et par mois', year: 'Année', metric: 'Volume', loading: 'Chargement…',
    metrics: { examsArchived: 'Examens archivés', storedGB: 'Stockage en fin de mois (Go)', examsShared: 'Examens partagés', shareLinksOpened: 'Liens de partage ouverts', teleActs: 'Actes de téléradiologie', secondReadings: 'Télé-expertises', dmpPublications: 'Publications au DMP' } as Record<Metric, string>,
    months: ['janv.', 'févr.', 'mars', 'avr.', 'mai', 'juin', 'juil.', 'août', 'sept.', 'oct.', 'nov.', 'déc.'],
    table: 'Détail du mois', site: 'Site', invoice: 'Relevé', service: 'Service', item: 'Poste', quantity: 'Quantité', unitPrice: 'Prix unitaire', amount: 'Montant', total: 'Total',
    noLines: 'Aucune ligne facturable ce mois-ci.', csv: 'CSV', pdf: 'PDF', month: 'Mois', chart: (m: string) => `${m} par mois et par site`,
    items: { 'set-up fee': 'Frais de mise en service', 'exams archived': 'Examens archivés', 'storage (GB-month)': 'Stockage (Go-mois)', 'exams shared': 'Examens partagés', 'share links opened': 'Liens ouverts', 'teleradiology acts': 'Actes de téléradiologie', 'second readings': 'Télé-expertises', 'DMP publications': 'Publications au DMP' } as Record<string, string>,
    services: { archive: 'Archivage', sharing: 'Partage', teleradiology: 'Téléradiologie', dmp: 'DMP' } as Record<string, string>,
  },
  en: {
    title: 'Billing: volumes per site and month', year: 'Year', metric: 'Volume', loading: 'Loading…',
    metrics: { examsArchived: 'Exams archived', storedGB: 'Stored at month end (GB)', examsShared: 'Exams shared', shareLinksOpened: 'Share links opened', teleActs: 'Teleradiology acts', secondReadings: 'Second readings', dmpPublications: 'DMP publications' } as Record<Metric, string>,
    months: ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'],
    table: 'The month in detail', site: 'Site', invoice: 'Invoice', service: 'Service', item: 'Item', quantity: 'Quantity', unitPrice: 'Unit price', amount: 'Amount', total: 'Total',
    noLines: 'Nothing to invoice this month.', csv: 'CSV', pdf: 'PDF', month: 'Month', chart: (m: string) => `${m} per month and site`,
    items: {} as Record<string, string>,
    services: { archive: 'Archive', sharing: 'Sharing', teleradiology: 'Teleradiology', dmp: 'DMP' } as Record<string, string>,
  },
};

const palette = ['#12324f', '#d96c00', '#2b8a3e', '#8e44ad', '#c0392b', '#16a085'];

function valueOf(u: SiteUsage, m: Metric): number {
  return m === 'storedGB' ? u.bytesTotal / 1e9 : u[m];
}

const money = (cents: number, currency: string, language: Language) =>
  new Intl.NumberFormat(language === 'fr' ? 'fr-FR' : 'en-GB', { style: 'currency', currency }).format(cents / 100);

/** Grouped bars (one per site) for each month of the year, in plain SVG. */
function BarChart({ usage, months, sites, metric, monthNames, title }: { usage: SiteUsage[]; months: string[]; sites: string[]; metric: Metric; monthNames: string[]; title: string }) {
  const width = 760;
  const height = 240;
  const left = 48;
  const bottom = 24;
  const plotH = height - bottom - 12;
  const values = usage.map((u) => valueOf(u, metric));
  const highest = Math.max(...values, 0);
  // Counts: an even whole top, so that the middle line is a whole number too.
  const top = metric === 'storedGB' ? highest || 1 : Math.max(2, Math.ceil(highest / 2) * 2);
  const slot = (width - left) / months.length;
  const bar = Math.max(2, (slot - 8) / Math.max(1, sites.length));
  const fmt = (v: number) => (metric === 'storedGB' ? v.toFixed(v < 1 ? 4 : 2) : String(Math.round(v)));
  return (
    <svg role="img" aria-label={title} viewBox={`0 0 ${width} ${height}`} width="100%" data-testid="billing-chart" style={{ maxWidth: width }}>
      {[0, 0.5, 1].map((f) => (
        <g key={f}>
          <line x1={left} x2={width} y1={12 + plotH * (1 - f)} y2={12 + plotH * (1 - f)} stroke="#ddd" />
          <text x={left - 6} y={16 + plotH * (1 - f)} textAnchor="end" fontSize="10" fill="#666">{fmt(top * f)}</text>
        </g>
      ))}
      {months.map((month, i) => (
        <g key={month}>
          {sites.map((site, s) => {
            const u = usage.find((x) => x.month === month && x.site === site);
            const v = u ? valueOf(u, metric) : 0;
            const h = (v / top) * plotH;
            return (
              <rect key={site} data-testid={`bar-${site}-${month}`} data-value={fmt(v)} x={left + i * slot + 4 + s * bar} y={12 + plotH - h} width={bar - 1} height={h} fill={palette[s % palette.length]}>
                <title>{`${site} ${month}: ${fmt(v)}`}</title>
              </rect>
            );
          })}
          <text x={left + i * slot + slot / 2} y={height - 6} textAnchor="middle" fontSize="10" fill="#444">{monthNames[i]}</text>
        </g>
      ))}
    </svg>
  );
}

/** The operator's dashboard (territory administrators): the year's volumes per site and month, and each site's invoice. */
export function BillingPage({ language }: { language: Language }) {
  const t = texts[language];
  const [year, setYear] = useState(() => new Date().getFullYear());
  const [metric, setMetric] = useState<Metric>('examsArchived');
  const [data, setData] = useState<{ months: string[]; usage: SiteUsage[] }>();
  const [error, setError] = useState<string>();
  const [month, setMonth] = useState(() => `${new Date().getFullYear()}-${String(new Date().getMonth() + 1).padStart(2, '0')}`);
  const [site, setSite] = useState('');
  const [invoice, setInvoice] = useState<Invoice>();

  useEffect(() => {
    setData(undefined);
    getJson<{ months: string[]; usage: SiteUsage[] }>(`/api/billing/usage?from=${year}-01&to=${year}-12`).then(setData, (e: unknown) => setError(errorText(e, language)));
  }, [year]);
  const sites = useMemo(() => [...new Set((data?.usage ?? []).map((u) => u.site))].sort(), [data]);
  useEffect(() => {
    if (!site && sites.length > 0) setSite(sites[0]!);
  }, [site, sites]);
  useEffect(() => {
    if (!site || !/^[0-9]{4}-[0-9]{2}$/.test(month)) return;
    setInvoice(undefined);
    getJson<{ invoice: Invoice }>(`/api/billing/invoice?${new URLSearchParams({ site, month })}`).then((r) => setInvoice(r.invoice), (e: unknown) => setError(errorText(e, language)));
  }, [site, month]);
  const monthUsage = (data?.usage ?? []).filter((u) => u.month === month);
  const query = new URLSearchParams({ site, month }).toString();

  return (
    <section className="card wide" data-testid="billing-page">
      <h1>{t.title}</h1>
      {error && <p className="error" role="alert">{error}</p>}
      <div className="filters">
        <label>{t.year} <input type="number" min={2000} max={2100} value={year} data-testid="billing-year" onChange={(e) => setYear(Number(e.target.value))} /></label>
        <label>{t.metric} <select value={metric} data-testid="billing-metric" onChange={(e) => setMetric(e.target.value as Metric)}>
          {metrics.map((m) => <option key={m} value={m}>{t.metrics[m]}</option>)}
        </select></label>
      </div>
      {!data && !error && <p className="status">{t.loading}</p>}
      {data && (
        <>
          <h2>{t.chart(t.metrics[metric])}</h2>
          <BarChart usage={data.usage} months={data.months} sites={sites} metric={metric} monthNames={t.months} title={t.chart(t.metrics[metric])} />
          <p className="legend" data-testid="billing-legend">
            {sites.map((s, i) => <span key={s} style={{ marginRight: 16 }}><span style={{ display: 'inline-block', width: 10, height: 10, background: palette[i % palette.length], marginRight: 4 }} />{s}</span>)}
          </p>
        </>
      )}
      <h2>{t.table}</h2>
      <div className="filters">
        <label>{t.month} <input type="month" value={month} data-testid="billing-month" onChange={(e) => setMonth(e.target.value)} /></label>
        <label>{t.site} <select value={site} data-testid="billing-site" onChange={(e) => setSite(e.target.value)}>
          {sites.map((s) => <option key={s} value={s}>{s}</option>)}
        </select></label>
      </div>
      {monthUsage.length > 0 && (
        <table data-testid="billing-usage">
          <thead><tr><th>{t.site}</th>{metrics.map((m) => <th key={m}>{t.metrics[m]}</th>)}</tr></thead>
          <tbody>
            {monthUsage.map((u) => (
              <tr key={u.site} data-testid={`usage-${u.site}`}><td>{u.site}</td>{metrics.map((m) => <td key={m}>{m === 'storedGB' ? valueOf(u, m).toFixed(6) : valueOf(u, m)}</td>)}</tr>
            ))}
          </tbody>
        </table>
      )}
      {invoice && (
        <>
          <h2>{t.invoice} {invoice.site} {invoice.month} <a className="link" href={`/api/billing/invoice.csv?${query}`} data-testid="invoice-csv">{t.csv}</a> <a className="link" href={`/api/billing/invoice.pdf?${query}`} data-testid="invoice-pdf">{t.pdf}</a></h2>
          {invoice.lines.length === 0 ? <p className="status" data-testid="invoice-empty">{t.noLines}</p> : (
            <table data-testid="invoice">
              <thead><tr><th>{t.service}</th><th>{t.item}</th><th>{t.quantity}</th><th>{t.unitPrice}</th><th>{t.amount}</th></tr></thead>
              <tbody>
                {invoice.lines.map((l) => (
                  <tr key={`${l.service}-${l.item}`}><td>{t.services[l.service] ?? l.service}</td><td>{t.items[l.item] ?? l.item}</td><td>{l.quantity}</td><td>{money(l.unitPriceCents, invoice.currency, language)}</td><td>{money(l.amountCents, invoice.currency, language)}</td></tr>
                ))}
                <tr><td colSpan={4}><strong>{t.total}</strong></td><td data-testid="invoice-total"><strong>{money(invoice.totalCents, invoice.currency, language)}</strong></td></tr>
              </tbody>
            </table>
          )}
        </>
      )}
    </section>
  );
}
