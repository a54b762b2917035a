/**
 * A DICOM waveform (PS3.3 C.10.9: 12-lead ECG, haemodynamic, other signals) drawn as traces:
 * each multiplex group of the Waveform Sequence, each channel a row with its label (Channel
 * Source), scaled by its sensitivity, over the group's duration. Signed or unsigned 8/16-bit
 * samples, interleaved by channel, from the metadata's inline bytes or its bulk data.
 */
import { useEffect, useState } from 'react';
import { num, str, type DicomJson } from '../dicom-json.ts';
import { items } from './documents.tsx';

interface Channel { label: string; samples: Float64Array; unit: string }
interface Group { frequency: number; channels: Channel[] }

const codeMeaning = (ds: DicomJson, t: string) => {
  const c = items(ds, t)[0];
  return c ? str(c, '00080104') ?? str(c, '00080100') : undefined;
};

async function bytesOf(element: DicomJson[string] | undefined, bulkUrl: string): Promise<ArrayBuffer> {
  if (element?.InlineBinary) return Uint8Array.from(atob(element.InlineBinary), (c) => c.charCodeAt(0)).buffer;
  const r = await fetch(bulkUrl, { headers: { accept: 'application/octet-stream' }, credentials: 'same-origin' });
  if (!r.ok) throw new Error(`waveform bulk data: ${r.status}`);
  const type = r.headers.get('content-type') ?? '';
  const body = await r.arrayBuffer();
  if (!type.startsWith('multipart/')) return body;
  // One part: its bytes between the part's headers and the closing boundary.
  const bytes = new Uint8Array(body);
  const text = new TextDecoder('latin1').decode(bytes);
  const start = text.indexOf('\r\n\r\n') + 4;
  const end = text.lastIndexOf('\r\n--');
  return body.slice(start, end > start ? end : undefined);
}

async function groupsOf(instance: DicomJson, instanceUrl: string): Promise<Group[]> {
  const groups: Group[] = [];
  const sequence = items(instance, '54000100');
  for (let g = 0; g < sequence.length; g++) {
    const item = sequence[g]!;
    const channels = num(item, '003A0005') ?? 0;
    const samples = num(item, '003A0010') ?? 0;
    const bits = num(item, '54001004') ?? 16;
    const interpretation = str(item, '54001006') ?? 'SS';
    if (channels === 0 || samples === 0) continue;
    const buffer = await bytesOf(item['54001010'], `${instanceUrl}/bulk/54000100.${g}.54001010`);
    const view = new DataView(buffer);
    const read = (i: number) => {
      if (bits === 8) return interpretation === 'SB' ? view.getInt8(i) : view.getUint8(i);
      return interpretation === 'US' ? view.getUint16(i * 2, true) : view.getInt16(i * 2, true);
    };
    const definitions = items(item, '003A0200');
    const list: Channel[] = [];
    for (let c = 0; c < channels; c++) {
      const d = definitions[c] ?? {};
      const sensitivity = num(d, '003A0210') ?? 1;
      const correction = num(d, '003A0212') ?? 1;
      const baseline = num(d, '003A0213') ?? 0;
      const data = new Float64Array(samples);
      for (let s = 0; s < samples && (s * channels + c) * (bits / 8) < buffer.byteLength; s++) data[s] = (read(s * channels + c) + baseline) * sensitivity * correction;
      list.push({ label: codeMeaning(d, '003A0208') ?? str(d, '003A0203') ?? `${c + 1}`, samples: data, unit: codeMeaning(d, '003A0211') ?? '' });
    }
    groups.push({ frequency: num(item, '003A001A') ?? 1, channels: list });
  }
  return groups;
}

/** The traces, or `fallback` (a clear message) when the object holds none that can be read. */
export function Waveform({ instance, instanceUrl, fallback }: { instance: DicomJson; instanceUrl: string; fallback: string }) {
  const [groups, setGroups] = useState<Group[] | 'failed'>();
  useEffect(() => {
    let cancelled = false;
    groupsOf(instance, instanceUrl).then((g) => { if (!cancelled) setGroups(g.length > 0 ? g : 'failed'); }, () => { if (!cancelled) setGroups('failed'); });
    return () => { cancelled = true; };
  }, [instanceUrl]);
  if (groups === 'failed') return <p className="status" role="status" data-testid="document-waveform">{fallback}</p>;
  if (!groups) return null;
  const width = 1000;
  const row = 60;
  return (
    <div className="waveform" data-testid="waveform">
      {groups.map((group, g) => {
        const seconds = (group.channels[0]?.samples.length ?? 0) / group.frequency;
        return (
          <figure key={g}>
            <figcaption className="muted">{group.channels.length} × {seconds.toFixed(1)} s · {group.frequency} Hz</figcaption>
            <svg viewBox={`0 0 ${width} ${row * group.channels.length}`} width="100%" role="img" aria-label={group.channels.map((c) => c.label).join(', ')}>
              {group.channels.map((channel, c) => {
                let min = Infinity, max = -Infinity;
                for (const v of channel.samples) { if (v < min) min = v; if (v > max) max = v; }
                const span = max - min || 1;
                const step = Math.max(1, Math.floor(channel.samples.length / 2000));
                const points: string[] = [];
                for (let s = 0; s < channel.samples.length; s += step) {
                  points.push(`${((s / channel.samples.length) * width).toFixed(1)},${(c * row + row - 6 - ((channel.samples[s]! - min) / span) * (row - 12)).toFixed(1)}`);
                }
                return (
                  <g key={c} data-testid="waveform-channel">
                    <text x={4} y={c * row + 14} fontSize={12} fill="#555">{channel.label}</text>
                    <polyline points={points.join(' ')} fill="none" stroke="#b00020" strokeWidth={1} />
                  </g>
                );
              })}
            </svg>
          </figure>
        );
      })}
    </div>
  );
}
