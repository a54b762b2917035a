import { useCallback, useEffect, useState } from 'react';
import { getJson, sendJson } from '../api.ts';
import type { Language } from '../i18n.ts';
import { errorText } from '../errors.ts';

interface EmergencyAccess {
  id: number; userLogin: string; site?: string; PatientID?: string; reason?: string; createdAt: string; expiresAt?: string; reviewedAt?: string; reviewedBy?: string;
}

const texts = {
  fr: {
    title: 'Accès d\'urgence à revoir', empty: 'Aucun accès d\'urgence.',
    when: 'Date', who: 'Professionnel', patient: 'Patient', reason: 'Motif', until: 'Jusqu\'au', review: 'Revue',
    markReviewed: 'Marquer comme revu', reviewedBy: (by: string, at: string) => `revu par ${by} le ${at}`, done: 'Accès marqué comme revu.',
  },
  en: {
    title: 'Emergency accesses to review', empty: 'No emergency access.',
    when: 'Date', who: 'Professional', patient: 'Patient', reason: 'Reason', until: 'Until', review: 'Review',
    markReviewed: 'Mark as reviewed', reviewedBy: (by: string, at: string) => `reviewed by ${by} on ${at}`, done: 'Access marked as reviewed.',
  },
};

/** The site administrators' review of break-the-glass accesses to their sites' patients (every site's for the territory). */
export function EmergencyReviewPage({ language }: { language: Language }) {
  const t = texts[language];
  const [accesses, setAccesses] = useState<EmergencyAccess[]>();
  const [error, setError] = useState<string>();
  const [notice, setNotice] = useState<string>();
  const date = (iso: string) => new Date(iso).toLocaleString(language === 'fr' ? 'fr-FR' : 'en-GB');
  const load = useCallback(() => { getJson<{ accesses: EmergencyAccess[] }>('/api/emergency-access').then((r) => setAccesses(r.accesses), (e: unknown) => setError(errorText(e, language))); }, []);
  useEffect(load, [load]);
  const reviewed = (id: number) => {
    setError(undefined);
    sendJson('POST', `/api/emergency-access/${id}/reviewed`).then(() => { setNotice(t.done); load(); }, (e: unknown) => setError(errorText(e, language)));
  };

  return (
    <section className="card wide">
      <h1>{t.title}</h1>
      {error && <p className="error" role="alert">{error}</p>}
      {notice && <p className="status" data-testid="emergency-review-notice">{notice}</p>}
      {accesses && accesses.length === 0 && <p className="status">{t.empty}</p>}
      {accesses && accesses.length > 0 && (
        <table data-testid="emergency-accesses">
          <thead><tr><th>{t.when}</th><th>{t.who}</th><th>{t.patient}</th><th>{t.reason}</th><th>{t.until}</th><th>{t.review}</th></tr></thead>
          <tbody>
            {accesses.map((a) => (
              <tr key={a.id} data-testid={`emergency-${a.id}`} data-reviewed={a.reviewedAt ? 'yes' : 'no'}>
                <td>{date(a.createdAt)}</td><td>{a.userLogin}</td><td>{a.site} {a.PatientID}</td><td>{a.reason}</td><td>{a.expiresAt ? date(a.expiresAt) : ''}</td>
                <td>{a.reviewedAt ? t.reviewedBy(a.reviewedBy ?? '', date(a.reviewedAt)) : <button type="button" className="button primary" data-testid="mark-reviewed" onClick={() => reviewed(a.id)}>{t.markReviewed}</button>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
