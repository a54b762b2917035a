import { useState, type FormEvent } from 'react';
import { ApiError, type Me } from '../api.ts';
import type { Language } from '../i18n.ts';
import { navigate } from '../router.ts';
import { createRequest, urgencies } from './tele-api.ts';
import { teleTexts } from './texts.ts';

type Form = Record<'site' | 'PatientID' | 'StudyInstanceUID' | 'AccessionNumber' | 'urgency' | 'modality' | 'bodyPart' | 'specialty'
  | 'clinicalContext' | 'clinicalQuestion' | 'physician' | 'rpps' | 'proposedProtocol', string>;

/**
 * A requesting site's teleradiology request: the charter's mandatory fields (marked, and
 * checked again by the server, which names every missing one), urgency with "alerte AVC",
 * and the study by its UID (already sent) or its accession number (images to come).
 */
export function RequestFormPage({ me, language }: { me: Me; language: Language }) {
  const tt = teleTexts[language];
  const [form, setForm] = useState<Form>({
    site: me.sites[0] ?? '', PatientID: '', StudyInstanceUID: '', AccessionNumber: '', urgency: 'routine', modality: '', bodyPart: '', specialty: '',
    clinicalContext: '', clinicalQuestion: '', physician: '', rpps: '', proposedProtocol: '',
  });
  const [error, setError] = useState<string>();
  const [sending, setSending] = useState(false);
  const set = (k: keyof Form) => (e: { target: { value: string } }) => setForm({ ...form, [k]: e.target.value });
  const opt = (v: string) => (v.trim() === '' ? undefined : v.trim());

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(undefined);
    setSending(true);
    try {
      const created = await createRequest({
        ...(opt(form.site) ? { site: form.site.trim() } : {}), patient: { PatientID: form.PatientID.trim() },
        ...(opt(form.StudyInstanceUID) ? { StudyInstanceUID: form.StudyInstanceUID.trim() } : {}),
        ...(opt(form.AccessionNumber) ? { AccessionNumber: form.AccessionNumber.trim() } : {}),
        urgency: form.urgency, modality: form.modality.trim(), bodyPart: form.bodyPart.trim(), specialty: form.specialty.trim(),
        clinicalContext: form.clinicalContext, clinicalQuestion: form.clinicalQuestion,
        requestingPhysician: { name: form.physician.trim(), ...(opt(form.rpps) ? { rpps: form.rpps.trim() } : {}) }, proposedProtocol: form.proposedProtocol,
      });
      navigate(`/tele/request?id=${created.id}`);
    } catch (err) {
      setError(err instanceof ApiError && err.status === 422 ? `${tt.missing}: ${err.message}` : (err as Error).message);
    } finally {
      setSending(false);
    }
  };
  const field = (k: keyof Form, label: string, required = true, props: React.InputHTMLAttributes<HTMLInputElement> = {}) => (
    <label><span>{label}{required && <span className="required" title={tt.required}> *</span>}</span>
      <input name={k} value={form[k]} onChange={set(k)} required={required} {...props} />
    </label>
  );
  const area = (k: keyof Form, label: string) => (
    <label><span>{label}<span className="required" title={tt.required}> *</span></span><textarea name={k} value={form[k]} onChange={set(k)} required rows={3} /></label>
  );

  return (
    <section className="card">
      <h1>{tt.newRequest}</h1>
      <form className="tele-form" onSubmit={(e) => { void submit(e); }} data-testid="request-form">
        <div className="columns">
          {field('site', tt.site, me.sites.length !== 1)}
          {field('PatientID', tt.patientId)}
          {field('StudyInstanceUID', tt.StudyInstanceUID, false, { pattern: '[0-9.]{1,64}' })}
          {field('AccessionNumber', tt.AccessionNumber, false, { maxLength: 16 })}
          <label><span>{tt.urgency}<span className="required"> *</span></span>
            <select name="urgency" value={form.urgency} onChange={set('urgency')}>
              {urgencies.map((u) => <option key={u} value={u}>{tt.urgencyNames[u]}</option>)}
            </select>
          </label>
          {field('modality', tt.modality, true, { maxLength: 16 })}
          {field('bodyPart', tt.bodyPart)}
          {field('specialty', tt.specialty)}
          {field('physician', tt.physician)}
          {field('rpps', tt.rpps, false, { pattern: '[0-9]{11}', inputMode: 'numeric' })}
        </div>
        {area('clinicalContext', tt.clinicalContext)}
        {area('clinicalQuestion', tt.clinicalQuestion)}
        {area('proposedProtocol', tt.proposedProtocol)}
        {error && <p className="error" role="alert">{error}</p>}
        <button type="submit" className="button primary" disabled={sending}>{tt.send}</button>
      </form>
    </section>
  );
}
