import { useEffect, useState } from 'react';
import { patientTimeline, type PatientRecord, type RecentElsewhere, type TimelineStudy } from '../api.ts';
import { navigate, viewerPath } from '../router.ts';
import { formatDicomDate, formatPersonName, useTexts, type Language } from '../i18n.ts';
import { StudyList } from './StudyList.tsx';

/** A patient's exams across every site (their records linked to the same person included). */
export function TimelinePage({ language, site, PatientID }: { language: Language; site: string; PatientID: string }) {
  const t = useTexts();
  const [data, setData] = useState<{ patient: PatientRecord; studies: TimelineStudy[]; recentElsewhere?: RecentElsewhere }>();
  const [error, setError] = useState<string>();
  useEffect(() => {
    patientTimeline(site, PatientID).then(setData, (e: Error) => setError(e.message));
  }, [site, PatientID]);
  if (error) return <p className="error" role="alert">{t.notFound}</p>;
  if (!data) return <p className="status">{t.loading}</p>;
  const p = data.patient;
  return (
    <section className="card">
      <h1>{formatPersonName(p.PatientName)} <span className="muted">{formatDicomDate(p.PatientBirthDate, language)} · {p.site} {p.PatientID}{p.INS ? ` · INS ${p.INS}` : ''}</span></h1>
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
    </section>
  );
}
