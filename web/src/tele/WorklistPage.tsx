import { useCallback, useEffect, useState } from 'react';
import type { Me } from '../api.ts';
import type { Language } from '../i18n.ts';
import { navigate } from '../router.ts';
import { claim, release, requestStatuses, urgencies, worklist, type WorklistEntry, type WorklistQuery } from './tele-api.ts';
import { Countdown } from './Countdown.tsx';
import { formatDateTime, teleTexts } from './texts.ts';
import { errorText } from '../errors.ts';
import { isRadiologist } from './TelePages.tsx';

/** How often the worklist asks again: polling is the simplest honest live update (no connection to keep). */
export const worklistRefreshMs = 3000;

/**
 * The worklist in deadline order (the API's order), filtered by site, modality, body part,
 * urgency, status and "mine"; a radiologist claims and releases from it. A requesting site's
 * members see their own requests and their status here.
 */
export function WorklistPage({ me, language }: { me: Me; language: Language }) {
  const tt = teleTexts[language];
  const radiologist = isRadiologist(me);
  const [filter, setFilter] = useState<WorklistQuery>(radiologist ? {} : { status: requestStatuses.join(',') });
  const [entries, setEntries] = useState<WorklistEntry[]>();
  const [error, setError] = useState<string>();
  const load = useCallback(() => {
    worklist(filter).then((e) => { setEntries(e); setError(undefined); }, (e: unknown) => setError(errorText(e, language)));
  }, [filter, language]);
  useEffect(() => {
    load();
    const timer = window.setInterval(load, worklistRefreshMs);
    return () => window.clearInterval(timer);
  }, [load]);
  const set = (k: keyof WorklistQuery) => (e: { target: { value: string } }) => setFilter({ ...filter, [k]: e.target.value === '' ? undefined : e.target.value });
  const act = (fn: () => Promise<unknown>) => { fn().then(load, (e: unknown) => setError(errorText(e, language))); };

  return (
    <section className="card wide">
      <h1>{radiologist ? tt.worklist : tt.requests} <span className="muted small">{tt.live}</span></h1>
      <form className="search" onSubmit={(e) => e.preventDefault()} data-testid="worklist-filters">
        <label>{tt.site}<input name="site" value={filter.site ?? ''} onChange={set('site')} /></label>
        <label>{tt.modality}<input name="modality" value={filter.modality ?? ''} onChange={set('modality')} /></label>
        <label>{tt.bodyPart}<input name="bodyPart" value={filter.bodyPart ?? ''} onChange={set('bodyPart')} /></label>
        <label>{tt.urgency}
          <select name="urgency" value={filter.urgency ?? ''} onChange={set('urgency')}>
            <option value="">{tt.all}</option>
            {urgencies.map((u) => <option key={u} value={u}>{tt.urgencyNames[u]}</option>)}
          </select>
        </label>
        <label>{tt.status}
          <select name="status" value={filter.status ?? ''} onChange={set('status')}>
            <option value="">{tt.statusNames['awaiting-protocol']} + {tt.statusNames.open}</option>
            {requestStatuses.map((s) => <option key={s} value={s}>{tt.statusNames[s]}</option>)}
            <option value={requestStatuses.join(',')}>{tt.all}</option>
          </select>
        </label>
        {radiologist && (
          <label className="inline"><input type="checkbox" name="mine" checked={filter.mine === true} onChange={(e) => setFilter({ ...filter, mine: e.target.checked })} />{tt.mine}</label>
        )}
      </form>
      {error && <p className="error" role="alert">{error}</p>}
      {entries && entries.length === 0 && <p className="status">{tt.empty}</p>}
      {entries && entries.length > 0 && (
        <div className="table-scroll"><table className="results" data-testid="worklist">
          <thead><tr><th>{tt.deadline}</th><th>{tt.urgency}</th><th>{tt.status}</th><th>{tt.site}</th><th>{tt.modality}</th><th>{tt.bodyPart}</th><th>{tt.specialty}</th><th>{tt.images}</th><th>{tt.reader}</th><th /></tr></thead>
          <tbody>
            {entries.map((e) => (
              <tr key={e.id} className={`urgency-${e.urgency}`} data-testid={`request-${e.id}`}>
                <td>
                  {formatDateTime(e.deadlineAt, language)}<br />
                  {(e.status === 'open' || e.status === 'awaiting-protocol') && <Countdown deadlineAt={e.deadlineAt} tt={tt} />}
                  {e.escalated && <span className="badge">{tt.escalated}</span>}
                </td>
                <td><span className={`badge urgency-${e.urgency}`}>{tt.urgencyNames[e.urgency]}</span></td>
                <td>{tt.statusNames[e.status]}</td>
                <td>{e.requestingSite}</td><td>{e.modality}</td><td>{e.bodyPart}</td><td>{e.specialty}</td>
                <td>{e.imagesArrived ? tt.arrived : tt.awaited}</td>
                <td>{e.assignedTo ?? ''}{e.claimedBy ? ` (${tt.claimedBy} ${e.claimedBy})` : ''}</td>
                <td className="actions">
                  <button type="button" onClick={() => navigate(`/tele/request?id=${e.id}`)}>{tt.open}</button>
                  {radiologist && (e.status === 'open' || e.status === 'awaiting-protocol') && e.claimedBy === undefined
                    && <button type="button" data-testid="claim" onClick={() => act(() => claim(e.id))}>{tt.claim}</button>}
                  {radiologist && (e.status === 'open' || e.status === 'awaiting-protocol') && e.claimedBy === me.id
                    && <button type="button" data-testid="release" onClick={() => act(() => release(e.id))}>{tt.release}</button>}
                </td>
              </tr>
            ))}
          </tbody>
        </table></div>
      )}
    </section>
  );
}
