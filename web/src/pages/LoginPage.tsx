import { useEffect, useState, type FormEvent } from 'react';
import { loginLocal, loginMethods, proSanteConnectUrl, type Me } from '../api.ts';
import { useTexts } from '../i18n.ts';

/** Pro Santé Connect for professionals; local accounts (patients, staff without a card). */
export function LoginPage({ onLoggedIn }: { onLoggedIn: (me: Me) => void }) {
  const t = useTexts();
  const [login, setLogin] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string>();
  // Shown once the platform says it has Pro Santé Connect: without OIDC the button led to a 404.
  const [proSanteConnect, setProSanteConnect] = useState(false);
  useEffect(() => {
    loginMethods().then((m) => setProSanteConnect(m.proSanteConnect), () => setProSanteConnect(false));
  }, []);
  const returnTo = window.location.pathname + window.location.search;

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(undefined);
    try {
      onLoggedIn(await loginLocal(login, password));
    } catch {
      setError(t.loginRefused);
    }
  };

  return (
    <section className="card narrow">
      <h1>{t.loginTitle}</h1>
      {proSanteConnect && <>
        <a className="button primary psc" href={proSanteConnectUrl(returnTo.startsWith('/app') ? returnTo : '/app/')} data-testid="psc-login">{t.proSanteConnect}</a>
        <p className="separator">{t.or}</p>
      </>}
      <form onSubmit={(e) => { void submit(e); }}>
        <label>{t.loginName}<input name="login" autoComplete="username" value={login} onChange={(e) => setLogin(e.target.value)} required /></label>
        <label>{t.password}<input name="password" type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} required /></label>
        {error && <p className="error" role="alert">{error}</p>}
        <button type="submit" className="button">{t.signIn}</button>
      </form>
    </section>
  );
}
