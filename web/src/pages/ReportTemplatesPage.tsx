import { useCallback, useEffect, useState, type FormEvent } from 'react';
import { getJson, sendJson } from '../api.ts';
import type { Language } from '../i18n.ts';
import { errorText } from '../errors.ts';

interface Field { name: string; label?: string; required?: boolean }
interface Template { code: string; name: string; modality?: string; bodyPart?: string; fields: Field[]; findings: string; updatedBy?: string; updatedAt?: string }

const texts = {
  fr: {
    title: 'Modèles de compte rendu', empty: 'Aucun modèle.', edit: 'Modifier', new: 'Nouveau modèle',
    code: 'Code (minuscules, chiffres, -)', name: 'Nom', modality: 'Modalité (facultatif)', bodyPart: 'Région (facultatif)',
    fields: 'Rubriques', fieldName: 'Nom', fieldLabel: 'Libellé', required: 'obligatoire', addField: 'Ajouter une rubrique', remove: 'Retirer',
    findings: 'Trame du compte rendu', save: 'Enregistrer', saved: (c: string) => `Modèle ${c} enregistré.`, updated: (by: string, at: string) => `modifié par ${by} le ${at}`,
  },
  en: {
    title: 'Report templates', empty: 'No template.', edit: 'Edit', new: 'New template',
    code: 'Code (lower-case letters, digits, -)', name: 'Name', modality: 'Modality (optional)', bodyPart: 'Body part (optional)',
    fields: 'Sections', fieldName: 'Name', fieldLabel: 'Label', required: 'required', addField: 'Add a section', remove: 'Remove',
    findings: 'Findings skeleton', save: 'Save', saved: (c: string) => `Template ${c} saved.`, updated: (by: string, at: string) => `changed by ${by} on ${at}`,
  },
};

const blank: Template = { code: '', name: '', modality: '', bodyPart: '', fields: [{ name: 'conclusion', label: '', required: true }], findings: '' };

/** The territory's report templates (teleradiology), edited by administrators; each save is audited by the server. */
export function ReportTemplatesPage({ language }: { language: Language }) {
  const t = texts[language];
  const [templates, setTemplates] = useState<Template[]>();
  const [form, setForm] = useState<Template>(blank);
  const [editing, setEditing] = useState(false);
  const [error, setError] = useState<string>();
  const [notice, setNotice] = useState<string>();
  const load = useCallback(() => { getJson<Template[]>('/api/teleradiology/templates').then(setTemplates, (e: unknown) => setError(errorText(e, language))); }, []);
  useEffect(load, [load]);

  const save = (e: FormEvent) => {
    e.preventDefault();
    setError(undefined);
    const code = form.code.trim();
    sendJson('PUT', `/api/teleradiology/templates/${encodeURIComponent(code)}`, {
      name: form.name, ...(form.modality?.trim() ? { modality: form.modality.trim() } : {}), ...(form.bodyPart?.trim() ? { bodyPart: form.bodyPart.trim() } : {}),
      fields: form.fields.filter((f) => f.name.trim() !== '').map((f) => ({ name: f.name.trim(), ...(f.label?.trim() ? { label: f.label.trim() } : {}), required: f.required === true })),
      findings: form.findings,
    }).then(() => { setNotice(t.saved(code)); setEditing(false); load(); }, (err: unknown) => { setNotice(undefined); setError(errorText(err, language)); });
  };
  const setField = (i: number, f: Field) => setForm({ ...form, fields: form.fields.map((x, j) => (j === i ? f : x)) });

  return (
    <section className="card wide">
      <h1>{t.title}</h1>
      {error && <p className="error" role="alert" data-testid="templates-error">{error}</p>}
      {notice && <p className="status" data-testid="templates-notice">{notice}</p>}
      {templates && templates.length === 0 && <p className="status">{t.empty}</p>}
      {templates && templates.length > 0 && (
        <ul data-testid="templates">
          {templates.map((tp) => (
            <li key={tp.code} data-testid={`template-${tp.code}`}>
              <strong>{tp.name}</strong> <span className="muted">{tp.code}{tp.modality ? ` · ${tp.modality}` : ''}{tp.bodyPart ? ` · ${tp.bodyPart}` : ''} · {tp.fields.map((f) => f.label ?? f.name).join(', ')}
                {tp.updatedAt ? ` · ${t.updated(tp.updatedBy ?? '', new Date(tp.updatedAt).toLocaleString(language === 'fr' ? 'fr-FR' : 'en-GB'))}` : ''}</span>{' '}
              <button type="button" className="button" data-testid="edit-template" onClick={() => { setForm({ ...blank, ...tp }); setEditing(true); }}>{t.edit}</button>
            </li>
          ))}
        </ul>
      )}
      {!editing && <button type="button" className="button" data-testid="new-template" onClick={() => { setForm(blank); setEditing(true); }}>{t.new}</button>}
      {editing && (
        <form className="tele-form" onSubmit={save} data-testid="template-form">
          <label>{t.code}<input name="code" value={form.code} onChange={(e) => setForm({ ...form, code: e.target.value })} required pattern="[a-z0-9][a-z0-9\-]{0,63}" /></label>
          <label>{t.name}<input name="name" value={form.name} onChange={(e) => setForm({ ...form, name: e.target.value })} required maxLength={256} /></label>
          <label>{t.modality}<input name="modality" value={form.modality ?? ''} onChange={(e) => setForm({ ...form, modality: e.target.value })} maxLength={16} /></label>
          <label>{t.bodyPart}<input name="bodyPart" value={form.bodyPart ?? ''} onChange={(e) => setForm({ ...form, bodyPart: e.target.value })} maxLength={64} /></label>
          <fieldset><legend>{t.fields}</legend>
            {form.fields.map((f, i) => (
              <div key={i} className="inline" data-testid="template-field">
                <input aria-label={t.fieldName} name={`field-name-${i}`} value={f.name} onChange={(e) => setField(i, { ...f, name: e.target.value })} maxLength={64} placeholder={t.fieldName} />
                <input aria-label={t.fieldLabel} name={`field-label-${i}`} value={f.label ?? ''} onChange={(e) => setField(i, { ...f, label: e.target.value })} maxLength={256} placeholder={t.fieldLabel} />
                <label className="inline"><input type="checkbox" checked={f.required === true} onChange={() => setField(i, { ...f, required: !f.required })} /> {t.required}</label>
                <button type="button" className="button" onClick={() => setForm({ ...form, fields: form.fields.filter((_, j) => j !== i) })}>{t.remove}</button>
              </div>
            ))}
            <button type="button" className="button" data-testid="add-field" onClick={() => setForm({ ...form, fields: [...form.fields, { name: '', label: '' }] })}>{t.addField}</button>
          </fieldset>
          <label>{t.findings}<textarea name="findings" rows={6} value={form.findings} onChange={(e) => setForm({ ...form, findings: e.target.value })} /></label>
          <button type="submit" className="button primary">{t.save}</button>
        </form>
      )}
    </section>
  );
}
