import { useState, type FormEvent } from 'react';
import { patientTimeline, type Me, type TimelineStudy } from '../api.ts';
import { formatDicomDate, type Language } from '../i18n.ts';
import { errorText } from '../errors.ts';
import { navigate } from '../router.ts';
import { createRequest, urgencies } from './tele-api.ts';
import { teleTexts } from './texts.ts';

type Form = Record<'site' | 'PatientID' | 'StudyInstanceUID' | 'AccessionNumber' | 'urgency' | 'modality' | 'bodyPart' | 'specialty'
  | 'clinicalContext' | 'clinicalQuestion' | 'physician' | 'rpps' | 'proposedProtocol', string>;

/**
 * A requesting site's teleradiology request: the charter's mandatory fields (marked, and
 * checked again by the server, which names every missing one), urgency with "alerte AVC",
 * and the study picked from the patient's archived exams at the site, or the accession number
 * its images will carry (images to come).
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
  // The patient's exams at the requesting site, to pick from (for the patient and site they were asked for).
  const [studies, setStudies] = useState<{ key: string; list: TimelineStudy[] }>();
  const studiesKey = `${form.site.trim()}|${form.PatientID.trim()}`;
  const findStudies = async () => {
    const site = form.site.trim();
    const PatientID = form.PatientID.trim();
    if (!site || !PatientID || studies?.key === studiesKey) return;
    try {
      const t = await patientTimeline(site, PatientID);
      setStudies({ key: studiesKey, list: t.studies.filter((st) => st.site === site) });
    } catch {
      // Unknown here: no exam to pick; the server names the unknown patient when the request is sent.
      setStudies({ key: studiesKey, list: [] });
    }
  };
  const picked = studies?.key === studiesKey ? studies.list : undefined;
  const pick = (uid: string) => {
    const st = picked?.find((x) => x.StudyInstanceUID === uid);
    setForm({
      ...form, StudyInstanceUID: uid, ...(st ? { AccessionNumber: '' } : {}),
      ...(st && form.modality === '' && st.ModalitiesInStudy[0] ? { modality: st.ModalitiesInStudy[0] } : {}),
      ...(st && form.bodyPart === '' && st.BodyPartsExamined[0] ? { bodyPart: st.BodyPartsExamined[0] } : {}),
    });
  };
  const labels: Record<string, string> = {
    'patient.PatientID': tt.patientId, urgency: tt.urgency, modality: tt.modality, bodyPart: tt.bodyPart, specialty: tt.specialty,
    clinicalContext: tt.clinicalContext, clinicalQuestion: tt.clinicalQuestion, 'requestingPhysician.name': tt.physician,
    proposedProtocol: tt.proposedProtocol, 'StudyInstanceUID or AccessionNumber': `${tt.study} / ${tt.imagesToCome}`, site: tt.site,
  };
  const opt = (v: string) => (v.trim() === '' ? undefined : v.trim());

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(undefined);
    setSending(true);
    try {
      const created = await createRequest({
        ...(opt(form.site) ? { site: form.site.trim() } : {}), patient: { PatientID: form.PatientID.trim() },
        ...(picked && opt(form.StudyInstanceUID) ? { StudyInstanceUID: form.StudyInstanceUID.trim() } : {}),
        ...(opt(form.AccessionNumber) ? { AccessionNumber: form.AccessionNumber.trim() } : {}),
        urgency: form.urgency, modality: form.modality.trim(), bodyPart: form.bodyPart.trim(), specialty: form.specialty.trim(),
        clinicalContext: form.clinicalContext, clinicalQuestion: form.clinicalQuestion,
        requestingPhysician: { name: form.physician.trim(), ...(opt(form.rpps) ? { rpps: form.rpps.trim() } : {}) }, proposedProtocol: form.proposedProtocol,
      });
      navigate(`/tele/request?id=${created.id}`);
    } catch (err) {
      setError(errorText(err, language, labels));
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
          {field('PatientID', tt.patientId, true, { onBlur: () => { void findStudies(); } })}
          <label><span>{tt.study}</span>
            {picked === undefined
              ? <button type="button" data-testid="find-studies" disabled={!form.site.trim() || !form.PatientID.trim()} onClick={() => { void findStudies(); }}>{tt.findStudies}</button>
              : (
                <select name="study" data-testid="study-picker" value={form.StudyInstanceUID} onChange={(e) => pick(e.target.value)}>
                  <option value="">{picked.length > 0 ? tt.imagesToCome : tt.noStudies}</option>
                  {picked.map((st) => (
                    <option key={st.StudyInstanceUID} value={st.StudyInstanceUID}>
                      {[formatDicomDate(st.StudyDate, language), st.ModalitiesInStudy.join('/'), st.StudyDescription, st.AccessionNumber ? `n° ${st.AccessionNumber}` : undefined].filter(Boolean).join(' · ')}
                    </option>
                  ))}
                </select>
              )}
          </label>
          {!(picked && form.StudyInstanceUID) && field('AccessionNumber', tt.imagesToCome, false, { maxLength: 16 })}
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
