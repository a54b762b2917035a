import { fmt, MB, MiB } from './measure.ts';

/** What the DIMSE bench measured, and its rendering as markdown (bench/out/dimse-latest.md). */

export interface StoreRow {
  /** storescu processes at once, one association each. */
  associations: number;
  /** The client that sent (storescu; later Atrium's own SCU). */
  client: string;
  instances: number;
  bytes: number;
  /** Wall time of each round, first storescu start to last exit. */
  roundsMs: number[];
  /** Instances the server holds after the round (the lowest over the rounds). */
  stored: number;
  /** Instances storescu reported as failed (the highest over the rounds). */
  failed: number;
  error?: string;
  peakRss: number;
  /** Server CPU time (user + system) of the median round. */
  serverCpuMs: number;
}

export interface RetrieveRow {
  instances: number;
  bytes: number;
  runsMs: number[];
  completed: number;
  failed: number;
  error?: string;
  peakRss?: number;
}

export interface FindRow {
  name: string;
  /** One query, e.g. `PatientID=LP0021868`. */
  example: string;
  /** "process": one findscu per query (start-up and association included); "association": many queries on one association. */
  mode: 'process' | 'association';
  n: number;
  p50: number;
  p95: number;
  max: number;
  medianResults: number;
  errors: number;
  error?: string;
}

export interface DimseServerResults {
  name: string;
  version?: string;
  store: StoreRow[];
  move?: RetrieveRow;
  get?: RetrieveRow;
  findSmall: FindRow[];
  /** Why a step did not run or was cut short. */
  notes: string[];
}

export interface DimseResults {
  date: string;
  quick: boolean;
  seed: number;
  commit: string;
  /** loadAverage: the 1, 5 and 15 minute load when the run started (others' work on the machine weighs on both servers). */
  machine: { cpus: number; cpuModel: string; memory: string; node: string; loadAverage?: number[]; loadAverageMax?: number };
  dcmtk: string;
  maxPduLength: number;
  corpus: { instances: number; bytes: number; series: number; slicesPerSeries: number };
  servers: DimseServerResults[];
  findLarge?: { server: string; studies: number; series: number; instances: number; patients: number; rows: FindRow[]; notes: string[] };
  notes: string[];
  durationSeconds?: number;
}

/** The middle value; the mean of the two middle ones for an even count. */
export function middle(values: number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const h = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
}

const perSecond = (n: number, ms: number) => n / (ms / 1000);
const mbps = (bytes: number, ms: number) => bytes / MB / (ms / 1000);
const mib = (bytes: number | undefined) => (bytes === undefined || !Number.isFinite(bytes) || bytes === 0 ? 'n/a' : `${(bytes / MiB).toFixed(0)} MiB`);

function ratio(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return 'n/a';
  return `${(a / b).toFixed(2)}x`;
}

function table(head: string[], rows: string[][]): string {
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

function retrieveMBps(r: RetrieveRow | undefined): number | undefined {
  return r && r.runsMs.length ? mbps(r.bytes, middle(r.runsMs)) : undefined;
}

export function renderDimseReport(r: DimseResults): string {
  const atrium = r.servers.find((s) => s.name === 'Atrium');
  const orthanc = r.servers.find((s) => s.name === 'Orthanc');
  const out: string[] = [];
  out.push(`# DIMSE benchmark${r.quick ? ' (quick)' : ''}`, '');
  const load = r.machine.loadAverage
    ? ` (load average at start ${r.machine.loadAverage.map((l) => l.toFixed(2)).join(', ')}` +
      `${r.machine.loadAverageMax !== undefined ? `; highest one-minute load during the run ${r.machine.loadAverageMax.toFixed(2)}` : ''})`
    : '';
  out.push(`${r.date}; commit ${r.commit}; ${r.machine.cpus} x ${r.machine.cpuModel}${load}, ${r.machine.memory}; Node ${r.machine.node}; ` +
    `${r.dcmtk}; Orthanc ${orthanc?.version ?? 'not run'}; run took ${fmt(r.durationSeconds, 0)} s.`, '');
  out.push(`Corpus: ${r.corpus.series} CT series x ${r.corpus.slicesPerSeries} slices of 512x512 16-bit, explicit VR little endian: ` +
    `${r.corpus.instances} files, ${fmt(r.corpus.bytes / MB)} MB. Max PDU ${r.maxPduLength} on every side (Orthanc's and DCMTK's ceiling). ` +
    'DCMTK tools and Orthanc run with TCP_NODELAY=1. Times are wall times of the DCMTK processes, start-up included.', '');

  out.push('## C-STORE ingest (storescu, every server empty at the start of each round)', '');
  const rows: string[][] = [];
  for (const row of atrium?.store ?? orthanc?.store ?? []) {
    const a = atrium?.store.find((x) => x.associations === row.associations && x.client === row.client);
    const o = orthanc?.store.find((x) => x.associations === row.associations && x.client === row.client);
    const am = a ? middle(a.roundsMs) : undefined, om = o ? middle(o.roundsMs) : undefined;
    rows.push([
      `${row.client}, ${row.associations} association${row.associations > 1 ? 's' : ''}`, String(row.instances),
      a && am ? fmt(perSecond(a.instances, am)) : 'n/a', a && am ? fmt(mbps(a.bytes, am)) : 'n/a',
      o && om ? fmt(perSecond(o.instances, om)) : 'n/a', o && om ? fmt(mbps(o.bytes, om)) : 'n/a',
      a && o && am && om ? ratio(om, am) : 'n/a',
      String(a?.roundsMs.length ?? o?.roundsMs.length ?? 0),
    ]);
  }
  out.push(table(['sender', 'instances', 'Atrium inst/s', 'Atrium MB/s', 'Orthanc inst/s', 'Orthanc MB/s', 'Atrium/Orthanc', 'rounds (median)'], rows), '');
  const detail: string[][] = [];
  for (const s of r.servers) {
    for (const row of s.store) {
      detail.push([
        `${s.name}, ${row.client}, ${row.associations} assoc.`,
        row.roundsMs.map((ms) => fmt(mbps(row.bytes, ms))).join(', '),
        `${row.stored} / ${row.instances}${row.failed ? ` (${row.failed} failed)` : ''}`,
        fmt(row.serverCpuMs / 1000), mib(row.peakRss),
      ]);
    }
  }
  out.push(table(['server', 'MB/s of each round', 'stored / sent', 'server CPU (s, median round)', 'server peak RSS'], detail), '');
  const storeErrors = r.servers.flatMap((s) => s.store.filter((x) => x.error).map((x) => `${s.name} (${x.associations} assoc.): ${x.error}`));
  if (storeErrors.length) out.push(`Errors: ${storeErrors.join('; ')}`, '');

  out.push('## C-MOVE and C-GET of one series', '');
  const retrieveRow = (label: string, pick: (s: DimseServerResults) => RetrieveRow | undefined): string[] => {
    const a = atrium ? pick(atrium) : undefined, o = orthanc ? pick(orthanc) : undefined;
    const d = a ?? o;
    return [
      `${label}, ${d?.instances ?? '?'} instances, ${d ? fmt(d.bytes / MB) : '?'} MB`,
      a ? `${fmt(retrieveMBps(a))} (${a.runsMs.map((ms) => fmt(mbps(a.bytes, ms), 0)).join(', ')})` : 'n/a',
      o ? `${fmt(retrieveMBps(o))} (${o.runsMs.map((ms) => fmt(mbps(o.bytes, ms), 0)).join(', ')})` : 'n/a',
      ratio(retrieveMBps(a), retrieveMBps(o)),
      `${a ? `${a.completed}${a.failed ? `, ${a.failed} failed` : ''}` : 'n/a'} / ${o ? `${o.completed}${o.failed ? `, ${o.failed} failed` : ''}` : 'n/a'}`,
      `${mib(a?.peakRss)} / ${mib(o?.peakRss)}`,
    ];
  };
  out.push(table(['retrieve', 'Atrium MB/s (median; each run)', 'Orthanc MB/s (median; each run)', 'Atrium/Orthanc', 'sub-operations completed Atrium / Orthanc', 'peak RSS Atrium / Orthanc'], [
    retrieveRow('C-MOVE to storescp (movescu)', (s) => s.move),
    retrieveRow('C-GET (getscu)', (s) => s.get),
  ]), '');
  const retrieveErrors = r.servers.flatMap((s) => [s.move, s.get].filter((x) => x?.error).map((x) => `${s.name}: ${x!.error}`));
  if (retrieveErrors.length) out.push(`Errors: ${retrieveErrors.join('; ')}`, '');

  const findTable = (rows: FindRow[], other?: FindRow[]) => table(
    other ? ['query', 'client', 'Atrium p50 / p95 (ms)', 'Orthanc p50 / p95 (ms)', 'Orthanc p95 / Atrium p95', 'results (median) Atrium / Orthanc', 'n']
      : ['query', 'client', 'p50 (ms)', 'p95 (ms)', 'max (ms)', 'results (median)', 'n'],
    rows.map((q) => {
      const client = q.mode === 'process' ? 'one findscu per query' : 'one association';
      const errors = q.errors ? ` (${q.errors} errors)` : '';
      if (!other) return [`${q.name} (e.g. \`${q.example}\`)`, client, fmt(q.p50), fmt(q.p95), fmt(q.max), String(q.medianResults), `${q.n}${errors}`];
      const o = other.find((x) => x.name === q.name && x.mode === q.mode);
      return [`${q.name} (e.g. \`${q.example}\`)`, client, `${fmt(q.p50)} / ${fmt(q.p95)}`, o ? `${fmt(o.p50)} / ${fmt(o.p95)}` : 'n/a',
        ratio(o?.p95, q.p95), `${q.medianResults} / ${o?.medianResults ?? 'n/a'}`, `${q.n}${errors}`];
    }),
  );
  const small = atrium?.findSmall.length ? atrium.findSmall : orthanc?.findSmall ?? [];
  if (small.length) {
    out.push(`## C-FIND on the corpus (${r.corpus.series} studies, study level, Study Root)`, '');
    out.push(atrium?.findSmall.length ? findTable(atrium.findSmall, orthanc?.findSmall) : findTable(small), '');
  }
  if (r.findLarge) {
    const l = r.findLarge;
    out.push(`## C-FIND on a large ${l.server} index (${l.studies.toLocaleString('en')} studies, ${l.series.toLocaleString('en')} series, ` +
      `${l.instances.toLocaleString('en')} instances, ${l.patients.toLocaleString('en')} patients; SQLite)`, '');
    out.push('Study level, Study Root, no limit on the answer (C-FIND has none). "one findscu per query" times a whole ' +
      'findscu process (start-up, association, query, release; nothing subtracted); "one association" times each query ' +
      'from its C-FIND-RQ to its final response, read from findscu\'s log timestamps. Orthanc was not filled to this size ' +
      '(see the DICOMweb report: over half an hour at its ingest rate).', '');
    out.push(findTable(l.rows), '');
    for (const n of l.notes) out.push(`- ${n}`);
    if (l.notes.length) out.push('');
  }
  const notes = [...r.notes, ...r.servers.flatMap((s) => s.notes.map((n) => `${s.name}: ${n}`))];
  if (notes.length) {
    out.push('## Notes', '');
    for (const n of notes) out.push(`- ${n}`);
    out.push('');
  }
  return out.join('\n');
}
