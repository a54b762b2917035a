import { useState, type FormEvent } from 'react';
import { searchPatients, type PatientRecord, type PatientSearch } from '../api.ts';
import { formatDicomDate, formatPersonName, useTexts, type Language } from '../i18n.ts';
import { navigate } from '../router.ts';

/** Patient search: name (accents and case ignored), birth date, INS, PatientID of a site. */
export function SearchPage({ language }: { language: Language }) {
  const t = useTexts();
  const [query, setQuery] = useState<PatientSearch>({});
  const [results, setResults] = useState<PatientRecord[]>();
  const [error, setError] = useState<string>();
  const set = (k: keyof PatientSearch) => (e: { target: { value: string } }) => setQuery({ ...query, [k]: e.target.value });

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(undefined);
    try {
      // The form's date (YYYY-MM-DD) is a DICOM date on the wire.
      setResults(await searchPatients({ ...query, birthDate: query.birthDate?.replaceAll('-', '') }));
    } catch (err) {
      setError((err as Error).message);
    }
  };

  return (
    <section className="card">
      <h1>{t.searchTitle}</h1>
      <form className="search" onSubmit={(e) => { void submit(e); }}>
        <label>{t.patientName}<input name="name" value={query.name ?? ''} onChange={set('name')} autoFocus /></label>
        <label>{t.birthDate}<input name="birthDate" type="date" value={query.birthDate ?? ''} onChange={set('birthDate')} /></label>
        <label>{t.ins}<input name="ins" inputMode="numeric" value={query.ins ?? ''} onChange={set('ins')} /></label>
        <label>{t.patientId}<input name="PatientID" value={query.PatientID ?? ''} onChange={set('PatientID')} /></label>
        <label>{t.site}<input name="site" value={query.site ?? ''} onChange={set('site')} placeholder={t.anySite} /></label>
        <button type="submit" className="button primary">{t.search}</button>
      </form>
      {error && <p className="error" role="alert">{error}</p>}
      {results && results.length === 0 && <p className="status">{t.noPatient}</p>}
      {results && results.length > 0 && (
        <table className="results" data-testid="patients">
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
        </table>
      )}
    </section>
  );
}
