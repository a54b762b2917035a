/**
 * "N exams elsewhere": the same person's exams at sites the reader may not open, counted (never
 * named) by the server, with a request for access that takes a reason; the request is recorded
 * and audited, and the administrators of those sites answer it by sharing the exams.
 */
import { useEffect, useState } from 'react';
import { getJson, postJson } from '../api.ts';
import type { ViewerTexts } from './texts.ts';

export function ExamsElsewhere({ StudyInstanceUID, t }: { StudyInstanceUID: string; t: ViewerTexts }) {
  const [found, setFound] = useState<{ exams: number; mayRequest: boolean }>();
  const [asking, setAsking] = useState(false);
  const [reason, setReason] = useState('');
  const [status, setStatus] = useState<'sending' | 'sent' | 'failed'>();
  useEffect(() => {
    setFound(undefined);
    setStatus(undefined);
    getJson<{ exams: number; mayRequest: boolean }>(`/api/access-requests/elsewhere?${new URLSearchParams({ StudyInstanceUID })}`).then(setFound, () => setFound(undefined));
  }, [StudyInstanceUID]);
  if (!found || found.exams === 0) return null;
  const send = async () => {
    setStatus('sending');
    const r = await postJson<unknown>('/api/access-requests', { StudyInstanceUID, reason: reason.trim() }).catch(() => ({ status: 0 }));
    setStatus(r.status === 201 ? 'sent' : 'failed');
    if (r.status === 201) setAsking(false);
  };
  return (
    <div className="elsewhere" role="status" data-testid="exams-elsewhere">
      <span data-testid="exams-elsewhere-count">{t.examsElsewhere(found.exams)}</span>
      {found.mayRequest && status !== 'sent' && !asking && (
        <button type="button" onClick={() => setAsking(true)} data-testid="ask-access">{t.askAccess}</button>
      )}
      {asking && (
        <form className="ask-access" onSubmit={(e) => { e.preventDefault(); void send(); }}>
          <label>{t.accessReason}
            <textarea name="reason" value={reason} minLength={10} maxLength={1024} required onChange={(e) => setReason(e.target.value)} data-testid="access-reason" />
          </label>
          <button type="submit" disabled={reason.trim().length < 10 || status === 'sending'} data-testid="send-access-request">{t.sendAccessRequest}</button>
          <button type="button" onClick={() => setAsking(false)}>{t.close}</button>
        </form>
      )}
      {status === 'sent' && <span data-testid="access-request-sent">{t.accessRequested}</span>}
      {status === 'failed' && <span className="error" role="alert">{t.accessRequestFailed}</span>}
    </div>
  );
}
