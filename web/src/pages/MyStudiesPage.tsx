import { useEffect, useState } from 'react';
import { getJson, type TimelineStudy } from '../api.ts';
import { studyOfQido, type DicomJson } from '../dicom-json.ts';
import { useTexts, type Language } from '../i18n.ts';
import { StudyList } from './StudyList.tsx';

/** A patient's (or a share link's) own exams: whatever QIDO-RS lets this session see. */
export function MyStudiesPage({ language }: { language: Language }) {
  const t = useTexts();
  const [studies, setStudies] = useState<TimelineStudy[]>();
  const [error, setError] = useState<string>();
  useEffect(() => {
    getJson<DicomJson[]>('/dicom-web/studies?includefield=StudyDescription', 'application/dicom+json')
      .then((list) => setStudies(list.map(studyOfQido).sort((a, b) => (b.StudyDate ?? '').localeCompare(a.StudyDate ?? ''))), (e: Error) => setError(e.message));
  }, []);
  if (error) return <p className="error" role="alert">{error}</p>;
  if (!studies) return <p className="status">{t.loading}</p>;
  return (
    <section className="card">
      <h1>{t.timeline}</h1>
      <StudyList studies={studies} language={language} />
    </section>
  );
}
