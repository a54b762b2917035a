import { useState, type FormEvent } from 'react';
import { searchPatients, type PatientPage, type PatientSearch } from '../api.ts';
import { formatDicomDate, formatPersonName, useTexts, type Language } from '../i18n.ts';
import { navigate } from '../router.ts';
import { errorText } from '../errors.ts';

/** Patient search: name (accents and case ignored), birth date, INS, PatientID of a site. */
export function SearchPage({ language }: { language: Language }) {
  const t = useTexts();
  const [query, setQuery] = useState<PatientSearch>({});
  const [page, setPage] = useState<PatientPage>();
  // The search the pages belong to, as submitted (the form may have changed since).
  const [submitted, setSubmitted] = useState<PatientSearch>({});
  const [error, setError] = useState<string>();
  const set = (k: keyof PatientSearch) => (e: { target: { value: string } }) => setQuery({ ...query, [k]: e.target.value });
  const results = page?.patients;

  const show = async (search: PatientSearch, offset: number) => {
    setError(undefined);
    try {
      setPage(await searchPatients(search, offset));
      setSubmitted(search);
    } catch (err) {
      // Results of an earlier search are not left under an error that says this one failed.
      setPage(undefined);
      setError(errorText(err, language));
    }
  };
  const submit = (e: FormEvent) => {
    e.preventDefault();
    // The form's date (YYYY-MM-DD) is a DICOM date on the wire; blank fields are no criteria.
    const search = Object.fromEntries(Object.entries({ ...query, birthDate: query.birthDate?.replaceAll('-', '') })
      .map(([k, v]) => [k, v?.trim()]).filter(([, v]) => v)) as PatientSearch;
    if (Object.keys(search).length === 0) {
      // An empty search clears the old results and says what to type.
      setPage(undefined);
      setSubmitted({});
      setError(t.searchEmpty);
      return;
    }
    void show(search, 0);
  };

  return (
    <section className="card">
      <h1>{t.searchTitle}</h1>
      <form className="search" onSubmit={submit}>
        <label>{t.patientName}<input name="name" value={query.name ?? ''} onChange={set('name')} placeholder={t.namePlaceholder} autoFocus /></label>
        <label>{t.birthDate}<input name="birthDate" type="date" value={query.birthDate ?? ''} onChange={set('birthDate')} /></label>
        <label>{t.ins}<input name="ins" inputMode="numeric" value={query.ins ?? ''} onChange={set('ins')} /></label>
        <label>{t.patientId}<input name="PatientID" value={query.PatientID ?? ''} onChange={set('PatientID')} /></label>
        <label>{t.site}<input name="site" value={query.site ?? ''} onChange={set('site')} placeholder={t.anySite} /></label>
        <button type="submit" className="button primary">{t.search}</button>
      </form>
      {error && <p className="error" role="alert">{error}</p>}
      {results && results.length === 0 && <p className="status">{t.noPatient}</p>}
      {page?.next !== undefined && page.offset === 0 && <p className="status" data-testid="refine">{t.refineSearch}</p>}
      {results && results.length > 0 && (
        <div className="table-scroll"><table className="results" data-testid="patients">
          <thead><tr><th>{t.patientName}</th><th>{t.birthDate}</th><th>{t.sex}</th><th>{t.site}</th><th>{t.patientId}</th><th>{t.ins}</th><th>{t.studies}</th></tr></thead>
          <tbody>
            {results.map((p) => (
              <tr key={`${p.site}/${p.IssuerOfPatientID}/${p.PatientID}`} className="clickable" tabIndex={0}
                onClick={() => navigate(`/patients?${new URLSearchParams({ site: p.site, PatientID: p.PatientID })}`)}
                onKeyDown={(e) => { if (e.key === 'Enter') navigate(`/patients?${new URLSearchParams({ site: p.site, PatientID: p.PatientID })}`); }}>
                <td>{formatPersonName(p.PatientName)}</td><td>{formatDicomDate(p.PatientBirthDate, language)}</td><td>{p.PatientSex ?? ''}</td>
                <td>{p.site}</td><td>{p.PatientID}</td><td>{p.INS ?? ''}</td><td>{p.NumberOfPatientRelatedStudies}</td>
              </tr>
            ))}
          </tbody>
        </table></div>
      )}
      {page && (page.offset > 0 || page.next !== undefined) && (
        <nav className="pager" data-testid="pager">
          <span data-testid="pager-range">{t.patientsShown} {page.offset + 1}–{page.offset + page.patients.length}</span>
          <button type="button" className="button" disabled={page.offset === 0} onClick={() => void show(submitted, Math.max(0, page.offset - page.limit))}>{t.previousPage}</button>
          <button type="button" className="button" data-testid="next-page" disabled={page.next === undefined} onClick={() => void show(submitted, page.next!)}>{t.nextPage}</button>
        </nav>
      )}
    </section>
  );
}
