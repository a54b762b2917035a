import { useCallback, useEffect, useState, type FormEvent } from 'react';
import { ApiError, getJson, sendJson, type Me } from '../api.ts';
import type { Language } from '../i18n.ts';
import { errorText } from '../errors.ts';

interface UserSummary { login: string; name: string; roles: string[]; sites: string[]; rpps?: string; oidcBound: boolean; localPassword: boolean; lockedUntil?: string; disabledAt?: string }

const roleNames = {
  fr: { 'territory-admin': 'administrateur du territoire', 'site-admin': 'administrateur de site', radiologist: 'radiologue', technologist: 'manipulateur', 'referring-physician': 'médecin demandeur', patient: 'patient', researcher: 'chercheur', 'trusted-third-party': 'tiers de confiance (recherche)' } as Record<string, string>,
  en: { 'territory-admin': 'territory administrator', 'site-admin': 'site administrator', radiologist: 'radiologist', technologist: 'technologist', 'referring-physician': 'referring physician', patient: 'patient', researcher: 'researcher', 'trusted-third-party': 'trusted third party (research)' } as Record<string, string>,
};

const texts = {
  fr: {
    title: 'Utilisateurs', login: 'Identifiant', name: 'Nom affiché', roles: 'Rôles', sites: 'Sites (codes, séparés par des virgules)', rpps: 'RPPS (11 chiffres, Pro Santé Connect)',
    password: 'Mot de passe local (12 caractères au moins, facultatif)', add: 'Créer l\'utilisateur', added: (l: string) => `Utilisateur ${l} créé.`,
    state: 'État', active: 'actif', disabled: 'désactivé', locked: 'verrouillé', disable: 'Désactiver', enable: 'Réactiver', changed: (l: string) => `Utilisateur ${l} modifié.`,
    taken: (l: string) => `L'identifiant ${l} est déjà pris : choisissez-en un autre.`,
    psc: 'Pro Santé Connect', local: 'mot de passe local', patients: 'Les comptes patients se créent avec `atrium user add --patient`.',
  },
  en: {
    title: 'Users', login: 'Login', name: 'Display name', roles: 'Roles', sites: 'Sites (codes, comma-separated)', rpps: 'RPPS (11 digits, Pro Santé Connect)',
    password: 'Local password (12 characters at least, optional)', add: 'Create the user', added: (l: string) => `User ${l} created.`,
    state: 'State', active: 'active', disabled: 'disabled', locked: 'locked', disable: 'Disable', enable: 'Enable', changed: (l: string) => `User ${l} changed.`,
    taken: (l: string) => `The login ${l} is taken: choose another one.`,
    psc: 'Pro Santé Connect', local: 'local password', patients: 'Patient accounts are made with `atrium user add --patient`.',
  },
};

const professionalRoles = ['site-admin', 'radiologist', 'technologist', 'referring-physician', 'territory-admin', 'researcher', 'trusted-third-party'];

/** The administrators' users: those of their sites (every site for the territory), created, changed, disabled; every change audited by the server. */
export function UsersAdminPage({ language, me }: { language: Language; me: Me }) {
  const t = texts[language];
  const names = roleNames[language];
  const territory = me.roles.includes('territory-admin');
  const [users, setUsers] = useState<UserSummary[]>();
  const [error, setError] = useState<string>();
  const [notice, setNotice] = useState<string>();
  const [form, setForm] = useState({ login: '', name: '', roles: ['radiologist'], sites: me.sites.join(', '), rpps: '', password: '' });
  const load = useCallback(() => { getJson<{ users: UserSummary[] }>('/api/admin/users').then((r) => setUsers(r.users), (e: unknown) => setError(errorText(e, language))); }, []);
  useEffect(load, [load]);
  const failed = (e: unknown) => { setNotice(undefined); setError(errorText(e, language)); };

  const add = (e: FormEvent) => {
    e.preventDefault();
    setError(undefined);
    const sites = form.sites.split(',').map((s) => s.trim()).filter((s) => s !== '');
    sendJson('POST', '/api/admin/users', {
      login: form.login.trim(), name: form.name.trim(), roles: form.roles, sites,
      ...(form.rpps.trim() ? { rpps: form.rpps.trim() } : {}), ...(form.password ? { password: form.password } : {}),
    }).then(() => { setNotice(t.added(form.login.trim())); setForm({ ...form, login: '', name: '', rpps: '', password: '' }); load(); }, (err: unknown) => {
      // A login already used: said with the login typed, in the user's language.
      if (err instanceof ApiError && err.code === 'username-taken') { setNotice(undefined); setError(t.taken(form.login.trim())); } else failed(err);
    });
  };
  const setDisabled = (login: string, disabled: boolean) => {
    setError(undefined);
    sendJson('PUT', `/api/admin/users/${encodeURIComponent(login)}`, { disabled }).then(() => { setNotice(t.changed(login)); load(); }, failed);
  };
  const toggleRole = (r: string) => setForm({ ...form, roles: form.roles.includes(r) ? form.roles.filter((x) => x !== r) : [...form.roles, r] });

  return (
    <section className="card wide">
      <h1>{t.title}</h1>
      {error && <p className="error" role="alert" data-testid="users-error">{error}</p>}
      {notice && <p className="status" data-testid="users-notice">{notice}</p>}
      <form className="tele-form" onSubmit={add} data-testid="user-form">
        <label>{t.login}<input name="login" value={form.login} onChange={(e) => setForm({ ...form, login: e.target.value })} required maxLength={64} /></label>
        <label>{t.name}<input name="name" value={form.name} onChange={(e) => setForm({ ...form, name: e.target.value })} required maxLength={256} /></label>
        <fieldset><legend>{t.roles}</legend>
          {professionalRoles.filter((r) => territory || r !== 'territory-admin').map((r) => (
            <label key={r} className="inline"><input type="checkbox" name={`role-${r}`} checked={form.roles.includes(r)} onChange={() => toggleRole(r)} /> {names[r]}</label>
          ))}
        </fieldset>
        <label>{t.sites}<input name="sites" value={form.sites} onChange={(e) => setForm({ ...form, sites: e.target.value })} /></label>
        <label>{t.rpps}<input name="rpps" inputMode="numeric" pattern="[0-9]{11}" value={form.rpps} onChange={(e) => setForm({ ...form, rpps: e.target.value })} /></label>
        <label>{t.password}<input name="password" type="password" autoComplete="new-password" value={form.password} onChange={(e) => setForm({ ...form, password: e.target.value })} /></label>
        <button type="submit" className="button primary">{t.add}</button>
      </form>
      <p className="muted">{t.patients}</p>
      {users && (
        <table data-testid="users">
          <thead><tr><th>{t.login}</th><th>{t.name}</th><th>{t.roles}</th><th>Sites</th><th>{t.state}</th><th /></tr></thead>
          <tbody>
            {users.map((u) => (
              <tr key={u.login} data-testid={`user-${u.login}`} data-state={u.disabledAt ? 'disabled' : 'active'}>
                <td>{u.login}</td><td>{u.name}</td><td>{u.roles.map((r) => names[r] ?? r).join(', ')}</td><td>{u.sites.join(', ')}</td>
                <td>{u.disabledAt ? t.disabled : u.lockedUntil && Date.parse(u.lockedUntil) > Date.now() ? t.locked : t.active}{' · '}{[u.oidcBound || u.rpps ? t.psc : '', u.localPassword ? t.local : ''].filter(Boolean).join(', ')}</td>
                <td>{u.login !== me.id && !u.roles.includes('patient') && (u.disabledAt
                  ? <button type="button" className="button" data-testid="enable" onClick={() => setDisabled(u.login, false)}>{t.enable}</button>
                  : <button type="button" className="button" data-testid="disable" onClick={() => setDisabled(u.login, true)}>{t.disable}</button>)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
