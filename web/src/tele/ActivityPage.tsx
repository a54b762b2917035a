import { useCallback, useEffect, useState } from 'react';
import type { Language } from '../i18n.ts';
import { activity, activityCsvUrl, activityPdfUrl, type ActivityRow } from './tele-api.ts';
import { teleTexts } from './texts.ts';
import { errorText } from '../errors.ts';

const isoDay = (d: Date) => d.toISOString().slice(0, 10);

/** Administrators' activity table (acts signed or answered in [from, to)), and its CSV. */
export function ActivityPage({ language }: { language: Language }) {
  const tt = teleTexts[language];
  const now = new Date();
  const [range, setRange] = useState({ from: `${now.getUTCFullYear()}-01-01`, to: isoDay(new Date(now.getTime() + 86_400_000)), by: 'month' as 'month' | 'year' });
  const [rows, setRows] = useState<ActivityRow[]>();
  const [error, setError] = useState<string>();
  const load = useCallback(() => { setError(undefined); activity(range.from, range.to, range.by).then(setRows, (e: unknown) => setError(errorText(e, language))); }, [range, language]);
  useEffect(load, [load]);

  return (
    <section className="card wide">
      <h1>{tt.activity}</h1>
      <form className="search" onSubmit={(e) => { e.preventDefault(); load(); }}>
        <label>{tt.from}<input type="date" name="from" value={range.from} onChange={(e) => setRange({ ...range, from: e.target.value })} /></label>
        <label>{tt.to}<input type="date" name="to" value={range.to} onChange={(e) => setRange({ ...range, to: e.target.value })} /></label>
        <label>{tt.by}
          <select name="by" value={range.by} onChange={(e) => setRange({ ...range, by: e.target.value as 'month' | 'year' })}>
            <option value="month">{tt.month}</option><option value="year">{tt.year}</option>
          </select>
        </label>
        <a className="button" data-testid="activity-csv" href={activityCsvUrl(range.from, range.to, range.by)}>{tt.csv}</a>
        <a className="button" data-testid="activity-pdf" href={activityPdfUrl(Number(range.from.slice(0, 4)))}>{tt.annualPdf} {range.from.slice(0, 4)}</a>
      </form>
      {error && <p className="error" role="alert">{error}</p>}
      {rows && rows.length === 0 && <p className="status">{tt.empty}</p>}
      {rows && rows.length > 0 && (
        <table className="results" data-testid="activity">
          <thead><tr><th>{tt.period}</th><th>{tt.act}</th><th>{tt.specialty}</th><th>{tt.site}</th><th>{tt.readingSite}</th><th>{tt.urgency}</th><th>{tt.count}</th><th>{tt.median}</th><th>{tt.p90}</th></tr></thead>
          <tbody>
            {rows.map((r) => (
              <tr key={`${r.period}/${r.act}/${r.specialty}/${r.requestingSite}/${r.readingSite}/${r.urgency}`} data-testid={`activity-${r.act}`}>
                <td>{r.period}</td><td>{tt.actNames[r.act]}</td><td>{r.specialty}</td><td>{r.requestingSite}</td><td>{r.readingSite}</td>
                <td>{tt.urgencyNames[r.urgency]}</td><td className="count">{r.count}</td><td>{r.medianMinutes}</td><td>{r.p90Minutes}</td>
              </tr>
            ))}
          </tbody>
          <tfoot><tr><th colSpan={6}>{tt.total}</th><th data-testid="activity-total">{rows.reduce((n, r) => n + r.count, 0)}</th><th colSpan={2} /></tr></tfoot>
        </table>
      )}
    </section>
  );
}
