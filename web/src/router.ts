import { useEffect, useState } from 'react';

/** Client-side routes under /app/ (the server answers index.html for each of them). */
export const appBase = '/app';

/** The viewer's address: a query, since a UID's dots would read as a file name's extension to the server. */
export function viewerPath(StudyInstanceUID: string): string {
  return `/viewer?${new URLSearchParams({ StudyInstanceUID })}`;
}

export function navigate(path: string): void {
  window.history.pushState(null, '', `${appBase}${path}`);
  window.dispatchEvent(new PopStateEvent('popstate'));
}

/** The current path inside the portal ('/', '/patients', '/viewer'…) and its query. */
export function useLocation(): { path: string; query: URLSearchParams } {
  const [location, setLocation] = useState(() => currentPath());
  useEffect(() => {
    const onChange = () => setLocation(currentPath());
    window.addEventListener('popstate', onChange);
    return () => window.removeEventListener('popstate', onChange);
  }, []);
  return { path: location.slice(0, (location + '?').indexOf('?')), query: new URLSearchParams(location.slice((location + '?').indexOf('?'))) };
}

function currentPath(): string {
  const p = window.location.pathname;
  const inside = p.startsWith(appBase) ? p.slice(appBase.length) : p;
  return (inside === '' ? '/' : inside) + window.location.search;
}
