import { useEffect, useState } from 'react';
import { doseTimeline, patientTimeline, type DoseTimeline, type PatientRecord, type RecentElsewhere, type TimelineStudy } from '../api.ts';
import { navigate, viewerPath } from '../router.ts';
import { formatDicomDate, formatPersonName, useTexts, type Language } from '../i18n.ts';
import { StudyList } from './StudyList.tsx';
import { DmpSection } from './DmpSection.tsx';
import { errorText } from '../errors.ts';
import { SharingEntry } from './PortalScreens.tsx';

/** A patient's exams across every site (their records linked to the same person included). */
export function TimelinePage({ language, site, PatientID }: { language: Language; site: string; PatientID: string }) {
  const t = useTexts();
  const [data, setData] = useState<{ patient: PatientRecord; studies: TimelineStudy[]; recentElsewhere?: RecentElsewhere }>();
  const [error, setError] = useState<string>();
  // Asked for, not loaded with the timeline: each reading of the dose is an audited query.
  const [dose, setDose] = useState<DoseTimeline>();
  const [doseError, setDoseError] = useState<string>();
  useEffect(() => {
    patientTimeline(site, PatientID).then(setData, (e: unknown) => setError(errorText(e, language)));
  }, [site, PatientID, language]);
  if (error) return <><p className="error" role="alert">{t.notFound}</p><SharingEntry language={language} site={site} PatientID={PatientID} emergency /></>;
  if (!data) return <p className="status">{t.loading}</p>;
  const p = data.patient;
  return (
    <section className="card">
      <h1>{formatPersonName(p.PatientName)} <span className="muted">{formatDicomDate(p.PatientBirthDate, language)} · {p.site} {p.PatientID}{p.INS ? ` · INS ${p.INS}` : ''}</span></h1>
      <SharingEntry language={language} site={site} PatientID={PatientID} />
      {data.recentElsewhere && (
        <div className="banner" role="status" data-testid="recent-elsewhere">
          <p>{t.recentElsewhere}</p>
          <ul>
            {data.recentElsewhere.priors.map((r) => (
              <li key={r.StudyInstanceUID}>
                {formatDicomDate(r.StudyDate, language)} · {r.modality} {r.bodyPart} · {r.site}{' '}
                <button type="button" className="button primary" data-testid="open-recent" onClick={() => navigate(viewerPath(r.StudyInstanceUID))}>{t.open}</button>
              </li>
            ))}
            {data.recentElsewhere.elsewhere ? <li>{data.recentElsewhere.elsewhere} {t.recentHidden}</li> : null}
          </ul>
        </div>
      )}
      <h2>{t.timeline}</h2>
      <StudyList studies={data.studies} language={language} />
      <DmpSection site={site} PatientID={PatientID} language={language} />
      <h2>{t.dose}</h2>
      {!dose && <button type="button" className="button" data-testid="show-dose" onClick={() => doseTimeline(site, PatientID).then(setDose, (e: unknown) => setDoseError(errorText(e, language)))}>{t.showDose}</button>}
      {doseError && <p className="error" role="alert">{doseError}</p>}
      {dose && (
        <div data-testid="dose">
          <div className="table-scroll"><table>
            <thead><tr><th>{t.date}</th><th>{t.modality}</th><th>{t.bodyPart}</th><th>CTDIvol (mGy)</th><th>PDL (mGy.cm)</th><th>PDS (Gy.m²)</th><th>{t.effectiveDose}</th><th>{t.cumulativeDose}</th></tr></thead>
            <tbody>
              {dose.exams.map((e) => (
                <tr key={e.StudyInstanceUID}>
                  <td>{formatDicomDate(e.StudyDate, language)} · {e.site}</td><td>{e.modality}</td><td>{e.region ?? ''}</td>
                  <td>{e.CTDIvol_mGy ?? ''}</td><td>{e.DLP_mGycm ?? ''}{e.status === 'partial' ? ` (${t.partialDose})` : ''}</td><td>{e.DAP_Gym2 ?? ''}</td>
                  <td>{e.effectiveDose_mSv ?? ''}</td><td>{e.cumulativeEffectiveDose_mSv}</td>
                </tr>
              ))}
            </tbody>
          </table></div>
          <p className="muted">{dose.method}</p>
        </div>
      )}
    </section>
  );
}
