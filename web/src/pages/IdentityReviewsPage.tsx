import { useCallback, useEffect, useState } from 'react';
import { getJson, sendJson } from '../api.ts';
import type { Language } from '../i18n.ts';
import { navigate } from '../router.ts';

interface ReviewRecord { site: string; PatientID: string; IssuerOfPatientID: string }
interface Review { id: number; kind: string; details: string; record: ReviewRecord; otherRecord?: ReviewRecord }
interface InsiCheck { outcome: 'found' | 'not-found' | 'several' | 'ins-mismatch'; status: string; mode: 'search' | 'verify'; reviews: string[] }

const proofs = ['passport', 'identity-card', 'residence-permit', 'family-record-book', 'birth-certificate'] as const;

const texts = {
  fr: {
    title: 'Identitovigilance',
    empty: 'Aucune revue d\'identité ouverte.',
    record: 'Dossier', other: 'Autre dossier',
    kinds: {
      'link-candidate': 'Rapprochement proposé', 'traits-conflict': 'Traits en conflit sous une même INS', 'ins-conflict': 'Conflit d\'INS',
      'ins-invalid': 'INS absente ou invalide', 'order-mismatch': 'Images d\'un autre patient que leur demande', 'insi-several': 'INSi : plusieurs identités',
    } as Record<string, string>,
    proof: 'Pièce d\'identité vue', noProof: 'aucune',
    proofs: { passport: 'Passeport', 'identity-card': 'Carte nationale d\'identité', 'residence-permit': 'Titre de séjour', 'family-record-book': 'Livret de famille', 'birth-certificate': 'Acte de naissance' } as Record<string, string>,
    callInsi: 'Interroger INSi',
    outcomes: { found: 'INSi : identité trouvée', 'not-found': 'INSi : aucune identité trouvée', several: 'INSi : plusieurs identités, une revue est ouverte', 'ins-mismatch': 'INSi : une autre INS que celle du dossier, une revue est ouverte' } as Record<string, string>,
    statuses: { provisional: 'identité provisoire', recovered: 'identité récupérée', validated: 'identité validée', qualified: 'identité qualifiée' } as Record<string, string>,
    accept: 'Accepter', reject: 'Rejeter', decided: 'Décision enregistrée.',
  },
  en: {
    title: 'Identity monitoring',
    empty: 'No open identity review.',
    record: 'Record', other: 'Other record',
    kinds: {
      'link-candidate': 'Proposed link', 'traits-conflict': 'Conflicting traits under one INS', 'ins-conflict': 'INS conflict',
      'ins-invalid': 'INS missing or invalid', 'order-mismatch': 'Images of another patient than their order', 'insi-several': 'INSi: several identities',
    } as Record<string, string>,
    proof: 'Identity document seen', noProof: 'none',
    proofs: { passport: 'Passport', 'identity-card': 'National identity card', 'residence-permit': 'Residence permit', 'family-record-book': 'Family record book', 'birth-certificate': 'Birth certificate' } as Record<string, string>,
    callInsi: 'Ask INSi',
    outcomes: { found: 'INSi: identity found', 'not-found': 'INSi: no identity found', several: 'INSi: several identities, a review is opened', 'ins-mismatch': 'INSi: another INS than the record\'s, a review is opened' } as Record<string, string>,
    statuses: { provisional: 'provisional identity', recovered: 'recovered identity', validated: 'validated identity', qualified: 'qualified identity' } as Record<string, string>,
    accept: 'Accept', reject: 'Reject', decided: 'Decision recorded.',
  },
};

const recordText = (r: ReviewRecord) => `${r.site} · ${r.PatientID}`;

/** A record of the review, opening its timeline (names, birth dates, exams) to compare before deciding. */
function RecordLink({ r }: { r: ReviewRecord }) {
  const to = `/patients?${new URLSearchParams({ site: r.site, PatientID: r.PatientID })}`;
  return <a href={`/app${to}`} data-testid="review-record" onClick={(e) => { e.preventDefault(); navigate(to); }}>{recordText(r)}</a>;
}

/** The identity reviews of the caller's sites: conflicts and candidates, checked against INSi, decided. Every step is audited by the server. */
export function IdentityReviewsPage({ language }: { language: Language }) {
  const t = texts[language];
  const [reviews, setReviews] = useState<Review[]>();
  const [error, setError] = useState<string>();
  const [proof, setProof] = useState<Record<number, string>>({});
  const [checks, setChecks] = useState<Record<number, InsiCheck>>({});
  const [notice, setNotice] = useState<string>();
  const load = useCallback(() => { getJson<{ reviews: Review[] }>('/api/identity-reviews').then((r) => setReviews(r.reviews), (e: Error) => setError(e.message)); }, []);
  useEffect(load, [load]);

  const askInsi = (id: number) => {
    setError(undefined);
    const chosen = proof[id];
    sendJson<InsiCheck>('POST', `/api/identity-reviews/${id}/insi`, chosen ? { proofOfIdentity: chosen } : {})
      .then((c) => { setChecks({ ...checks, [id]: c }); load(); }, (e: Error) => setError(e.message));
  };
  const decide = (id: number, accept: boolean) => {
    setError(undefined);
    sendJson('POST', `/api/identity-reviews/${id}`, { accept }).then(() => { setNotice(t.decided); load(); }, (e: Error) => setError(e.message));
  };

  return (
    <section className="card">
      <h1>{t.title}</h1>
      {error && <p className="error" role="alert" data-testid="review-error">{error}</p>}
      {notice && <p className="status" data-testid="review-notice">{notice}</p>}
      {reviews && reviews.length === 0 && <p className="status">{t.empty}</p>}
      {reviews?.map((r) => (
        <article key={r.id} className="identity-review" data-testid={`review-${r.id}`} data-kind={r.kind}>
          <h2>#{r.id} · {t.kinds[r.kind] ?? r.kind}</h2>
          <p>{r.details}</p>
          <p>{t.record} : <RecordLink r={r.record} />{r.otherRecord && <> — {t.other} : <RecordLink r={r.otherRecord} /></>}</p>
          <div className="tele-form">
            <label>{t.proof}
              <select name="proof" value={proof[r.id] ?? ''} onChange={(e) => setProof({ ...proof, [r.id]: e.target.value })}>
                <option value="">{t.noProof}</option>
                {proofs.map((p) => <option key={p} value={p}>{t.proofs[p]}</option>)}
              </select>
            </label>
            <button type="button" className="button" data-testid="insi" onClick={() => askInsi(r.id)}>{t.callInsi}</button>
            {checks[r.id] && <p data-testid="insi-result" data-outcome={checks[r.id]!.outcome} data-status={checks[r.id]!.status}>{t.outcomes[checks[r.id]!.outcome]} — {t.statuses[checks[r.id]!.status] ?? checks[r.id]!.status}</p>}
            <button type="button" className="button primary" data-testid="accept" onClick={() => decide(r.id, true)}>{t.accept}</button>
            <button type="button" className="button" data-testid="reject" onClick={() => decide(r.id, false)}>{t.reject}</button>
          </div>
        </article>
      ))}
    </section>
  );
}
