import { useEffect, useState } from 'react';
import { patientTimeline, type PatientRecord, type TimelineStudy } from '../api.ts';
import { formatDicomDate, formatPersonName, useTexts, type Language } from '../i18n.ts';
import { StudyList } from './StudyList.tsx';

/** A patient's exams across every site (their records linked to the same person included). */
export function TimelinePage({ language, site, PatientID }: { language: Language; site: string; PatientID: string }) {
  const t = useTexts();
  const [data, setData] = useState<{ patient: PatientRecord; studies: TimelineStudy[] }>();
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
      <h2>{t.timeline}</h2>
      <StudyList studies={data.studies} language={language} />
    </section>
  );
}
