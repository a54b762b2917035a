import { studyArchiveUrl, thumbnailUrl, type TimelineStudy } from '../api.ts';
import { formatDicomDate, useTexts, type Language } from '../i18n.ts';
import { navigate, viewerPath } from '../router.ts';

/** A teleradiology reading as the timeline says it: signed, preliminary, in progress, returned. */
const readingTexts = {
  fr: { signed: 'signé', preliminary: 'préliminaire', inProgress: 'en cours', returned: 'demande retournée' },
  en: { signed: 'signed', preliminary: 'preliminary', inProgress: 'in progress', returned: 'request returned' },
} as const;

function readingStatus(s: TimelineStudy, language: Language): string | undefined {
  const t = readingTexts[language];
  const r = s.teleradiology;
  if (!r) return undefined;
  if (r.report === 'final' || r.report === 'amended') return t.signed;
  if (r.report === 'preliminary') return t.preliminary;
  if (r.request === 'returned') return t.returned;
  return t.inProgress;
}

/** Exams, newest first: thumbnail, date, modality, body part, site, report status, open, download. */
export function StudyList({ studies, language }: { studies: TimelineStudy[]; language: Language }) {
  const t = useTexts();
  return (
    <ol className="timeline" data-testid="timeline">
      {studies.map((s) => (
        <li key={s.StudyInstanceUID} className="exam">
          <img className="thumbnail" src={thumbnailUrl(s.StudyInstanceUID)} alt="" width={96} height={96} loading="lazy" />
          <div className="exam-text">
            <strong>{formatDicomDate(s.StudyDate, language)}</strong> · {s.ModalitiesInStudy.join(', ')}
            {s.BodyPartsExamined.length > 0 && <> · {s.BodyPartsExamined.join(', ')}</>}
            <div>{s.StudyDescription ?? ''}</div>
            <div className="muted">{t.site} {s.site} · {s.NumberOfStudyRelatedInstances} {t.images} · <span data-testid="report-status">{t.report} : {readingStatus(s, language) ?? t.reportNone}</span></div>
          </div>
          <div className="exam-actions">
            <button type="button" className="button primary" data-testid="open-study" onClick={() => navigate(viewerPath(s.StudyInstanceUID))}>{t.open}</button>
            <a className="button" href={studyArchiveUrl(s.StudyInstanceUID)} download>{t.download}</a>
          </div>
        </li>
      ))}
    </ol>
  );
}
