import type { ReactNode } from 'react';
import type { Me } from '../api.ts';
import type { Language } from '../i18n.ts';
import { navigate } from '../router.ts';
import { SharingPage } from './SharingPage.tsx';
import { EmergencyAccessPage } from './EmergencyAccessPage.tsx';
import { EmergencyReviewPage } from './EmergencyReviewPage.tsx';
import { WhoLookedPage } from './WhoLookedPage.tsx';
import { UsersAdminPage } from './UsersAdminPage.tsx';
import { PeersAdminPage } from './PeersAdminPage.tsx';
import { ReportTemplatesPage } from './ReportTemplatesPage.tsx';
import { AccessRequestsPage } from './AccessRequestsPage.tsx';

/** Who may use which screen: the server decides each call; these only hide what would be refused. */
export const isAdministrator = (me: Me) => me.kind === 'user' && (me.roles.includes('site-admin') || me.roles.includes('territory-admin'));
export const isPatient = (me: Me) => me.kind === 'user' && me.roles.length > 0 && me.roles.every((r) => r === 'patient');
export const mayShare = (me: Me) => me.kind === 'user' && me.roles.some((r) => ['territory-admin', 'site-admin', 'radiologist', 'referring-physician', 'patient'].includes(r));
export const mayBreakTheGlass = (me: Me) => me.kind === 'user' && me.roles.some((r) => r === 'radiologist' || r === 'referring-physician');

/**
 * The screens of sharing, break-the-glass, "who looked at my images" and administration:
 * the page for this path, or undefined when it is none of them (or not for this caller).
 */
export function portalScreen(me: Me, path: string, query: URLSearchParams, language: Language): ReactNode | undefined {
  const patient = { site: query.get('site') ?? '', PatientID: query.get('PatientID') ?? '' };
  if (path === '/sharing' && mayShare(me)) return <SharingPage language={language} {...patient} StudyInstanceUID={query.get('StudyInstanceUID') ?? ''} pickFromMyExams={isPatient(me)} toUser={query.get('toUser') ?? ''} />;
  if (path === '/emergency' && mayBreakTheGlass(me)) return <EmergencyAccessPage language={language} {...patient} />;
  if (path === '/who-looked' && isPatient(me)) return <WhoLookedPage language={language} />;
  if (!isAdministrator(me)) return undefined;
  if (path === '/admin/emergency-access') return <EmergencyReviewPage language={language} />;
  if (path === '/admin/users') return <UsersAdminPage language={language} me={me} />;
  if (path === '/admin/peers') return <PeersAdminPage language={language} me={me} />;
  if (path === '/admin/templates') return <ReportTemplatesPage language={language} />;
  if (path === '/admin/access-requests') return <AccessRequestsPage language={language} />;
  return undefined;
}

const navTexts = {
  fr: { whoLooked: 'Qui a consulté mes images', shares: 'Mes partages', breakGlass: 'Accès d\'urgence', emergency: 'Accès d\'urgence à revoir', users: 'Utilisateurs', peers: 'Équipements DICOM', templates: 'Modèles de compte rendu', accessRequests: 'Demandes d\'accès' },
  en: { whoLooked: 'Who looked at my images', shares: 'My shares', breakGlass: 'Emergency access', emergency: 'Emergency accesses to review', users: 'Users', peers: 'DICOM peers', templates: 'Report templates', accessRequests: 'Access requests' },
};

function NavLink({ to, id, children }: { to: string; id: string; children: ReactNode }) {
  return <a className="link" href={`/app${to}`} data-testid={`nav-${id}`} onClick={(e) => { e.preventDefault(); navigate(to); }}>{children}</a>;
}

/** The top bar's links to these screens, for those who may use them. */
export function PortalScreenLinks({ me, language }: { me: Me; language: Language }) {
  const t = navTexts[language];
  return (
    <>
      {isPatient(me) && <NavLink to="/who-looked" id="who-looked">{t.whoLooked}</NavLink>}
      {mayShare(me) && <NavLink to="/sharing" id="sharing">{t.shares}</NavLink>}
      {mayBreakTheGlass(me) && <NavLink to="/emergency" id="emergency">{t.breakGlass}</NavLink>}
      {isAdministrator(me) && (
        <>
          <NavLink to="/admin/emergency-access" id="emergency-reviews">{t.emergency}</NavLink>
          <NavLink to="/admin/users" id="users">{t.users}</NavLink>
          <NavLink to="/admin/peers" id="peers">{t.peers}</NavLink>
          <NavLink to="/admin/templates" id="templates">{t.templates}</NavLink>
          <NavLink to="/admin/access-requests" id="access-requests">{t.accessRequests}</NavLink>
        </>
      )}
    </>
  );
}

/** The timeline's entry points: share this patient's exams, or (when the record is not open to the caller) break the glass. */
export function SharingEntry({ language, site, PatientID, emergency }: { language: Language; site: string; PatientID: string; emergency?: boolean }) {
  const t = language === 'fr'
    ? { share: 'Partager', emergency: 'Accès d\'urgence (bris de glace)' }
    : { share: 'Share', emergency: 'Emergency access (break the glass)' };
  const q = new URLSearchParams({ site, PatientID }).toString();
  return (
    <div className="exam-actions" data-testid="sharing-entry">
      {!emergency && <button type="button" className="button" data-testid="open-sharing" onClick={() => navigate(`/sharing?${q}`)}>{t.share}</button>}
      {emergency && <button type="button" className="button" data-testid="open-emergency" onClick={() => navigate(`/emergency?${q}`)}>{t.emergency}</button>}
    </div>
  );
}
