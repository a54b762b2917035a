import type { Me } from '../api.ts';
import type { Language } from '../i18n.ts';
import { navigate } from '../router.ts';
import { teleTexts } from './texts.ts';
import { WorklistPage } from './WorklistPage.tsx';
import { RequestFormPage } from './RequestFormPage.tsx';
import { RequestPage } from './RequestPage.tsx';
import { SecondReadingsPage } from './SecondReadingsPage.tsx';
import { ActivityPage } from './ActivityPage.tsx';

export const isRadiologist = (me: Me) => me.roles.includes('radiologist');
export const isAdministrator = (me: Me) => me.territory === true || me.roles.includes('territory-admin') || me.roles.includes('site-admin');

/** /app/tele…: the teleradiology screens, each for whom it concerns. */
export function TelePages({ me, path, query, language }: { me: Me; path: string; query: URLSearchParams; language: Language }) {
  const tt = teleTexts[language];
  const link = (to: string, label: string, testId: string) => (
    <a href={`/app${to}`} className={path === to ? 'on' : ''} data-testid={testId} onClick={(e) => { e.preventDefault(); navigate(to); }}>{label}</a>
  );
  let page: React.ReactNode;
  if (path === '/tele/new') page = <RequestFormPage me={me} language={language} />;
  else if (path === '/tele/request' && /^\d+$/.test(query.get('id') ?? '')) page = <RequestPage me={me} id={Number(query.get('id'))} language={language} />;
  else if (path === '/tele/second-readings') page = <SecondReadingsPage language={language} />;
  else if (path === '/tele/activity') page = <ActivityPage language={language} />;
  else page = <WorklistPage me={me} language={language} />;
  return (
    <>
      <nav className="subnav" aria-label={tt.tele}>
        {link('/tele', isRadiologist(me) || isAdministrator(me) ? tt.worklist : tt.requests, 'tele-worklist')}
        {!isRadiologist(me) && link('/tele/new', tt.newRequest, 'tele-new')}
        {isRadiologist(me) && link('/tele/second-readings', tt.secondReadings, 'tele-second-readings')}
        {isAdministrator(me) && link('/tele/activity', tt.activity, 'tele-activity')}
      </nav>
      {page}
    </>
  );
}
