import { lazy, StrictMode, Suspense, useCallback, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { logout, sessionEndedEvent, whoAmI, type Me } from './api.ts';
import { initialLanguage, texts, TextsContext, type Language } from './i18n.ts';
import { navigate, useLocation } from './router.ts';
import { LoginPage } from './pages/LoginPage.tsx';
import { SearchPage } from './pages/SearchPage.tsx';
import { TimelinePage } from './pages/TimelinePage.tsx';
import { MyStudiesPage } from './pages/MyStudiesPage.tsx';
import { SharePage } from './pages/SharePage.tsx';
import { IdentityReviewsPage } from './pages/IdentityReviewsPage.tsx';
import { TelePages } from './tele/TelePages.tsx';
import { BillingPage } from './pages/BillingPage.tsx';
import { doesResearch, ResearchPage } from './pages/ResearchPage.tsx';
import { portalScreen, PortalScreenLinks } from './pages/PortalScreens.tsx';
import './styles.css';

// Cornerstone is most of the bundle: loaded when a study is opened, not for the login page.
const loadViewer = () => import('./viewer/ViewerPage.tsx');
// Opened straight on the viewer: its chunk loads while the session is checked, not after.
if (window.location.pathname.startsWith('/app/viewer')) void loadViewer();
const ViewerPage = lazy(() => loadViewer().then((m) => ({ default: m.ViewerPage })));

/** Patients and share-link holders see their own exams, never a search of others. */
function seesOwnExamsOnly(me: Me): boolean {
  return me.kind === 'share-link' || (me.roles.length > 0 && me.roles.every((r) => r === 'patient'));
}

/** Teleradiology is for who requests, protocols, reads or runs it (src/workflow/tele-requests.ts): not research roles. */
function usesTeleradiology(me: Me): boolean {
  return me.territory === true || me.roles.some((r) => ['radiologist', 'technologist', 'referring-physician', 'site-admin', 'territory-admin'].includes(r));
}

/** Site and territory administrators hold the identitovigilance's reviews. */
function reviewsIdentities(me: Me): boolean {
  return me.roles.includes('site-admin') || me.roles.includes('territory-admin');
}

function App() {
  const { path, query } = useLocation();
  const [language, setLanguage] = useState<Language>(initialLanguage);
  const [me, setMe] = useState<Me | undefined | 'loading'>('loading');
  const t = texts[language];

  const refresh = useCallback(() => {
    whoAmI().then(setMe, () => setMe(undefined));
  }, []);
  useEffect(refresh, [refresh]);
  useEffect(() => {
    const ended = () => setMe(undefined);
    window.addEventListener(sessionEndedEvent, ended);
    return () => window.removeEventListener(sessionEndedEvent, ended);
  }, []);
  useEffect(() => {
    document.documentElement.lang = language;
    window.localStorage.setItem('atrium.language', language);
  }, [language]);

  let page: React.ReactNode;
  let screen: React.ReactNode | undefined;
  const study = path === '/viewer' ? query.get('StudyInstanceUID') : null;
  if (path === '/share') page = <SharePage onOpened={refresh} />;
  else if (me === 'loading') page = <p className="status">{t.loading}</p>;
  else if (me === undefined) page = <LoginPage onLoggedIn={(m) => setMe(m)} />;
  else if (study) page = <ViewerPage StudyInstanceUID={study} language={language} />;
  else if ((screen = portalScreen(me, path, query, language))) page = screen;
  else if (seesOwnExamsOnly(me)) page = <MyStudiesPage language={language} />;
  else if ((path === '/tele' || path.startsWith('/tele/')) && usesTeleradiology(me)) page = <TelePages me={me} path={path} query={query} language={language} />;
  else if (path === '/identities' && reviewsIdentities(me)) page = <IdentityReviewsPage language={language} />;
  else if (path === '/billing' && me.roles.includes('territory-admin')) page = <BillingPage language={language} />;
  else if (path === '/research' && doesResearch(me)) page = <ResearchPage me={me} language={language} />;
  else if (path === '/patients') page = <TimelinePage language={language} site={query.get('site') ?? ''} PatientID={query.get('PatientID') ?? ''} />;
  else page = <SearchPage language={language} />;

  return (
    <TextsContext.Provider value={t}>
      <header className="topbar">
        <a className="brand" href="/app/" onClick={(e) => { e.preventDefault(); navigate('/'); }}>{t.appName}</a>
        {me !== 'loading' && me !== undefined && !seesOwnExamsOnly(me) && usesTeleradiology(me) && (
          <a className="link" href="/app/tele" data-testid="nav-tele" onClick={(e) => { e.preventDefault(); navigate('/tele'); }}>{language === 'fr' ? 'Téléradiologie' : 'Teleradiology'}</a>
        )}
        {me !== 'loading' && me !== undefined && reviewsIdentities(me) && (
          <a className="link" href="/app/identities" data-testid="nav-identities" onClick={(e) => { e.preventDefault(); navigate('/identities'); }}>{language === 'fr' ? 'Identitovigilance' : 'Identity monitoring'}</a>
        )}
        {me !== 'loading' && me !== undefined && <PortalScreenLinks me={me} language={language} />}
        {me !== 'loading' && me !== undefined && me.roles.includes('territory-admin') && (
          <a className="link" href="/app/billing" data-testid="nav-billing" onClick={(e) => { e.preventDefault(); navigate('/billing'); }}>{language === 'fr' ? 'Facturation' : 'Billing'}</a>
        )}
        {me !== 'loading' && me !== undefined && doesResearch(me) && (
          <a className="link" href="/app/research" data-testid="nav-research" onClick={(e) => { e.preventDefault(); navigate('/research'); }}>{language === 'fr' ? 'Recherche' : 'Research'}</a>
        )}
        <span className="spacer" />
        {me !== 'loading' && me !== undefined && <span className="who" data-testid="who">{me.name}</span>}
        <button type="button" className="link" onClick={() => setLanguage(language === 'fr' ? 'en' : 'fr')}>{t.language}</button>
        {me !== 'loading' && me !== undefined && (
          <button type="button" className="link" onClick={() => {
            void logout().then(({ endSessionUrl }) => {
              // Pro Santé Connect's session ends too, then it sends the browser back to the portal.
              if (endSessionUrl) window.location.assign(endSessionUrl);
              else { setMe(undefined); navigate('/'); }
            });
          }}>{t.logout}</button>
        )}
      </header>
      <main><Suspense fallback={<p className="status">{t.loading}</p>}>{page}</Suspense></main>
    </TextsContext.Provider>
  );
}

createRoot(document.getElementById('root')!).render(<StrictMode><App /></StrictMode>);
