import { useEffect, useState } from 'react';
import { getJson } from '../api.ts';
import type { Language } from '../i18n.ts';
import { errorText } from '../errors.ts';

interface TrailEvent {
  id: number; at: string; action: string; outcome: string; actor: string; actorKind: string; actorName?: string; site?: string; siteName?: string; reason?: string; StudyInstanceUID?: string;
}

const texts = {
  fr: {
    title: 'Qui a consulté mes images ?',
    intro: 'Chaque consultation, téléchargement, partage ou accès d\'urgence à vos dossiers est enregistré. Voici qui, quand, et d\'où.',
    empty: 'Aucun accès enregistré.', when: 'Date', who: 'Qui', where: 'Établissement', what: 'Quoi', why: 'Motif',
    kinds: { 'api-client': 'un logiciel de l\'établissement', 'dicom-peer': 'un équipement d\'imagerie', 'hl7-sender': 'le système d\'information', 'share-link': 'un lien de partage', system: 'Atrium', user: 'un utilisateur' } as Record<string, string>,
    you: 'vous', patient: 'un autre compte patient',
    actions: {
      query: 'recherche', view: 'consultation', download: 'téléchargement', store: 'réception d\'images', export: 'envoi', share: 'partage', 'share-open': 'ouverture d\'un lien de partage',
      'share-revoke': 'retrait d\'un partage', 'emergency-access': 'accès d\'urgence', correction: 'correction', 'report-sign': 'signature d\'un compte rendu', 'report-draft': 'rédaction d\'un compte rendu',
    } as Record<string, string>,
    refused: 'refusé',
  },
  en: {
    title: 'Who looked at my images?',
    intro: 'Every view, download, share or emergency access to your records is recorded. Here is who, when, and from where.',
    empty: 'No access recorded.', when: 'Date', who: 'Who', where: 'Facility', what: 'What', why: 'Reason',
    kinds: { 'api-client': 'a facility\'s software', 'dicom-peer': 'an imaging device', 'hl7-sender': 'the information system', 'share-link': 'a share link', system: 'Atrium', user: 'a user' } as Record<string, string>,
    you: 'you', patient: 'another patient account',
    actions: {
      query: 'search', view: 'view', download: 'download', store: 'images received', export: 'sent', share: 'share', 'share-open': 'share link opened',
      'share-revoke': 'share withdrawn', 'emergency-access': 'emergency access', correction: 'correction', 'report-sign': 'report signed', 'report-draft': 'report written',
    } as Record<string, string>,
    refused: 'refused',
  },
};

/** A patient's "who looked at my images?": the audit trail of their own records, professionals by name and site. */
export function WhoLookedPage({ language }: { language: Language }) {
  const t = texts[language];
  const [events, setEvents] = useState<TrailEvent[]>();
  const [error, setError] = useState<string>();
  useEffect(() => { getJson<{ events: TrailEvent[] }>('/api/audit/patient').then((r) => setEvents(r.events), (e: unknown) => setError(errorText(e, language))); }, []);
  const whoOf = (e: TrailEvent) => e.actorName ?? (e.actor === 'patient' ? t.patient : e.actorKind === 'user' ? t.you : t.kinds[e.actorKind] ?? e.actorKind);

  return (
    <section className="card wide">
      <h1>{t.title}</h1>
      <p>{t.intro}</p>
      {error && <p className="error" role="alert">{error}</p>}
      {events && events.length === 0 && <p className="status">{t.empty}</p>}
      {events && events.length > 0 && (
        <table data-testid="who-looked">
          <thead><tr><th>{t.when}</th><th>{t.who}</th><th>{t.where}</th><th>{t.what}</th><th>{t.why}</th></tr></thead>
          <tbody>
            {events.map((e) => (
              <tr key={e.id} data-testid="access" data-action={e.action} data-actor={e.actor}>
                <td>{new Date(e.at).toLocaleString(language === 'fr' ? 'fr-FR' : 'en-GB')}</td>
                <td>{whoOf(e)}</td><td>{e.siteName ?? e.site ?? ''}</td>
                <td>{t.actions[e.action] ?? e.action}{e.outcome === 'refused' ? ` (${t.refused})` : ''}</td><td>{e.reason ?? ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
