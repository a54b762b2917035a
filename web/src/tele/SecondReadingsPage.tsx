import { useCallback, useEffect, useState } from 'react';
import type { Language } from '../i18n.ts';
import { navigate } from '../router.ts';
import { answerSecondReading, secondReadingsAsked, type SecondReading } from './tele-api.ts';
import { formatDateTime, teleTexts } from './texts.ts';
import { errorText } from '../errors.ts';

/** The second readings asked of the calling expert: open ones first, each answered once. */
export function SecondReadingsPage({ language }: { language: Language }) {
  const tt = teleTexts[language];
  const [list, setList] = useState<SecondReading[]>();
  const [error, setError] = useState<string>();
  const [answers, setAnswers] = useState<Record<number, { findings: string; conclusion: string; agreement: string }>>({});
  const load = useCallback(() => { secondReadingsAsked().then(setList, (e: unknown) => setError(errorText(e, language))); }, [language]);
  useEffect(load, [load]);
  const answerOf = (id: number) => answers[id] ?? { findings: '', conclusion: '', agreement: 'agree' };
  const set = (id: number, k: 'findings' | 'conclusion' | 'agreement', v: string) => setAnswers({ ...answers, [id]: { ...answerOf(id), [k]: v } });

  return (
    <section className="card">
      <h1>{tt.secondReadings}</h1>
      {error && <p className="error" role="alert">{error}</p>}
      {list && list.length === 0 && <p className="status">{tt.empty}</p>}
      {list?.map((s) => (
        <article key={s.id} className="second-reading" data-testid={`second-reading-${s.id}`}>
          <h2>#{s.id} · {s.specialty} · {tt.askedBy} {s.askedBy} · {formatDateTime(s.createdAt, language)}</h2>
          <p>{tt.question} : {s.question}</p>
          <button type="button" onClick={() => navigate(`/tele/request?id=${s.requestId}`)}>{tt.request} {s.requestId}</button>
          {s.status === 'answered'
            ? <p data-testid="answered">{tt.answered} ({tt.agreementNames[s.agreement ?? '']}) : {s.conclusion}</p>
            : (
              <div className="tele-form">
                <label>{tt.findings}<textarea name="findings" rows={3} value={answerOf(s.id).findings} onChange={(e) => set(s.id, 'findings', e.target.value)} /></label>
                <label>{tt.conclusion}<textarea name="conclusion" rows={2} value={answerOf(s.id).conclusion} onChange={(e) => set(s.id, 'conclusion', e.target.value)} /></label>
                <label>{tt.agreement}
                  <select name="agreement" value={answerOf(s.id).agreement} onChange={(e) => set(s.id, 'agreement', e.target.value)}>
                    {(['agree', 'partial', 'disagree'] as const).map((a) => <option key={a} value={a}>{tt.agreementNames[a]}</option>)}
                  </select>
                </label>
                <button type="button" className="button primary" data-testid="answer" onClick={() => {
                  setError(undefined);
                  const a = answerOf(s.id);
                  answerSecondReading(s.id, { ...(a.findings.trim() ? { findings: a.findings } : {}), conclusion: a.conclusion, agreement: a.agreement }).then(load, (e: unknown) => setError(errorText(e, language)));
                }}>{tt.answer}</button>
              </div>
            )}
        </article>
      ))}
    </section>
  );
}
