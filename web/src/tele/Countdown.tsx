import { useEffect, useState } from 'react';
import type { TeleTexts } from './texts.ts';

/** Time left to a deadline, ticking each second (a stroke request's clock is in minutes). */
export function Countdown({ deadlineAt, tt }: { deadlineAt: string; tt: TeleTexts }) {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(timer);
  }, []);
  const left = Math.round((Date.parse(deadlineAt) - now) / 1000);
  const abs = Math.abs(left);
  const h = Math.floor(abs / 3600);
  const m = Math.floor((abs % 3600) / 60);
  const s = abs % 60;
  const text = `${h > 0 ? `${h} h ` : ''}${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}`;
  return <span className={left < 0 ? 'countdown overdue' : left < 600 ? 'countdown near' : 'countdown'} data-testid="countdown">{left < 0 ? `${tt.overdue} ${text}` : text}</span>;
}
