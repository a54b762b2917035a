/**
 * The DICOM tag browser: every element of the image shown (its WADO-RS metadata, sequences
 * unfolded), with its keyword from dcmjs's dictionary (loaded when the browser opens), filtered
 * as one types.
 */
import { useEffect, useMemo, useState } from 'react';
import type { DicomJson } from '../dicom-json.ts';
import type { ViewerTexts } from './texts.ts';

interface Row { depth: number; tag: string; vr: string; value: string }

function valueText(element: DicomJson[string]): string {
  if (element.BulkDataURI) return '(bulk data)';
  if (element.InlineBinary) return `(${Math.floor((element.InlineBinary.length * 3) / 4)} bytes)`;
  return (element.Value ?? []).map((v) => (typeof v === 'object' && v !== null ? ('Alphabetic' in v ? String((v as { Alphabetic: string }).Alphabetic) : '') : String(v))).join('\\');
}

function rowsOf(ds: DicomJson, depth = 0, out: Row[] = []): Row[] {
  for (const t of Object.keys(ds).sort()) {
    const element = ds[t]!;
    if (element.vr === 'SQ') {
      const list = (element.Value ?? []) as DicomJson[];
      out.push({ depth, tag: t, vr: 'SQ', value: `${list.length} item(s)` });
      for (const item of list) rowsOf(item, depth + 1, out);
    } else out.push({ depth, tag: t, vr: element.vr, value: valueText(element).slice(0, 200) });
  }
  return out;
}

export function TagBrowser({ instance, t, onClose }: { instance: DicomJson | undefined; t: ViewerTexts; onClose: () => void }) {
  const [filter, setFilter] = useState('');
  const [names, setNames] = useState<Record<string, string>>({});
  const rows = useMemo(() => (instance ? rowsOf(instance) : []), [instance]);
  useEffect(() => {
    let cancelled = false;
    void import('dcmjs').then(({ default: dcmjs }) => {
      if (cancelled) return;
      const found: Record<string, string> = {};
      for (const r of rows) {
        const name = dcmjs.data.DicomMetaDictionary.dictionary[`(${r.tag.slice(0, 4)},${r.tag.slice(4)})`]?.name;
        if (name) found[r.tag] = name;
      }
      setNames(found);
    });
    return () => { cancelled = true; };
  }, [rows]);
  const wanted = filter.trim().toLowerCase().replace(/[(),]/g, '');
  const shown = wanted ? rows.filter((r) => r.tag.toLowerCase().includes(wanted) || (names[r.tag] ?? '').toLowerCase().includes(wanted) || r.value.toLowerCase().includes(wanted)) : rows;
  return (
    <section className="document-panel tag-browser" data-testid="tag-browser" aria-label={t.tags}>
      <div className="document-bar">
        <strong>{t.tags}</strong>
        <input type="search" value={filter} placeholder={t.tagFilter} aria-label={t.tagFilter} onChange={(e) => setFilter(e.target.value)} data-testid="tag-filter" />
        <button type="button" onClick={onClose} data-testid="tag-browser-close">{t.close}</button>
      </div>
      <table className="tags">
        <tbody>
          {shown.map((r, i) => (
            <tr key={i} data-tag={r.tag}>
              <td style={{ paddingLeft: `${r.depth}rem` }}>({r.tag.slice(0, 4)},{r.tag.slice(4)})</td>
              <td>{names[r.tag] ?? ''}</td>
              <td>{r.vr}</td>
              <td>{r.value}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
