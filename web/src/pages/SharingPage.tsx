import { useCallback, useEffect, useState, type FormEvent } from 'react';
import { ApiError, getJson, sendJson, type TimelineStudy } from '../api.ts';
import { studyOfQido, type DicomJson } from '../dicom-json.ts';
import type { Language } from '../i18n.ts';
import { errorText } from '../errors.ts';

interface ShareLink { id: number; StudyInstanceUID?: string; patientId?: number; hasPin: boolean; createdAt: string; expiresAt: string; revokedAt?: string; lockedAt?: string }
interface Grant { id: number; expiresAt?: string; revokedAt?: string }
interface CreatedLink { link: ShareLink; url: string; qrCodeSvg: string }

const texts = {
  fr: {
    title: 'Partager des examens',
    target: 'Ce qui est partagé', study: 'l\'examen', patientExams: 'les examens du patient', none: 'Ouvrez un patient ou un examen pour le partager ; vos liens sont listés ci-dessous.', pick: 'Examen à partager', choose: 'choisir un examen',
    withPro: 'Partager avec un professionnel', login: 'Identifiant du professionnel', duration: 'Durée', noLimit: 'sans limite', share: 'Partager',
    sharedWith: (login: string, id: number) => `Partagé avec ${login} (partage n° ${id}).`, unknownUser: (login: string) => `Aucun professionnel actif n'a l'identifiant ${login}.`, revokeGrant: 'Retirer ce partage', grantRevoked: 'Partage retiré.',
    asLink: 'Partager par un lien (au lieu d\'un CD)', pin: 'Code PIN (4 à 8 chiffres, facultatif)', create: 'Créer le lien',
    linkReady: 'Lien créé : transmettez-le au destinataire, et le code PIN par un autre moyen.', copy: 'Copier le lien', copied: 'Lien copié.', qr: 'QR code du lien',
    myLinks: 'Mes liens de partage', noLinks: 'Aucun lien.', created: 'Créé le', expires: 'Expire le', withPin: 'PIN', yes: 'oui', no: 'non', state: 'État',
    states: { active: 'actif', revoked: 'révoqué', expired: 'expiré', locked: 'verrouillé (trop d\'essais de PIN)' } as Record<string, string>,
    revoke: 'Révoquer', revoked: 'Lien révoqué : il ne s\'ouvre plus.',
    hours: { 24: '1 jour', 72: '3 jours', 168: '7 jours', 720: '30 jours', 2160: '90 jours' } as Record<number, string>,
  },
  en: {
    title: 'Share exams',
    target: 'What is shared', study: 'the exam', patientExams: 'the patient\'s exams', none: 'Open a patient or an exam to share it; your links are listed below.', pick: 'Exam to share', choose: 'choose an exam',
    withPro: 'Share with a professional', login: 'The professional\'s login', duration: 'Duration', noLimit: 'no limit', share: 'Share',
    sharedWith: (login: string, id: number) => `Shared with ${login} (share #${id}).`, unknownUser: (login: string) => `No active professional has the login ${login}.`, revokeGrant: 'Withdraw this share', grantRevoked: 'Share withdrawn.',
    asLink: 'Share by a link (instead of a CD)', pin: 'PIN (4 to 8 digits, optional)', create: 'Create the link',
    linkReady: 'Link created: give it to the recipient, and the PIN by another channel.', copy: 'Copy the link', copied: 'Link copied.', qr: 'QR code of the link',
    myLinks: 'My share links', noLinks: 'No link.', created: 'Created', expires: 'Expires', withPin: 'PIN', yes: 'yes', no: 'no', state: 'State',
    states: { active: 'active', revoked: 'revoked', expired: 'expired', locked: 'locked (too many PIN attempts)' } as Record<string, string>,
    revoke: 'Revoke', revoked: 'Link revoked: it no longer opens.',
    hours: { 24: '1 day', 72: '3 days', 168: '7 days', 720: '30 days', 2160: '90 days' } as Record<number, string>,
  },
};

const durations = [24, 72, 168, 720, 2160];
const when = (iso: string, language: Language) => new Date(iso).toLocaleString(language === 'fr' ? 'fr-FR' : 'en-GB');
const stateOf = (l: ShareLink) => (l.revokedAt ? 'revoked' : l.lockedAt ? 'locked' : Date.parse(l.expiresAt) <= Date.now() ? 'expired' : 'active');

/**
 * Sharing a patient's exams, or one exam, with a professional (a grant) or by a link with an
 * expiry and an optional PIN (its QR code made by the server); the caller's links, revocable.
 */
export function SharingPage({ language, site, PatientID, StudyInstanceUID: named, pickFromMyExams, toUser: proposed = '' }: { language: Language; site: string; PatientID: string; StudyInstanceUID: string; pickFromMyExams?: boolean; toUser?: string }) {
  const t = texts[language];
  // A patient (instead of a CD) picks one of their own exams.
  const [mine, setMine] = useState<TimelineStudy[]>();
  const [picked, setPicked] = useState('');
  useEffect(() => {
    if (pickFromMyExams && !named) getJson<DicomJson[]>('/dicom-web/studies?includefield=StudyDescription', 'application/dicom+json').then((l) => setMine(l.map(studyOfQido)), () => setMine([]));
  }, [pickFromMyExams, named]);
  const StudyInstanceUID = named || picked;
  const target = StudyInstanceUID ? { StudyInstanceUID } : site && PatientID ? { patient: { site, PatientID } } : undefined;
  const [links, setLinks] = useState<ShareLink[]>();
  const [error, setError] = useState<string>();
  const [notice, setNotice] = useState<string>();
  // Prefilled when answering an access request (the requester's login).
  const [toUser, setToUser] = useState(proposed);
  const [grantHours, setGrantHours] = useState('');
  const [grant, setGrant] = useState<{ grant: Grant; login: string }>();
  const [linkHours, setLinkHours] = useState('72');
  const [pin, setPin] = useState('');
  const [created, setCreated] = useState<CreatedLink>();
  const load = useCallback(() => { getJson<{ links: ShareLink[] }>('/api/shares').then((r) => setLinks(r.links), (e: unknown) => setError(errorText(e, language))); }, []);
  useEffect(load, [load]);
  const failed = (e: unknown) => { setNotice(undefined); setError(errorText(e, language)); };

  const shareWithPro = (e: FormEvent) => {
    e.preventDefault();
    setError(undefined);
    sendJson<{ grant: Grant }>('POST', '/api/shares', { ...target, toUser: toUser.trim(), ...(grantHours ? { expiresInHours: Number(grantHours) } : {}) })
      .then((r) => { setGrant({ grant: r.grant, login: toUser.trim() }); setNotice(undefined); },
        (err: unknown) => {
          // The server names an unknown professional ("user … not found"): said with the login typed.
          if (err instanceof ApiError && err.status === 404 && err.message.startsWith('user ')) { setNotice(undefined); setError(t.unknownUser(toUser.trim())); } else failed(err);
        });
  };
  const createLink = (e: FormEvent) => {
    e.preventDefault();
    setError(undefined);
    sendJson<CreatedLink>('POST', '/api/shares', { ...target, link: { expiresInHours: Number(linkHours), ...(pin ? { pin } : {}) } })
      .then((r) => { setCreated(r); setPin(''); setNotice(undefined); load(); }, failed);
  };
  const revokeLink = (id: number) => {
    setError(undefined);
    sendJson('DELETE', `/api/shares/links/${id}`).then(() => { setNotice(t.revoked); if (created?.link.id === id) setCreated(undefined); load(); }, failed);
  };
  const revokeGrant = (id: number) => {
    sendJson('DELETE', `/api/shares/grants/${id}`).then(() => { setGrant(undefined); setNotice(t.grantRevoked); }, failed);
  };
  const copy = () => { if (created) void navigator.clipboard?.writeText(created.url).then(() => setNotice(t.copied), () => {}); };

  return (
    <section className="card">
      <h1>{t.title}</h1>
      {error && <p className="error" role="alert" data-testid="sharing-error">{error}</p>}
      {mine && (
        <label>{t.pick}
          <select name="study" value={picked} onChange={(e) => { setPicked(e.target.value); setCreated(undefined); setGrant(undefined); }}>
            <option value="">{t.choose}</option>
            {mine.map((s) => <option key={s.StudyInstanceUID} value={s.StudyInstanceUID}>{[s.StudyDate, s.ModalitiesInStudy.join('/'), s.StudyDescription].filter(Boolean).join(' · ')}</option>)}
          </select>
        </label>
      )}
      {notice && <p className="status" role="status" data-testid="sharing-notice">{notice}</p>}
      {target ? (
        <>
          <p data-testid="sharing-target">{t.target} : {StudyInstanceUID ? `${t.study} ${StudyInstanceUID}` : `${t.patientExams} ${PatientID} (${site})`}</p>
          <h2>{t.withPro}</h2>
          <form className="tele-form" onSubmit={shareWithPro} data-testid="share-with-pro">
            <label>{t.login}<input name="toUser" value={toUser} onChange={(e) => setToUser(e.target.value)} required maxLength={128} /></label>
            <label>{t.duration}
              <select name="grantHours" value={grantHours} onChange={(e) => setGrantHours(e.target.value)}>
                <option value="">{t.noLimit}</option>
                {durations.map((h) => <option key={h} value={h}>{t.hours[h]}</option>)}
              </select>
            </label>
            <button type="submit" className="button primary">{t.share}</button>
          </form>
          {grant && (
            <p data-testid="grant-created" data-grant={grant.grant.id}>{t.sharedWith(grant.login, grant.grant.id)}{' '}
              <button type="button" className="button" data-testid="revoke-grant" onClick={() => revokeGrant(grant.grant.id)}>{t.revokeGrant}</button>
            </p>
          )}
          <h2>{t.asLink}</h2>
          <form className="tele-form" onSubmit={createLink} data-testid="share-link-form">
            <label>{t.duration}
              <select name="linkHours" value={linkHours} onChange={(e) => setLinkHours(e.target.value)}>
                {durations.map((h) => <option key={h} value={h}>{t.hours[h]}</option>)}
              </select>
            </label>
            <label>{t.pin}<input name="pin" inputMode="numeric" pattern="[0-9]{4,8}" autoComplete="off" value={pin} onChange={(e) => setPin(e.target.value)} /></label>
            <button type="submit" className="button primary">{t.create}</button>
          </form>
          {created && (
            <div className="banner" data-testid="link-created" data-link={created.link.id}>
              <p>{t.linkReady}</p>
              <p><input readOnly size={60} value={created.url} data-testid="link-url" onFocus={(e) => e.target.select()} />{' '}
                <button type="button" className="button" onClick={copy}>{t.copy}</button></p>
              <p className="muted">{t.expires} {when(created.link.expiresAt, language)}{created.link.hasPin ? ` · ${t.withPin}` : ''}</p>
              <img data-testid="link-qr" alt={t.qr} width={180} height={180} src={`data:image/svg+xml;charset=utf-8,${encodeURIComponent(created.qrCodeSvg)}`} />
            </div>
          )}
        </>
      ) : !mine && <p className="status">{t.none}</p>}
      <h2>{t.myLinks}</h2>
      {links && links.length === 0 && <p className="status">{t.noLinks}</p>}
      {links && links.length > 0 && (
        <table data-testid="my-links">
          <thead><tr><th>#</th><th>{t.target}</th><th>{t.created}</th><th>{t.expires}</th><th>{t.withPin}</th><th>{t.state}</th><th /></tr></thead>
          <tbody>
            {links.map((l) => (
              <tr key={l.id} data-testid={`link-${l.id}`} data-state={stateOf(l)}>
                <td>{l.id}</td><td>{l.StudyInstanceUID ? `${t.study} ${l.StudyInstanceUID}` : t.patientExams}</td>
                <td>{when(l.createdAt, language)}</td><td>{when(l.expiresAt, language)}</td><td>{l.hasPin ? t.yes : t.no}</td><td>{t.states[stateOf(l)]}</td>
                <td>{stateOf(l) === 'active' && <button type="button" className="button" data-testid="revoke-link" onClick={() => revokeLink(l.id)}>{t.revoke}</button>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
