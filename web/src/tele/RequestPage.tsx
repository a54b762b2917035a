import { lazy, Suspense, useCallback, useEffect, useState } from 'react';
import type { Me } from '../api.ts';
import { formatDicomDate, formatPersonName, type Language } from '../i18n.ts';
import { navigate, viewerPath } from '../router.ts';
import { askSecondReading, claim, decideProtocol, release, reportPdfUrl, returnRequest, teleRequest, type SecondReading, type TeleRequest } from './tele-api.ts';
import { Countdown } from './Countdown.tsx';
import { ReportEditor } from './ReportEditor.tsx';
import { formatDateTime, teleTexts } from './texts.ts';
import { isRadiologist } from './TelePages.tsx';
import { errorText } from '../errors.ts';

// The viewer (most of the bundle) beside the report editor, loaded when a reader opens a request with images.
const ViewerPage = lazy(() => import('../viewer/ViewerPage.tsx').then((m) => ({ default: m.ViewerPage })));

/** One request whole: its clinical context, protocol decision, claim, images, report, and second reading. */
export function RequestPage({ me, id, language }: { me: Me; id: number; language: Language }) {
  const tt = teleTexts[language];
  const [request, setRequest] = useState<TeleRequest>();
  const [error, setError] = useState<string>();
  const [changing, setChanging] = useState(false);
  const [protocol, setProtocol] = useState('');
  const [reason, setReason] = useState('');
  const [asked, setAsked] = useState<SecondReading>();
  const [second, setSecond] = useState({ specialty: '', question: '', expert: '' });
  const load = useCallback(() => { teleRequest(id).then(setRequest, (e: unknown) => setError(errorText(e, language))); }, [id, language]);
  useEffect(load, [load]);
  // A refusal (409: taken by another meanwhile) is said in the user's language, and the page shows where the request stands now.
  const act = (fn: () => Promise<unknown>) => { setError(undefined); fn().then(load, (e: unknown) => { setError(errorText(e, language)); load(); }); };

  if (!request) return error ? <p className="error" role="alert">{error}</p> : <p className="status">…</p>;
  const radiologist = isRadiologist(me);
  const openRequest = request.status === 'open' || request.status === 'awaiting-protocol';
  const reader = request.assignedTo === me.id;
  const claimedByOther = request.claimedBy !== undefined && request.claimedBy !== me.id;
  const p = request.patient;
  // The reader reads the images beside the report; others open them on their own page.
  const beside = reader && request.StudyInstanceUID !== undefined && request.imagesArrivedAt !== undefined;

  // Keys typed in the request (the report's text) stay there: the viewer beside it listens on the window for its shortcuts.
  const card = (
    <section className="card wide" data-testid="tele-request" onKeyDown={(e) => e.stopPropagation()}>
      <h1>{tt.request} {request.id} <span className={`badge urgency-${request.urgency}`}>{tt.urgencyNames[request.urgency]}</span>{' '}
        <span data-testid="request-status">{tt.statusNames[request.status]}</span></h1>
      <dl className="facts">
        <dt>{tt.patient}</dt><dd>{formatPersonName(p?.PatientName)} {formatDicomDate(p?.PatientBirthDate, language)} · {request.requestingSite} {p?.PatientID}</dd>
        <dt>{tt.deadline}</dt><dd>{formatDateTime(request.deadlineAt, language)} {openRequest && <Countdown deadlineAt={request.deadlineAt} tt={tt} />}</dd>
        <dt>{tt.modality} / {tt.bodyPart}</dt><dd>{request.modality} · {request.bodyPart} · {tt.specialty} {request.specialty}</dd>
        <dt>{tt.clinicalContext}</dt><dd>{request.clinicalContext}</dd>
        <dt>{tt.clinicalQuestion}</dt><dd>{request.clinicalQuestion}</dd>
        <dt>{tt.physician}</dt><dd>{request.requestingPhysician.name}{request.requestingPhysician.rpps ? ` (RPPS ${request.requestingPhysician.rpps})` : ''}</dd>
        <dt>{tt.proposedProtocol}</dt><dd>{request.proposedProtocol}</dd>
        {request.protocol && <><dt>{tt.protocolDecided}</dt><dd data-testid="protocol">{request.protocol.protocol} ({request.protocol.decision === 'validated' ? tt.validated : tt.changed}, {request.protocol.by}{request.protocol.reason ? ` : ${request.protocol.reason}` : ''})</dd></>}
        {request.returnedReason && <><dt>{tt.reason}</dt><dd>{request.returnedReason}</dd></>}
        <dt>{tt.reader}</dt><dd>{request.assignedTo ?? '—'}{request.claimedBy ? ` (${tt.claimedBy} ${request.claimedBy})` : ''}</dd>
        <dt>{tt.images}</dt><dd>{request.imagesArrivedAt ? `${tt.arrived} ${formatDateTime(request.imagesArrivedAt, language)}` : tt.awaited}</dd>
      </dl>
      <div className="exam-actions">
        {request.StudyInstanceUID && request.imagesArrivedAt && (
          <a className="button" data-testid="open-images" href={`/app${viewerPath(request.StudyInstanceUID)}`}
            onClick={(e) => { e.preventDefault(); navigate(viewerPath(request.StudyInstanceUID!)); }}>{tt.openImages}</a>
        )}
        {radiologist && openRequest && !claimedByOther && request.claimedBy !== me.id && <button type="button" data-testid="claim" onClick={() => act(() => claim(id))}>{tt.claim}</button>}
        {radiologist && openRequest && request.claimedBy === me.id && <button type="button" data-testid="release" onClick={() => act(() => release(id))}>{tt.release}</button>}
        {(request.status === 'reported') && <a className="button" href={reportPdfUrl(id)} target="_blank" rel="noreferrer">{tt.pdf}</a>}
      </div>
      {radiologist && openRequest && !reader && !claimedByOther && <p className="status" data-testid="read-before-claim">{tt.readBeforeClaim}</p>}
      {error && <p className="error" role="alert">{error}</p>}

      {radiologist && request.status === 'awaiting-protocol' && (
        <fieldset className="tele-form" data-testid="protocol-decision">
          <legend>{tt.protocol}</legend>
          <button type="button" className="button primary" data-testid="validate-protocol" onClick={() => act(() => decideProtocol(id, { decision: 'validated' }))}>{tt.validate}</button>{' '}
          <button type="button" onClick={() => setChanging(!changing)}>{tt.change}</button>
          {changing && (
            <>
              <label>{tt.protocol}<textarea name="protocol" rows={2} value={protocol} onChange={(e) => setProtocol(e.target.value)} /></label>
              <label>{tt.reason}<input name="reason" value={reason} onChange={(e) => setReason(e.target.value)} /></label>
              <button type="button" onClick={() => act(() => decideProtocol(id, { decision: 'changed', protocol, reason }))}>{tt.change}</button>{' '}
              <button type="button" onClick={() => act(() => returnRequest(id, reason))}>{tt.returnToSite}</button>
            </>
          )}
        </fieldset>
      )}

      {(request.status !== 'awaiting-protocol' && request.status !== 'returned') && (
        <ReportEditor id={id} request={request} editable={radiologist && reader} language={language} onSigned={load} />
      )}

      {request.status === 'reported' && (
        <fieldset className="tele-form" data-testid="second-reading-ask">
          <legend>{tt.askSecondReading}</legend>
          <div className="columns">
            <label>{tt.specialty}<input name="secondSpecialty" value={second.specialty} onChange={(e) => setSecond({ ...second, specialty: e.target.value })} /></label>
            <label>{tt.expert}<input name="expert" value={second.expert} onChange={(e) => setSecond({ ...second, expert: e.target.value })} /></label>
          </div>
          <label>{tt.question}<textarea name="question" rows={2} value={second.question} onChange={(e) => setSecond({ ...second, question: e.target.value })} /></label>
          <button type="button" data-testid="ask-second-reading" onClick={() => act(async () => setAsked(await askSecondReading(id, {
            specialty: second.specialty, question: second.question, ...(second.expert.trim() ? { expert: second.expert.trim() } : {}),
          })))}>{tt.ask}</button>
          {asked && <p className="status" data-testid="second-reading-asked">{tt.secondReadings} #{asked.id} → {asked.expert}</p>}
        </fieldset>
      )}
    </section>
  );
  if (!beside) return card;
  return (
    <div className="read-split">
      {card}
      <aside className="read-images" aria-label={tt.imagesBeside} data-testid="images-beside">
        <Suspense fallback={<p className="status">…</p>}><ViewerPage StudyInstanceUID={request.StudyInstanceUID!} language={language} /></Suspense>
      </aside>
    </div>
  );
}
