import { useCallback, useEffect, useRef, useState } from 'react';
import type { Language } from '../i18n.ts';
import { addAddendum, report as loadReport, saveDraft, signReport, templates as loadTemplates, type ReportTemplate, type TeleReport, type TeleRequest } from './tele-api.ts';
import { formatDateTime, teleTexts } from './texts.ts';
import { errorText } from '../errors.ts';

interface Draft { template?: string; fields: Record<string, string>; findings: string; conclusion: string }

/** How long typing pauses before the draft is saved on the server. */
const autosaveMs = 700;

/**
 * The report: template fields, free text and conclusion, saved as typed (one save in flight
 * at a time, each carrying the version it started from, so a stale tab is refused); signed
 * preliminary or final by the reader; after a final signature, addenda only.
 */
export function ReportEditor({ id, request, editable, language, onSigned }: { id: number; request: TeleRequest; editable: boolean; language: Language; onSigned: () => void }) {
  const tt = teleTexts[language];
  const [stored, setStored] = useState<TeleReport>();
  const [draft, setDraft] = useState<Draft>({ fields: {}, findings: '', conclusion: '' });
  const [templates, setTemplates] = useState<ReportTemplate[]>([]);
  const [saveState, setSaveState] = useState<'idle' | 'pending' | 'saving' | 'saved'>('idle');
  const [error, setError] = useState<string>();
  const [addendum, setAddendum] = useState('');
  // A final signature is asked twice: once signed, the report is sent and never edited again.
  const [confirming, setConfirming] = useState(false);
  const version = useRef<number | undefined>(undefined);
  const latest = useRef(draft);
  const dirty = useRef(false);
  const inFlight = useRef<Promise<void> | undefined>(undefined);
  const timer = useRef<number | undefined>(undefined);

  const adopt = (r: TeleReport | undefined) => {
    setStored(r);
    version.current = r?.version;
    if (r) {
      const d = { ...(r.template ? { template: r.template } : {}), fields: r.fields, findings: r.findings, conclusion: r.conclusion };
      latest.current = d;
      setDraft(d);
    }
  };
  useEffect(() => {
    loadReport(id).then(adopt, (e: unknown) => setError(errorText(e, language)));
    loadTemplates(request.modality, request.bodyPart).then(setTemplates, () => setTemplates([]));
  }, [id, request.modality, request.bodyPart]);

  /** Saves until what is on the server is what was typed. */
  const flush = useCallback(async (): Promise<void> => {
    if (inFlight.current) await inFlight.current;
    if (!dirty.current) return;
    dirty.current = false;
    setSaveState('saving');
    const d = latest.current;
    inFlight.current = saveDraft(id, { ...d, ...(version.current !== undefined ? { baseVersion: version.current } : {}) }).then((r) => {
      setStored(r);
      version.current = r.version;
      setError(undefined);
      setSaveState(dirty.current ? 'pending' : 'saved');
    }, (e: unknown) => { setError(errorText(e, language)); setSaveState('idle'); });
    await inFlight.current;
    inFlight.current = undefined;
    if (dirty.current) await flush();
  }, [id]);

  const edit = (next: Draft) => {
    setDraft(next);
    latest.current = next;
    dirty.current = true;
    setSaveState('pending');
    window.clearTimeout(timer.current);
    timer.current = window.setTimeout(() => { void flush(); }, autosaveMs);
  };
  useEffect(() => () => { window.clearTimeout(timer.current); void flush(); }, [flush]);

  /** The template's labels of its fields: a 422 names the required ones left empty. */
  const fieldLabels = () => Object.fromEntries((templates.find((tp) => tp.code === latest.current.template)?.fields ?? []).map((f) => [f.name, f.label]));
  const sign = async (preliminary: boolean) => {
    setError(undefined);
    setConfirming(false);
    window.clearTimeout(timer.current);
    try {
      await flush();
      adopt(await signReport(id, preliminary));
      onSigned();
    } catch (e) {
      setError(errorText(e, language, fieldLabels()));
    }
  };
  const addAddendumNow = async () => {
    setError(undefined);
    try {
      await addAddendum(id, addendum);
      setAddendum('');
      adopt(await loadReport(id));
      onSigned();
    } catch (e) {
      setError(errorText(e, language, fieldLabels()));
    }
  };

  const signed = stored !== undefined && (stored.status === 'final' || stored.status === 'amended');
  const template = templates.find((tp) => tp.code === draft.template);
  const writable = editable && !signed && (request.status === 'open');

  return (
    <fieldset className="tele-form report" data-testid="report">
      <legend>{tt.report}{stored && <> — <span data-testid="report-status">{tt.reportStatusNames[stored.status]}</span>{stored.signedBy ? ` (${tt.signedBy} ${stored.signedBy}, ${formatDateTime(stored.signedAt, language)})` : ''}</>}</legend>
      {!stored && !editable && <p className="status">—</p>}
      {(stored || editable) && (
        <>
          {templates.length > 0 && (
            <label>{tt.template}
              <select name="template" value={draft.template ?? ''} disabled={!writable} onChange={(e) => {
                const chosen = templates.find((tp) => tp.code === e.target.value);
                edit({ ...draft, ...(chosen ? { template: chosen.code } : { template: undefined }), findings: draft.findings === '' && chosen ? chosen.findings : draft.findings });
              }}>
                <option value="">{tt.noTemplate}</option>
                {templates.map((tp) => <option key={tp.code} value={tp.code}>{tp.name}</option>)}
              </select>
            </label>
          )}
          {template?.fields.map((f) => (
            <label key={f.name}><span>{f.label}{f.required && <span className="required"> *</span>}</span>
              <input name={`field-${f.name}`} value={draft.fields[f.name] ?? ''} readOnly={!writable}
                onChange={(e) => edit({ ...draft, fields: { ...draft.fields, [f.name]: e.target.value } })} />
            </label>
          ))}
          <label>{tt.findings}<textarea name="findings" rows={8} value={draft.findings} readOnly={!writable} onChange={(e) => edit({ ...draft, findings: e.target.value })} /></label>
          <label>{tt.conclusion}<textarea name="conclusion" rows={3} value={draft.conclusion} readOnly={!writable} onChange={(e) => edit({ ...draft, conclusion: e.target.value })} /></label>
          {writable && (
            <div className="exam-actions">
              <span className="status" data-testid="save-state">{saveState === 'saving' || saveState === 'pending' ? tt.saving : saveState === 'saved' ? tt.saved : ''}</span>
              <button type="button" data-testid="sign-preliminary" onClick={() => { void sign(true); }}>{tt.signPreliminary}</button>
              <button type="button" className="button primary" data-testid="sign-final" onClick={() => setConfirming(true)}>{tt.signFinal}</button>
            </div>
          )}
          {writable && confirming && (
            <div className="confirm" role="alertdialog" aria-labelledby="confirm-final-title" data-testid="confirm-final">
              <p id="confirm-final-title"><strong>{tt.confirmFinalTitle}</strong></p>
              <p>{tt.confirmFinalText}</p>
              <div className="exam-actions">
                <button type="button" className="button primary" data-testid="confirm-sign-final" autoFocus onClick={() => { void sign(false); }}>{tt.confirmSign}</button>
                <button type="button" data-testid="cancel-sign-final" onClick={() => setConfirming(false)}>{tt.cancel}</button>
              </div>
            </div>
          )}
        </>
      )}
      {stored?.addenda.map((a) => <p key={a.id} className="addendum"><strong>{tt.addendum}</strong> ({a.signedBy}, {formatDateTime(a.signedAt, language)}) : {a.text}</p>)}
      {signed && editable && (
        <>
          <label>{tt.addendum}<textarea name="addendum" rows={2} value={addendum} onChange={(e) => setAddendum(e.target.value)} /></label>
          <button type="button" data-testid="add-addendum" disabled={addendum.trim() === ''} onClick={() => { void addAddendumNow(); }}>{tt.addAddendum}</button>
        </>
      )}
      {error && <p className="error" role="alert">{error}</p>}
    </fieldset>
  );
}
