import { useState, type FormEvent } from 'react';
import { sendJson } from '../api.ts';
import type { Language } from '../i18n.ts';
import { errorText } from '../errors.ts';
import { navigate } from '../router.ts';

const texts = {
  fr: {
    title: 'Accès d\'urgence (bris de glace)',
    warning: 'Réservé à l\'urgence vitale ou à la continuité des soins : l\'accès est tracé avec votre motif, limité dans le temps, et revu ensuite par les administrateurs du site du patient.',
    site: 'Site du dossier', PatientID: 'Identifiant du patient (IPP)', reason: 'Motif (10 caractères au moins)', declare: 'Déclarer l\'accès d\'urgence',
    granted: (until: string) => `Accès d'urgence accordé jusqu'au ${until}.`, open: 'Ouvrir le dossier',
  },
  en: {
    title: 'Emergency access (break the glass)',
    warning: 'For a life-threatening emergency or continuity of care only: the access is recorded with your reason, limited in time, and reviewed afterwards by the patient\'s site administrators.',
    site: 'Record\'s site', PatientID: 'Patient ID', reason: 'Reason (10 characters at least)', declare: 'Declare the emergency access',
    granted: (until: string) => `Emergency access granted until ${until}.`, open: 'Open the record',
  },
};

/** Break-the-glass: a professional declares, with a typed reason, an emergency access to a patient's record. */
export function EmergencyAccessPage({ language, site: initialSite, PatientID: initialPatient }: { language: Language; site: string; PatientID: string }) {
  const t = texts[language];
  const [site, setSite] = useState(initialSite);
  const [PatientID, setPatientID] = useState(initialPatient);
  const [reason, setReason] = useState('');
  const [error, setError] = useState<string>();
  const [until, setUntil] = useState<string>();

  const submit = (e: FormEvent) => {
    e.preventDefault();
    setError(undefined);
    sendJson<{ grant: { expiresAt: string } }>('POST', '/api/emergency-access', { patient: { site: site.trim(), PatientID: PatientID.trim() }, reason: reason.trim() })
      .then((r) => setUntil(new Date(r.grant.expiresAt).toLocaleString(language === 'fr' ? 'fr-FR' : 'en-GB')), (err: unknown) => setError(errorText(err, language)));
  };

  return (
    <section className="card narrow">
      <h1>{t.title}</h1>
      <p className="banner">{t.warning}</p>
      {error && <p className="error" role="alert" data-testid="emergency-error">{error}</p>}
      {until ? (
        <p data-testid="emergency-granted">{t.granted(until)}{' '}
          <button type="button" className="button primary" data-testid="emergency-open" onClick={() => navigate(`/patients?${new URLSearchParams({ site: site.trim(), PatientID: PatientID.trim() })}`)}>{t.open}</button>
        </p>
      ) : (
        <form className="tele-form" onSubmit={submit} data-testid="emergency-form">
          <label>{t.site}<input name="site" value={site} onChange={(e) => setSite(e.target.value)} required maxLength={64} /></label>
          <label>{t.PatientID}<input name="PatientID" value={PatientID} onChange={(e) => setPatientID(e.target.value)} required maxLength={64} /></label>
          <label>{t.reason}<textarea name="reason" value={reason} onChange={(e) => setReason(e.target.value)} required minLength={10} maxLength={1024} rows={3} /></label>
          <button type="submit" className="button primary">{t.declare}</button>
        </form>
      )}
    </section>
  );
}
