/**
 * The annual teleradiology activity report for administrators and the regional health
 * agency: one PDF with the year's acts by month (a bar chart, primary readings and second
 * readings side by side), by specialty (horizontal bars), and a table by requesting site and
 * urgency with median and p90 turnaround. Drawn with pdfkit's own primitives.
 */
import type { ActivityRow } from '../workflow/tele-activity.ts';

const months = ['janv.', 'févr.', 'mars', 'avr.', 'mai', 'juin', 'juil.', 'août', 'sept.', 'oct.', 'nov.', 'déc.'];
const urgencyLabel: Record<string, string> = { routine: 'programmée', urgent: 'urgente', stroke: 'alerte AVC' };
const colours = { primary: '#12324f', second: '#d96c00', axis: '#666666', grid: '#dddddd' };

function sum(rows: readonly ActivityRow[], pick: (r: ActivityRow) => boolean): number {
  return rows.filter(pick).reduce((n, r) => n + r.count, 0);
}

/** The weighted mean of the groups' medians: a summary, said to be one (the exact median needs the acts). */
function meanOfMedians(rows: readonly ActivityRow[]): number {
  const n = rows.reduce((k, r) => k + r.count, 0);
  return n === 0 ? 0 : Math.round((rows.reduce((k, r) => k + r.medianMinutes * r.count, 0) / n) * 10) / 10;
}

/** `rows`: the year's activity by month (TeleActivity.activity with by=month). */
export async function renderActivityPdf(o: { year: number; rows: readonly ActivityRow[]; scope: string; generatedAt: Date }): Promise<Buffer> {
  // Loaded when a PDF is made, not at start (pdfkit and its fonts cost about 0.4 s of CPU to load).
  const { default: PDFDocument } = await import('pdfkit');
  const doc = new PDFDocument({ size: 'A4', margin: 50, info: { Title: `Activité de téléradiologie ${o.year}`, Creator: 'Atrium', CreationDate: o.generatedAt } });
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    doc.on('data', (c: Buffer) => chunks.push(c));
    doc.on('end', () => resolve(Buffer.concat(chunks)));
    doc.on('error', reject);
  });
  const rows = o.rows;
  const primary = rows.filter((r) => r.act === 'primary-reading');
  const second = rows.filter((r) => r.act === 'second-reading');

  doc.font('Helvetica-Bold').fontSize(16).text(`Activité de téléradiologie ${o.year}`);
  doc.font('Helvetica').fontSize(10).fillColor('#444').text(`${o.scope} · édité le ${o.generatedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC par Atrium`);
  doc.moveDown().fillColor('black').fontSize(11);
  doc.text(`Télé-interprétations signées : ${sum(primary, () => true)} (délai médian moyen ${meanOfMedians(primary)} min)`);
  doc.text(`Télé-expertises rendues : ${sum(second, () => true)} (délai médian moyen ${meanOfMedians(second)} min)`);
  doc.text(`Dont alertes AVC : ${sum(primary, (r) => r.urgency === 'stroke')} interprétations`);
  doc.moveDown();

  // By month: two bars a month.
  const byMonth = months.map((_, m) => {
    const period = `${o.year}-${String(m + 1).padStart(2, '0')}`;
    return { p: sum(primary, (r) => r.period === period), s: sum(second, (r) => r.period === period) };
  });
  const chart = { x: 80, y: doc.y + 20, w: 440, h: 170 };
  // A scale in whole acts: four grid steps of an integer each.
  const top = Math.max(4, Math.ceil(Math.max(...byMonth.map((b) => Math.max(b.p, b.s))) / 4) * 4);
  doc.font('Helvetica-Bold').fontSize(11).text('Actes par mois', 50, chart.y - 20);
  doc.font('Helvetica').fontSize(8);
  for (let i = 0; i <= 4; i++) {
    const y = chart.y + chart.h - (chart.h * i) / 4;
    doc.moveTo(chart.x, y).lineTo(chart.x + chart.w, y).strokeColor(colours.grid).lineWidth(0.5).stroke();
    doc.fillColor(colours.axis).text(String(Math.round((top * i) / 4)), chart.x - 35, y - 4, { width: 30, align: 'right' });
  }
  const slot = chart.w / 12;
  byMonth.forEach((b, m) => {
    const x = chart.x + m * slot + slot * 0.15;
    const bar = slot * 0.33;
    const hp = (chart.h * b.p) / top;
    const hs = (chart.h * b.s) / top;
    if (hp > 0) doc.rect(x, chart.y + chart.h - hp, bar, hp).fill(colours.primary);
    if (hs > 0) doc.rect(x + bar, chart.y + chart.h - hs, bar, hs).fill(colours.second);
    doc.fillColor(colours.axis).text(months[m]!, chart.x + m * slot, chart.y + chart.h + 4, { width: slot, align: 'center' });
  });
  const legendY = chart.y + chart.h + 20;
  doc.rect(chart.x, legendY, 8, 8).fill(colours.primary);
  doc.fillColor('black').text('télé-interprétations', chart.x + 12, legendY);
  doc.rect(chart.x + 120, legendY, 8, 8).fill(colours.second);
  doc.fillColor('black').text('télé-expertises', chart.x + 132, legendY);

  // By specialty: horizontal bars.
  const specialties = [...new Set(rows.map((r) => r.specialty))].sort();
  let y = legendY + 35;
  doc.font('Helvetica-Bold').fontSize(11).fillColor('black').text('Actes par spécialité', 50, y);
  y += 20;
  const maxSpecialty = Math.max(1, ...specialties.map((sp) => sum(rows, (r) => r.specialty === sp)));
  doc.font('Helvetica').fontSize(9);
  for (const sp of specialties) {
    const n = sum(rows, (r) => r.specialty === sp);
    doc.fillColor('black').text(sp, 50, y, { width: 110 });
    doc.rect(165, y, (300 * n) / maxSpecialty, 10).fill(colours.primary);
    doc.fillColor('black').text(String(n), 170 + (300 * n) / maxSpecialty, y);
    y += 16;
  }
  if (specialties.length === 0) {
    doc.fillColor('#444').text('Aucun acte sur l\'année.', 50, y);
    y += 16;
  }

  // By requesting site and urgency: a table.
  y += 15;
  doc.font('Helvetica-Bold').fontSize(11).fillColor('black').text('Par site demandeur et urgence', 50, y);
  y += 20;
  const columns = [['Site demandeur', 50, 110], ['Urgence', 160, 80], ['Acte', 240, 100], ['Nombre', 340, 50], ['Médiane (min)', 390, 80], ['p90 (min)', 470, 60]] as const;
  doc.fontSize(9);
  for (const [label, x, w] of columns) doc.text(label, x, y, { width: w });
  y += 14;
  doc.font('Helvetica');
  const groups = new Map<string, ActivityRow[]>();
  for (const r of rows) {
    const key = `${r.requestingSite}\u0000${r.urgency}\u0000${r.act}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  for (const [key, g] of [...groups].sort(([a], [b]) => a.localeCompare(b))) {
    if (y > 780) {
      doc.addPage();
      y = 50;
    }
    const [site, urgency, act] = key.split('\u0000') as [string, string, string];
    const count = g.reduce((n, r) => n + r.count, 0);
    const cells = [site, urgencyLabel[urgency] ?? urgency, act === 'primary-reading' ? 'interprétation' : 'télé-expertise', String(count), String(meanOfMedians(g)), String(Math.max(...g.map((r) => r.p90Minutes)))];
    columns.forEach(([, x, w], i) => doc.text(cells[i]!, x, y, { width: w }));
    y += 13;
  }
  doc.fontSize(8).fillColor('#444')
    .text('Délais : de l\'arrivée des images (ou de la demande) à la signature définitive, ou de la demande de télé-expertise à sa réponse.', 50, Math.min(y + 15, 770), { width: 480 })
    .text('Par groupe : la moyenne pondérée des délais médians mensuels ; p90 : le plus grand des p90 mensuels.', { width: 480 });
  doc.end();
  return done;
}
