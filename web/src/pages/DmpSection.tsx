import { useCallback, useEffect, useState } from 'react';
import { ApiError, csrfHeaders } from '../api.ts';
import { errorText } from '../errors.ts';
import { formatDicomDate, type Language } from '../i18n.ts';
import { navigate, viewerPath } from '../router.ts';

/** The DMP section's words (one feature, one file), French first. */
const texts = {
  fr: {
    title: 'DMP : examens d\'imagerie d\'autres territoires',
    search: 'Rechercher dans le DMP',
    searching: 'Recherche dans le DMP…',
    modality: 'Modalité',
    region: 'Région (HEAD, CHEST…)',
    from: 'Du',
    to: 'Au',
    accession: 'N° d\'examen',
    none: 'Aucun document d\'imagerie dans le DMP.',
    noDmp: 'Ce patient n\'a pas de DMP.',
    closed: 'DMP fermé',
    manifest: 'Images (manifeste KOS)',
    report: 'Compte rendu (CR-IMG)',
    open: 'Voir les images',
    opening: 'Ouverture…',
    importing: 'Import…',
    import: 'Importer dans l\'archive',
    imported: (n: number) => `${n} image(s) importée(s) dans l'archive du site.`,
    showReport: 'Lire le compte rendu',
    retry: 'Réessayer',
    relogin: 'Se reconnecter avec Pro Santé Connect',
    sourceDown: 'La DRIMbox source ne répond pas pour l\'instant.',
    failed: 'Échec',
  },
  en: {
    title: 'DMP: imaging exams from other territories',
    search: 'Search the DMP',
    searching: 'Searching the DMP…',
    modality: 'Modality',
    region: 'Region (HEAD, CHEST…)',
    from: 'From',
    to: 'To',
    accession: 'Accession number',
    none: 'No imaging document in the DMP.',
    noDmp: 'This patient has no DMP.',
    closed: 'DMP closed',
    manifest: 'Images (KOS manifest)',
    report: 'Report (CR-IMG)',
    open: 'View images',
    opening: 'Opening…',
    importing: 'Importing…',
    import: 'Import into the archive',
    imported: (n: number) => `${n} image(s) imported into the site's archive.`,
    showReport: 'Read the report',
    retry: 'Try again',
    relogin: 'Log in again with Pro Santé Connect',
    sourceDown: 'The source DRIMbox does not answer for now.',
    failed: 'Failed',
  },
} as const;

interface DmpDocument {
  kind: 'KOS' | 'CR-IMG';
  uniqueId: string;
  repositoryUniqueId: string;
  title?: string;
  creationTime?: string;
  StudyInstanceUID?: string;
  AccessionNumber?: string;
}

/** A failed call: its status and the server's words, with what to do again. */
interface Failure { status: number; detail: string; retry: () => void }

/** Fetch without the portal's "session ended" handling: a refused Pro Santé Connect token is said here, not as a logout. */
async function call<T>(method: 'GET' | 'POST', url: string, body?: unknown): Promise<T> {
  const r = await fetch(url, {
    method, credentials: 'same-origin',
    headers: { accept: 'application/json', ...(body !== undefined ? { 'content-type': 'application/json', ...csrfHeaders() } : csrfHeaders()) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await r.text();
  if (!r.ok) {
    let detail = r.statusText;
    let code: string | undefined;
    try {
      const problem = JSON.parse(text) as { detail?: string; code?: string };
      detail = problem.detail ?? detail;
      code = problem.code;
    } catch {
      // not a problem document
    }
    throw new ApiError(r.status, detail, undefined, code);
  }
  return (text ? JSON.parse(text) : undefined) as T;
}

/**
 * The patient's imaging documents in the DMP (found by their qualified INS), beside the local
 * timeline: open a manifest's images in the viewer (fetched from the source DRIMbox, not kept),
 * import them, read a report. Searched at once when the page was opened by a RIS's context
 * (?dmp=1), else on request.
 */
export function DmpSection({ site, PatientID, language }: { site: string; PatientID: string; language: Language }) {
  const t = texts[language];
  const [filters, setFilters] = useState({ modality: '', region: '', from: '', to: '', accession: '' });
  const [found, setFound] = useState<{ dmp: string; documents: DmpDocument[] }>();
  const [busy, setBusy] = useState<string>();
  const [failure, setFailure] = useState<Failure>();
  const [notice, setNotice] = useState<string>();
  const [report, setReport] = useState<{ title?: string; text: string }>();

  const guarded = useCallback(async (what: string, action: () => Promise<void>, again: () => void) => {
    setBusy(what);
    setFailure(undefined);
    setNotice(undefined);
    try {
      await action();
    } catch (e) {
      // The server's words are for the log; the user reads them in their language (web/src/errors.ts).
      const sourceDown = e instanceof ApiError && e.code === 'source-unavailable';
      setFailure({ status: e instanceof ApiError ? e.status : 0, detail: sourceDown ? texts[language].sourceDown : errorText(e, language), retry: again });
    } finally {
      setBusy(undefined);
    }
  }, [language]);

  const search = useCallback(() => {
    const q = new URLSearchParams({ site, PatientID });
    if (filters.modality) q.set('modality', filters.modality.toUpperCase());
    if (filters.region) q.set('region', filters.region.trim().toUpperCase());
    if (filters.from) q.set('from', filters.from.replaceAll('-', ''));
    if (filters.to) q.set('to', filters.to.replaceAll('-', ''));
    if (filters.accession) q.set('accession', filters.accession);
    void guarded('search', async () => setFound(await call('GET', `/api/drimbox/documents?${q}`)), search);
  }, [site, PatientID, filters, guarded]);

  useEffect(() => {
    if (new URLSearchParams(window.location.search).get('dmp') === '1') search();
    // Only when the page opens on a patient.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [site, PatientID]);

  const ref = (d: DmpDocument) => ({ site, PatientID, uniqueId: d.uniqueId, repositoryUniqueId: d.repositoryUniqueId });
  const open = (d: DmpDocument) => void guarded(`open ${d.uniqueId}`, async () => {
    const opened = await call<{ StudyInstanceUID: string }>('POST', '/api/drimbox/open', ref(d));
    navigate(`${viewerPath(opened.StudyInstanceUID)}&source=dmp`);
  }, () => open(d));
  const importStudy = (d: DmpDocument) => void guarded(`import ${d.uniqueId}`, async () => {
    const opened = await call<{ StudyInstanceUID: string }>('POST', '/api/drimbox/open', ref(d));
    const done = await call<{ stored: number; failed: number }>('POST', `/api/drimbox/studies/${encodeURIComponent(opened.StudyInstanceUID)}/import`, {});
    setNotice(t.imported(done.stored));
  }, () => importStudy(d));
  const read = (d: DmpDocument) => void guarded(`report ${d.uniqueId}`, async () => {
    setReport(await call('GET', `/api/drimbox/report?${new URLSearchParams(ref(d))}`));
  }, () => read(d));

  const back = `${window.location.pathname}${window.location.search}`;
  return (
    <section data-testid="dmp">
      <h2>{t.title}</h2>
      <form className="filters" onSubmit={(e) => { e.preventDefault(); search(); }}>
        <label>{t.modality} <input name="modality" size={4} value={filters.modality} onChange={(e) => setFilters({ ...filters, modality: e.target.value })} /></label>
        <label>{t.region} <input name="region" size={8} value={filters.region} onChange={(e) => setFilters({ ...filters, region: e.target.value })} /></label>
        <label>{t.from} <input name="from" type="date" value={filters.from} onChange={(e) => setFilters({ ...filters, from: e.target.value })} /></label>
        <label>{t.to} <input name="to" type="date" value={filters.to} onChange={(e) => setFilters({ ...filters, to: e.target.value })} /></label>
        <label>{t.accession} <input name="accession" size={10} value={filters.accession} onChange={(e) => setFilters({ ...filters, accession: e.target.value })} /></label>
        <button type="submit" className="button" data-testid="dmp-search" disabled={busy !== undefined}>{t.search}</button>
      </form>
      {busy === 'search' && <p className="status">{t.searching}</p>}
      {failure && (
        <div className="error" role="alert" data-testid="dmp-error">
          <p>{failure.detail}</p>
          {failure.status === 401
            ? <a className="button" data-testid="dmp-relogin" href={`/auth/login?${new URLSearchParams({ returnTo: back })}`}>{t.relogin}</a>
            : <button type="button" className="button" data-testid="dmp-retry" onClick={failure.retry}>{t.retry}</button>}
        </div>
      )}
      {notice && <p className="status" role="status" data-testid="dmp-notice">{notice}</p>}
      {found && (found.dmp === 'none' ? <p className="muted">{t.noDmp}</p> : found.documents.length === 0 ? <p className="muted">{t.none}</p> : (
        <ul data-testid="dmp-documents">
          {found.dmp === 'closed' && <li className="muted">{t.closed}</li>}
          {found.documents.map((d) => (
            <li key={d.uniqueId} data-testid="dmp-document" data-kind={d.kind}>
              {formatDicomDate(d.creationTime?.slice(0, 8), language)} · {d.kind === 'KOS' ? t.manifest : t.report}{d.title ? ` · ${d.title}` : ''}{d.AccessionNumber ? ` · ${d.AccessionNumber}` : ''}{' '}
              {d.kind === 'KOS' ? (
                <>
                  <button type="button" className="button primary" data-testid="dmp-open" disabled={busy !== undefined} onClick={() => open(d)}>{busy === `open ${d.uniqueId}` ? t.opening : t.open}</button>{' '}
                  <button type="button" className="button" data-testid="dmp-import" disabled={busy !== undefined} onClick={() => importStudy(d)}>{busy === `import ${d.uniqueId}` ? t.importing : t.import}</button>
                </>
              ) : (
                <button type="button" className="button" data-testid="dmp-report" disabled={busy !== undefined} onClick={() => read(d)}>{t.showReport}</button>
              )}
            </li>
          ))}
        </ul>
      ))}
      {report && (
        <article data-testid="dmp-report-text">
          {report.title && <h3>{report.title}</h3>}
          <pre>{report.text}</pre>
        </article>
      )}
    </section>
  );
}
