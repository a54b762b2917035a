import { useEffect, useState } from 'react';
import { getJson } from '../api.ts';
import type { Language } from '../i18n.ts';
import { errorText } from '../errors.ts';
import { navigate } from '../router.ts';

/** A request for access as GET /api/access-requests gives it: the records are the reader's own sites'. */
interface AccessRequest {
  id: number; requestedBy: string; requesterName: string; reason: string; exams: number; createdAt: string;
  records: Array<{ site: string; PatientID: string }>;
}

const texts = {
  fr: {
    title: 'Demandes d\'accès',
    intro: 'Des professionnels d\'autres sites demandent à voir les examens de vos sites d\'un patient qu\'ils suivent. Pour accepter, partagez le dossier avec eux ; sinon, rien n\'est ouvert.',
    empty: 'Aucune demande d\'accès.',
    when: 'Date', who: 'Demandeur', reason: 'Motif', exams: 'Examens', record: 'Dossier patient', answer: 'Réponse',
    share: (name: string) => `Partager avec ${name}`, open: 'Ouvrir le dossier', noRecord: 'aucun dossier de vos sites',
  },
  en: {
    title: 'Access requests',
    intro: 'Professionals of other sites ask to see the exams your sites hold of a patient they follow. To accept, share the record with them; otherwise nothing is opened.',
    empty: 'No access request.',
    when: 'Date', who: 'Requester', reason: 'Reason', exams: 'Exams', record: 'Patient record', answer: 'Answer',
    share: (name: string) => `Share with ${name}`, open: 'Open the record', noRecord: 'no record of your sites',
  },
};

/**
 * The requests for access to exams elsewhere (asked from the viewer), for the administrators of
 * the sites that hold them: who asked, why, when, which of their records; answered by sharing
 * the record with the requester (the sharing screen, prefilled).
 */
export function AccessRequestsPage({ language }: { language: Language }) {
  const t = texts[language];
  const [requests, setRequests] = useState<AccessRequest[]>();
  const [error, setError] = useState<string>();
  const date = (iso: string) => new Date(iso).toLocaleString(language === 'fr' ? 'fr-FR' : 'en-GB');
  useEffect(() => {
    getJson<{ requests: AccessRequest[] }>('/api/access-requests').then((r) => { setRequests(r.requests); setError(undefined); }, (e: unknown) => setError(errorText(e, language)));
  }, [language]);

  return (
    <section className="card wide">
      <h1>{t.title}</h1>
      <p className="muted">{t.intro}</p>
      {error && <p className="error" role="alert" data-testid="access-requests-error">{error}</p>}
      {requests && requests.length === 0 && <p className="status" data-testid="access-requests-empty">{t.empty}</p>}
      {requests && requests.length > 0 && (
        <table data-testid="access-requests">
          <thead><tr><th>{t.when}</th><th>{t.who}</th><th>{t.reason}</th><th>{t.exams}</th><th>{t.record}</th><th>{t.answer}</th></tr></thead>
          <tbody>
            {requests.map((r) => (
              <tr key={r.id} data-testid={`access-request-${r.id}`}>
                <td data-testid="request-date">{date(r.createdAt)}</td>
                <td data-testid="requester">{r.requesterName} ({r.requestedBy})</td>
                <td data-testid="request-reason">{r.reason}</td>
                <td>{r.exams}</td>
                <td data-testid="request-records">
                  {r.records.length === 0 && <span className="muted">{t.noRecord}</span>}
                  {r.records.map((rec) => {
                    const q = new URLSearchParams({ site: rec.site, PatientID: rec.PatientID }).toString();
                    return (
                      <div key={`${rec.site}/${rec.PatientID}`} data-testid="request-record">
                        <a className="link" href={`/app/patients?${q}`} data-testid="open-record" onClick={(e) => { e.preventDefault(); navigate(`/patients?${q}`); }}>{rec.PatientID} ({rec.site})</a>
                      </div>
                    );
                  })}
                </td>
                <td>
                  {r.records.map((rec) => {
                    const q = new URLSearchParams({ site: rec.site, PatientID: rec.PatientID, toUser: r.requestedBy }).toString();
                    return (
                      <a key={`${rec.site}/${rec.PatientID}`} className="button" href={`/app/sharing?${q}`} data-testid="share-with-requester"
                        onClick={(e) => { e.preventDefault(); navigate(`/sharing?${q}`); }}>{t.share(r.requesterName)}</a>
                    );
                  })}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
