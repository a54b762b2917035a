import { useEffect, useState, type FormEvent } from 'react';
import { postJson } from '../api.ts';
import { useTexts } from '../i18n.ts';
import { navigate, viewerPath } from '../router.ts';

/**
 * A share link, <base>/share#<token>: the token stays in the fragment (never sent in a URL,
 * never in a log) and is posted to /share/open, with the PIN when the link has one.
 */
export function SharePage({ onOpened }: { onOpened: () => void }) {
  const t = useTexts();
  const [token] = useState(() => decodeURIComponent(window.location.hash.replace(/^#/, '')));
  const [pin, setPin] = useState('');
  const [needsPin, setNeedsPin] = useState(false);
  const [message, setMessage] = useState<string>();

  const open = async (withPin?: string) => {
    const r = await postJson<{ link?: { StudyInstanceUID?: string } }>('/share/open', { token, ...(withPin ? { pin: withPin } : {}) });
    if (r.status === 200) {
      // The fragment goes: the session cookie now stands for the link.
      window.history.replaceState(null, '', '/app/share');
      onOpened();
      const study = r.body?.link?.StudyInstanceUID;
      navigate(study ? viewerPath(study) : '/');
      return;
    }
    if (r.status === 401) {
      setMessage(withPin ? t.sharePinWrong : undefined);
      setNeedsPin(true);
    } else setMessage(r.status === 423 ? t.shareLocked : t.shareGone);
  };

  useEffect(() => {
    if (token) void open();
    else setMessage(t.shareNoToken);
    // Once, on arrival.
  }, []);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    void open(pin);
  };

  return (
    <section className="card narrow">
      <h1>{t.shareTitle}</h1>
      {needsPin && (
        <form onSubmit={submit}>
          <label>{t.sharePin}<input name="pin" inputMode="numeric" autoComplete="one-time-code" value={pin} onChange={(e) => setPin(e.target.value)} autoFocus required /></label>
          <button type="submit" className="button primary">{t.shareOpen}</button>
        </form>
      )}
      {message && <p className="error" role="alert">{message}</p>}
    </section>
  );
}
