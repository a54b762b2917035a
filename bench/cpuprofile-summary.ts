/**
 * Summarises a V8 .cpuprofile (node --cpu-prof): self time by function and by file, the busy
 * (non-idle) time of the thread, and with --objects N, the µs of that thread per object.
 *
 *   node --import tsx bench/cpuprofile-summary.ts /tmp/prof/CPU.*.cpuprofile --objects 200 [--top 30]
 */
import { readFileSync } from 'node:fs';

interface ProfileNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
interface Profile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number }

const args = process.argv.slice(2);
const option = (name: string) => { const i = args.indexOf(name); return i >= 0 ? Number(args.splice(i, 2)[1]) : undefined; };
const objects = option('--objects');
const top = option('--top') ?? 25;
const windowAt = args.indexOf('--window');
const windowFunction = windowAt >= 0 ? args.splice(windowAt, 2)[1]! : 'ingestInstance';

for (const file of args) {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  // Only the window from the first to the last sample under a function named like `window`
  // (ingestInstance by default): start-up and shutdown are left out.
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const under = (id: number): boolean => {
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) if (byId.get(at)!.callFrame.functionName === windowFunction) return true;
    return false;
  };
  const inWindow = profile.samples.map(under);
  const first = inWindow.indexOf(true), last = inWindow.lastIndexOf(true);
  const self = new Map<number, number>();
  for (let i = Math.max(first, 0); i <= (first < 0 ? profile.samples.length - 1 : last); i++) {
    const id = profile.samples[i]!;
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i + 1] ?? 0));
  }
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  let total = 0, idle = 0;
  for (const [id, us] of self) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    total += us;
    if (functionName === '(idle)') { idle += us; continue; }
    const where = shortUrl(url);
    const fn = `${functionName || '(anonymous)'} ${where}${url ? `:${lineNumber + 1}` : ''}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
    byFile.set(where || functionName, (byFile.get(where || functionName) ?? 0) + us);
  }
  const busy = total - idle;
  console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled, busy ${(busy / 1e6).toFixed(2)} s` +
    (objects ? `, ${(busy / objects).toFixed(0)} µs of this thread per object (${objects})` : ''));
  const print = (title: string, m: Map<string, number>) => {
    console.log(`  ${title} (share of busy time${objects ? ', µs per object' : ''}):`);
    for (const [k, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      console.log(`    ${(100 * us / busy).toFixed(1).padStart(5)}%${objects ? ` ${(us / objects).toFixed(0).padStart(6)}` : ''}  ${k}`);
    }
  };
  print('by file', byFile);
  print('by function', byFunction);
}

function shortUrl(url: string): string {
  if (!url) return '';
  const m = /\/(dist|src|node_modules)\/(.*)$/.exec(url);
  if (m) return m[1] === 'node_modules' ? `nm:${m[2]!.split('/').slice(0, 2).join('/')}` : m[2]!;
  return url.replace(/^file:\/\//, '');
}
