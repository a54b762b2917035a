/**
 * Activity of the teleradiology service, for the sites' conventions and the regional
 * reports: acts (primary remote readings signed final, second readings answered) counted by
 * month or year, organ specialty, requesting and reading site and urgency, with their
 * turnaround (from the images' arrival, or the request when they came first, to the
 * signature; from the question to the answer): median and 90th percentile in minutes.
 * No patient data. A site administrator sees the acts their sites asked for or read.
 */
import { actorOf, type Principal } from '../access/principal.ts';
import { TeleError, type Origin, type TeleRequests, type Urgency } from './tele-requests.ts';

export type Act = 'primary-reading' | 'second-reading';

export interface ActivityRow {
  period: string;
  act: Act;
  specialty: string;
  requestingSite: string;
  readingSite: string;
  urgency: Urgency;
  count: number;
  medianMinutes: number;
  p90Minutes: number;
}

export interface ActivityQuery {
  /** Acts done in [from, to), ISO 8601 dates. */
  from: string;
  to: string;
  by: 'month' | 'year';
}

/** The value at rank ceil(p·n) of the sorted values (nearest-rank percentile); the median averages the two middle ones. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  if (p === 0.5 && sorted.length % 2 === 0) return (sorted[sorted.length / 2 - 1]! + sorted[sorted.length / 2]!) / 2;
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!;
}

interface ActRow { act: Act; done_at: string; started_at: string; specialty: string; requesting_site_id: number; reading_site_id: number | null; urgency: Urgency }

export class TeleActivity {
  constructor(private readonly requests: TeleRequests) {}

  async activity(who: Principal, q: ActivityQuery, origin: Origin): Promise<ActivityRow[]> {
    const everything = who.territory === true || who.roles.includes('territory-admin');
    if (!everything && !who.roles.includes('site-admin')) throw new TeleError('forbidden', 'activity reports are for administrators');
    const from = new Date(q.from);
    const to = new Date(q.to);
    if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime()) || to <= from) throw new TeleError('invalid', 'from and to must be ISO 8601 dates, from before to');
    const sql = this.requests.sql;
    const range = [from.toISOString(), to.toISOString()];
    const acts = await sql.all<ActRow>(
      `SELECT 'primary-reading' AS act, t.signed_at AS done_at, COALESCE(r.images_arrived_at, r.created_at) AS started_at, r.specialty,
              r.requesting_site_id, t.reading_site_id, r.urgency
         FROM tele_reports t JOIN tele_requests r ON r.id = t.request_id
        WHERE t.status IN ('final', 'amended') AND t.signed_at >= ? AND t.signed_at < ?
       UNION ALL
       SELECT 'second-reading' AS act, s.answered_at AS done_at, s.created_at AS started_at, s.specialty,
              r.requesting_site_id, s.answer_site_id AS reading_site_id, r.urgency
         FROM tele_second_readings s JOIN tele_requests r ON r.id = s.request_id
        WHERE s.status = 'answered' AND s.answered_at >= ? AND s.answered_at < ?`,
      [...range, ...range]);
    const mine = new Set(who.sites.map((s) => s.id));
    const groups = new Map<string, { row: Omit<ActivityRow, 'count' | 'medianMinutes' | 'p90Minutes'>; minutes: number[] }>();
    const siteCode = (id: number | null) => (id === null ? '' : this.requests.archive.siteById.get(Number(id))?.code ?? '?');
    for (const a of acts) {
      if (!everything && !mine.has(Number(a.requesting_site_id)) && !(a.reading_site_id !== null && mine.has(Number(a.reading_site_id)))) continue;
      const period = a.done_at.slice(0, q.by === 'month' ? 7 : 4);
      const row = { period, act: a.act, specialty: a.specialty, requestingSite: siteCode(a.requesting_site_id), readingSite: siteCode(a.reading_site_id), urgency: a.urgency };
      const key = JSON.stringify(row);
      let g = groups.get(key);
      if (!g) groups.set(key, (g = { row, minutes: [] }));
      g.minutes.push(Math.max(0, (Date.parse(a.done_at) - Date.parse(a.started_at)) / 60_000));
    }
    await this.requests.audit.record({ action: 'query', outcome: 'success', ...actorOf(who), ...origin, details: { what: 'teleradiology activity', from: range[0], to: range[1], by: q.by } });
    const round = (n: number) => Math.round(n * 10) / 10;
    return [...groups.values()]
      .map(({ row, minutes }) => {
        const sorted = minutes.sort((x, y) => x - y);
        return { ...row, count: sorted.length, medianMinutes: round(percentile(sorted, 0.5)), p90Minutes: round(percentile(sorted, 0.9)) };
      })
      .sort((x, y) => x.period.localeCompare(y.period) || x.act.localeCompare(y.act) || x.specialty.localeCompare(y.specialty)
        || x.requestingSite.localeCompare(y.requestingSite) || x.readingSite.localeCompare(y.readingSite) || x.urgency.localeCompare(y.urgency));
  }
}

const csvColumns: Array<keyof ActivityRow> = ['period', 'act', 'specialty', 'requestingSite', 'readingSite', 'urgency', 'count', 'medianMinutes', 'p90Minutes'];

/** RFC 4180 CSV, CRLF line ends, a header line. */
export function activityCsv(rows: readonly ActivityRow[]): string {
  const cell = (v: string | number) => {
    const s = String(v);
    return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  };
  return [csvColumns.join(','), ...rows.map((r) => csvColumns.map((c) => cell(r[c])).join(','))].join('\r\n') + '\r\n';
}
