import { useCallback, useEffect, useState, type FormEvent } from 'react';
import { getJson, sendJson, type Me } from '../api.ts';
import type { Language } from '../i18n.ts';
import { errorText } from '../errors.ts';

interface Peer { aeTitle: string; site: string; host?: string; port?: number; may: { store: boolean; query: boolean; retrieve: boolean }; territory?: boolean; origin: 'file' | 'api' }

const texts = {
  fr: {
    title: 'Équipements DICOM (modalités, PACS, stations)', ae: 'Titre AE', site: 'Site', address: 'Adresse', may: 'Autorisé à',
    store: 'envoyer des images', query: 'interroger', retrieve: 'récupérer', add: 'Ajouter l\'équipement', host: 'Hôte (facultatif)', port: 'Port',
    origin: 'Déclaré', file: 'fichier de configuration', api: 'ici', remove: 'Retirer', edit: 'Modifier', save: 'Enregistrer les modifications', cancel: 'Annuler',
    updated: (ae: string) => `Équipement ${ae} modifié : actif tout de suite, sur tous les nœuds d'Atrium.`,
    added: (ae: string) => `Équipement ${ae} ajouté : actif tout de suite, sur tous les nœuds d'Atrium, sans redémarrage.`,
    removed: (ae: string) => `Équipement ${ae} retiré.`,
    empty: 'Aucun équipement.',
  },
  en: {
    title: 'DICOM peers (modalities, PACS, workstations)', ae: 'AE title', site: 'Site', address: 'Address', may: 'May',
    store: 'send images', query: 'query', retrieve: 'retrieve', add: 'Add the peer', host: 'Host (optional)', port: 'Port',
    origin: 'Declared in', file: 'configuration file', api: 'here', remove: 'Remove', edit: 'Edit', save: 'Save the changes', cancel: 'Cancel',
    updated: (ae: string) => `Peer ${ae} changed: live at once, on every Atrium node.`,
    added: (ae: string) => `Peer ${ae} added: live at once, on every Atrium node, without a restart.`,
    removed: (ae: string) => `Peer ${ae} removed.`,
    empty: 'No peer.',
  },
};

/** The DICOM peers of the administrator's sites (the configuration file's and those added here), adding and removing one. */
export function PeersAdminPage({ language, me }: { language: Language; me: Me }) {
  const t = texts[language];
  const [data, setData] = useState<{ peers: Peer[] }>();
  const [error, setError] = useState<string>();
  const [notice, setNotice] = useState<string>();
  const blank = { aeTitle: '', site: me.sites[0] ?? '', host: '', port: '', store: true, query: false, retrieve: false };
  const [form, setForm] = useState(blank);
  /** The AE title of the peer being changed (the form then saves it), or undefined (the form adds one). */
  const [editing, setEditing] = useState<string>();
  const load = useCallback(() => { getJson<{ peers: Peer[] }>('/api/admin/peers').then(setData, (e: unknown) => setError(errorText(e, language))); }, []);
  useEffect(load, [load]);
  const mayText = (p: Peer) => [p.may.store && t.store, p.may.query && t.query, p.may.retrieve && t.retrieve].filter(Boolean).join(', ');

  const add = (e: FormEvent) => {
    e.preventDefault();
    setError(undefined);
    const ae = editing ?? form.aeTitle.trim();
    const body = {
      site: form.site.trim(), ...(form.host.trim() ? { host: form.host.trim(), port: Number(form.port) } : {}),
      store: form.store, query: form.query, retrieve: form.retrieve,
    };
    (editing ? sendJson('PUT', `/api/admin/peers/${encodeURIComponent(editing)}`, body) : sendJson('POST', '/api/admin/peers', { aeTitle: ae, ...body }))
      .then(() => { setNotice(editing ? t.updated(ae) : t.added(ae)); setEditing(undefined); setForm({ ...blank, site: form.site }); load(); }, (err: unknown) => { setNotice(undefined); setError(errorText(err, language)); });
  };
  const edit = (p: Peer) => {
    setError(undefined);
    setNotice(undefined);
    setEditing(p.aeTitle);
    setForm({ aeTitle: p.aeTitle, site: p.site, host: p.host ?? '', port: p.port !== undefined ? String(p.port) : '', ...p.may });
  };
  const remove = (ae: string) => {
    setError(undefined);
    sendJson('DELETE', `/api/admin/peers/${encodeURIComponent(ae)}`).then(() => {
      // The row leaves with the notice, not a list request later.
      setData((d) => d && { peers: d.peers.filter((p) => p.aeTitle !== ae) });
      if (editing === ae) { setEditing(undefined); setForm({ ...blank, site: form.site }); }
      setNotice(t.removed(ae));
      load();
    }, (err: unknown) => { setNotice(undefined); setError(errorText(err, language)); });
  };
  const rows = (peers: Peer[]) => peers.map((p) => (
    <tr key={p.aeTitle} data-testid={`peer-${p.aeTitle}`} data-state={p.origin}>
      <td>{p.aeTitle}</td><td>{p.site}</td><td>{p.host ? `${p.host}:${p.port}` : ''}</td><td>{mayText(p)}</td>
      <td>{t[p.origin]}{p.origin === 'api' && <>
        {' '}<button type="button" className="button" data-testid={`edit-peer-${p.aeTitle}`} onClick={() => edit(p)}>{t.edit}</button>
        {' '}<button type="button" className="button" data-testid={`remove-peer-${p.aeTitle}`} onClick={() => remove(p.aeTitle)}>{t.remove}</button>
      </>}</td>
    </tr>
  ));

  return (
    <section className="card wide">
      <h1>{t.title}</h1>
      {error && <p className="error" role="alert" data-testid="peers-error">{error}</p>}
      {notice && <p className="status" data-testid="peers-notice">{notice}</p>}
      {data && data.peers.length === 0 && <p className="status">{t.empty}</p>}
      {data && data.peers.length > 0 && (
        <table data-testid="peers">
          <thead><tr><th>{t.ae}</th><th>{t.site}</th><th>{t.address}</th><th>{t.may}</th><th>{t.origin}</th></tr></thead>
          <tbody>{rows(data.peers)}</tbody>
        </table>
      )}
      {data && (
        <form className="tele-form" onSubmit={add} data-testid="peer-form">
          <label>{t.ae}<input name="aeTitle" value={form.aeTitle} onChange={(e) => setForm({ ...form, aeTitle: e.target.value })} required maxLength={16} readOnly={editing !== undefined} /></label>
          <label>{t.site}<input name="site" value={form.site} onChange={(e) => setForm({ ...form, site: e.target.value })} required maxLength={64} /></label>
          <label>{t.host}<input name="host" value={form.host} onChange={(e) => setForm({ ...form, host: e.target.value })} maxLength={253} /></label>
          <label>{t.port}<input name="port" inputMode="numeric" value={form.port} onChange={(e) => setForm({ ...form, port: e.target.value })} required={form.host.trim() !== ''} /></label>
          {(['store', 'query', 'retrieve'] as const).map((k) => (
            <label key={k} className="inline"><input type="checkbox" name={k} checked={form[k]} onChange={() => setForm({ ...form, [k]: !form[k] })} /> {t[k]}</label>
          ))}
          <button type="submit" className="button primary">{editing ? t.save : t.add}</button>
          {editing && <button type="button" className="button" data-testid="peer-edit-cancel" onClick={() => { setEditing(undefined); setForm({ ...blank, site: form.site }); }}>{t.cancel}</button>}
        </form>
      )}
    </section>
  );
}
