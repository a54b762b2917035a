import { useCallback, useEffect, useState } from 'react';
import { getJson, sendJson, type Me } from '../api.ts';
import type { Language } from '../i18n.ts';
import { errorText } from '../errors.ts';

interface Project {
  id: number; name: string; site?: string; status: 'draft' | 'approved'; createdBy: string; approvedBy?: string;
  options: string[]; criteria: { modalities?: string[]; from?: string; to?: string; reportText?: string };
}
interface ExportRow {
  id: number; status: 'running' | 'done' | 'failed' | 'interrupted'; kind: string; error?: string;
  manifest?: { patients: Array<{ pseudonym: string; objectedSince?: string }>; instances: number; objectingPatientsExcluded: number };
}

const texts = {
  fr: {
    title: 'Recherche', intro: 'Projets de recherche : une cohorte exportée désidentifiée (PS3.15 annexe E), après approbation, sans les patients qui s\'y opposent.',
    newProject: 'Nouveau projet', name: 'Nom', modalities: 'Modalités (séparées par des virgules)', from: 'Du (AAAAMMJJ)', to: 'Au (AAAAMMJJ)', reportText: 'Texte du compte rendu',
    options: { modifiedDates: 'Dates décalées', patient: 'Caractéristiques du patient', device: 'Identité des appareils', descriptors: 'Descriptions nettoyées' } as Record<string, string>,
    create: 'Créer', approve: 'Approuver', exportZip: 'Exporter (ZIP)', download: 'Télécharger', cohort: 'Cohorte', restart: 'Relancer l\'export',
    status: { draft: 'brouillon', approved: 'approuvé', running: 'en cours', done: 'terminé', failed: 'échec', interrupted: 'interrompu (le serveur s\'est arrêté pendant l\'export)' } as Record<string, string>,
    by: 'par', studies: 'examens', patients: 'patients', objects: 'objets', objecting: 'opposants exclus', objectedSince: 'opposition depuis l\'export',
    objections: 'Oppositions à la recherche', PatientID: 'Identifiant patient', site: 'Site', record: 'Enregistrer l\'opposition', recorded: 'Opposition enregistrée.',
    none: 'Aucun projet.',
  },
  en: {
    title: 'Research', intro: 'Research projects: a cohort exported de-identified (PS3.15 Annex E), once approved, without the patients who object.',
    newProject: 'New project', name: 'Name', modalities: 'Modalities (comma separated)', from: 'From (YYYYMMDD)', to: 'To (YYYYMMDD)', reportText: 'Report text',
    options: { modifiedDates: 'Shifted dates', patient: 'Patient characteristics', device: 'Device identity', descriptors: 'Cleaned descriptions' } as Record<string, string>,
    create: 'Create', approve: 'Approve', exportZip: 'Export (ZIP)', download: 'Download', cohort: 'Cohort', restart: 'Restart the export',
    status: { draft: 'draft', approved: 'approved', running: 'running', done: 'done', failed: 'failed', interrupted: 'interrupted (the server stopped during the export)' } as Record<string, string>,
    by: 'by', studies: 'studies', patients: 'patients', objects: 'objects', objecting: 'objecting patients left out', objectedSince: 'objected since the export',
    objections: 'Objections to research', PatientID: 'Patient ID', site: 'Site', record: 'Record the objection', recorded: 'Objection recorded.',
    none: 'No project.',
  },
};

export const doesResearch = (me: Me) => me.kind === 'user' && me.roles.some((r) => ['researcher', 'trusted-third-party', 'site-admin', 'territory-admin'].includes(r));

/** Research projects: define, approve, export de-identified; the objection registry. */
export function ResearchPage({ me, language }: { me: Me; language: Language }) {
  const t = texts[language];
  const [projects, setProjects] = useState<Project[]>();
  const [exports, setExports] = useState<Record<number, ExportRow>>({});
  const [cohorts, setCohorts] = useState<Record<number, { studies: number; patients: number }>>({});
  const [error, setError] = useState<string>();
  const [message, setMessage] = useState<string>();
  const [form, setForm] = useState({ name: '', modalities: '', from: '', to: '', reportText: '', options: [] as string[] });
  const [objection, setObjection] = useState({ PatientID: '', site: me.sites[0] ?? '' });
  const isAdmin = me.roles.includes('site-admin') || me.roles.includes('territory-admin');
  const researches = isAdmin || me.roles.includes('researcher');
  const recordsObjections = isAdmin || me.roles.includes('trusted-third-party');

  const load = useCallback(() => {
    getJson<{ projects: Project[] }>('/api/research/projects').then((r) => {
      setProjects(r.projects);
      // Each approved project's last export, as it reads now (an interrupted one shows so, to restart).
      for (const p of r.projects.filter((x) => x.status === 'approved')) {
        getJson<{ exports: Array<{ id: number }> }>(`/api/research/projects/${p.id}`).then(async (d) => {
          const last = d.exports.at(-1);
          if (last) await follow(p.id, last.id);
        }).catch(() => {});
      }
    }, (e: unknown) => setError(errorText(e, language)));
  }, []);
  useEffect(load, [load]);
  const fail = (e: unknown) => setError(errorText(e, language));

  const create = () => {
    setError(undefined);
    const criteria: Record<string, unknown> = {};
    const modalities = form.modalities.split(',').map((m) => m.trim()).filter((m) => m !== '');
    if (modalities.length > 0) criteria.modalities = modalities;
    if (form.from) criteria.from = form.from;
    if (form.to) criteria.to = form.to;
    if (form.reportText) criteria.reportText = form.reportText;
    sendJson('POST', '/api/research/projects', { name: form.name, options: form.options, criteria }).then(() => {
      setForm({ name: '', modalities: '', from: '', to: '', reportText: '', options: [] });
      load();
    }, fail);
  };
  const approve = (id: number) => sendJson('POST', `/api/research/projects/${id}/approve`).then(load, fail);
  const cohort = (id: number) => getJson<{ studies: number; patients: number }>(`/api/research/projects/${id}/cohort`).then((c) => setCohorts((all) => ({ ...all, [id]: c })), fail);
  /** Reads the export until it is no longer running. */
  async function follow(projectId: number, exportId: number) {
    for (;;) {
      const row = await getJson<ExportRow>(`/api/research/exports/${exportId}`);
      setExports((all) => ({ ...all, [projectId]: row }));
      if (row.status !== 'running') break;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  const runExport = async (id: number) => {
    setError(undefined);
    try {
      const started = await sendJson<{ id: number }>('POST', `/api/research/projects/${id}/exports`, { kind: 'zip' });
      await follow(id, started.id);
    } catch (e) {
      fail(e as Error);
    }
  };
  const restartExport = async (projectId: number, exportId: number) => {
    setError(undefined);
    try {
      await sendJson('POST', `/api/research/exports/${exportId}/restart`);
      await follow(projectId, exportId);
    } catch (e) {
      fail(e as Error);
    }
  };
  const recordObjection = () => {
    setMessage(undefined);
    sendJson('POST', '/api/research/objections', objection).then(() => setMessage(t.recorded), fail);
  };

  return (
    <section className="card wide" data-testid="research">
      <h1>{t.title}</h1>
      <p>{t.intro}</p>
      {error && <p className="error" role="alert">{error}</p>}
      {projects && projects.length === 0 && <p className="status">{t.none}</p>}
      {projects && projects.length > 0 && (
        <table data-testid="research-projects">
          <tbody>
            {projects.map((p) => {
              const ex = exports[p.id];
              return (
                <tr key={p.id} data-testid="research-project" data-name={p.name} data-status={p.status}>
                  <td>{p.name}<br /><small>{p.site} · {t.status[p.status]} · {t.by} {p.createdBy}{p.approvedBy ? ` / ${p.approvedBy}` : ''}</small></td>
                  <td>{p.options.map((o) => t.options[o] ?? o).join(', ')}</td>
                  <td>
                    <button type="button" className="link" onClick={() => void cohort(p.id)}>{t.cohort}</button>
                    {cohorts[p.id] && <span data-testid="cohort"> {cohorts[p.id]!.studies} {t.studies}, {cohorts[p.id]!.patients} {t.patients}</span>}
                  </td>
                  <td>
                    {p.status === 'draft' && isAdmin && p.createdBy !== me.id && <button type="button" data-testid="approve" onClick={() => void approve(p.id)}>{t.approve}</button>}
                    {p.status === 'approved' && researches && <button type="button" data-testid="export" onClick={() => void runExport(p.id)}>{t.exportZip}</button>}
                    {ex && (
                      <div data-testid="export-status" data-status={ex.status}>
                        {t.status[ex.status]}{ex.error && ex.status !== 'interrupted' ? ` : ${ex.error}` : ''}
                        {ex.manifest && <> · {ex.manifest.patients.length} {t.patients}, {ex.manifest.instances} {t.objects}, {ex.manifest.objectingPatientsExcluded} {t.objecting}</>}
                        {ex.status === 'done' && ex.kind === 'zip' && <> · <a href={`/api/research/exports/${ex.id}/download`} data-testid="download">{t.download}</a></>}
                        {(ex.status === 'interrupted' || ex.status === 'failed') && researches && <> · <button type="button" className="link" data-testid="restart-export" onClick={() => void restartExport(p.id, ex.id)}>{t.restart}</button></>}
                      </div>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      {researches && (
        <form onSubmit={(e) => { e.preventDefault(); create(); }} data-testid="new-project">
          <h2>{t.newProject}</h2>
          <label>{t.name} <input required value={form.name} onChange={(e) => setForm({ ...form, name: e.target.value })} data-testid="project-name" /></label>
          <label>{t.modalities} <input value={form.modalities} onChange={(e) => setForm({ ...form, modalities: e.target.value })} data-testid="project-modalities" /></label>
          <label>{t.from} <input value={form.from} pattern="[0-9]{8}" onChange={(e) => setForm({ ...form, from: e.target.value })} /></label>
          <label>{t.to} <input value={form.to} pattern="[0-9]{8}" onChange={(e) => setForm({ ...form, to: e.target.value })} /></label>
          <label>{t.reportText} <input value={form.reportText} onChange={(e) => setForm({ ...form, reportText: e.target.value })} /></label>
          {Object.keys(t.options).map((o) => (
            <label key={o} className="inline"><input type="checkbox" checked={form.options.includes(o)} data-testid={`option-${o}`}
              onChange={(e) => setForm({ ...form, options: e.target.checked ? [...form.options, o] : form.options.filter((x) => x !== o) })} /> {t.options[o]}</label>
          ))}
          <button type="submit" data-testid="create-project">{t.create}</button>
        </form>
      )}
      {recordsObjections && (
        <form onSubmit={(e) => { e.preventDefault(); recordObjection(); }} data-testid="objection">
          <h2>{t.objections}</h2>
          <label>{t.site} <select value={objection.site} onChange={(e) => setObjection({ ...objection, site: e.target.value })}>{me.sites.map((s) => <option key={s} value={s}>{s}</option>)}</select></label>
          <label>{t.PatientID} <input required value={objection.PatientID} onChange={(e) => setObjection({ ...objection, PatientID: e.target.value })} data-testid="objection-patient" /></label>
          <button type="submit" data-testid="record-objection">{t.record}</button>
          {message && <p className="status" role="status">{message}</p>}
        </form>
      )}
    </section>
  );
}
