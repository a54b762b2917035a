import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePort, httpRequest, keepAliveAgent, outputTail, spawnTracked, stopProcess, waitFor, type HttpTarget } from './measure.ts';
import type { RunningServer } from './atrium.ts';

export const orthancBinary = process.env.BENCH_ORTHANC ?? '/usr/sbin/Orthanc';
export const orthancDicomWebPlugin = process.env.BENCH_ORTHANC_DICOMWEB ?? '/usr/share/orthanc/plugins/libOrthancDicomWeb.so';

export function orthancAvailable(): boolean {
  return existsSync(orthancBinary) && existsSync(orthancDicomWebPlugin);
}

export interface RunningOrthanc extends RunningServer {
  version: string;
  dicomWebVersion: string;
}

/** Orthanc's DICOM server for the DIMSE bench; off when not given. */
export interface OrthancDicomOptions {
  port: number;
  aeTitle: string;
  /** Orthanc accepts 4096..131072 (MaximumPduLength); the same value is given to Atrium. */
  maxPduLength: number;
  /** C-MOVE destinations. */
  modalities: Array<{ aeTitle: string; host: string; port: number }>;
}

/**
 * Starts Debian's Orthanc with its DICOMweb plugin on loopback, storage and index in
 * `dataDir`, everything else as shipped (no compression of stored files, as Atrium).
 * With `dicom`, its DICOM server listens too, accepting store, find, move and get from
 * any caller (as Atrium's bench configuration lists every calling AE title).
 */
export async function startOrthanc(dataDir: string, options: { dicom?: OrthancDicomOptions } = {}): Promise<RunningOrthanc> {
  const httpPort = await freePort();
  const dicom = options.dicom;
  const dicomPort = dicom?.port ?? await freePort();
  const configDir = path.join(dataDir, 'config');
  mkdirSync(configDir, { recursive: true });
  writeFileSync(path.join(configDir, 'orthanc.json'), JSON.stringify({
    Name: 'bench',
    StorageDirectory: path.join(dataDir, 'storage'),
    IndexDirectory: path.join(dataDir, 'index'),
    StorageCompression: false,
    HttpPort: httpPort,
    DicomPort: dicomPort,
    DicomServerEnabled: dicom !== undefined,
    ...(dicom ? {
      DicomAet: dicom.aeTitle,
      DicomCheckCalledAet: false,
      DicomAlwaysAllowStore: true,
      DicomAlwaysAllowFind: true,
      DicomAlwaysAllowMove: true,
      DicomAlwaysAllowGet: true,
      MaximumPduLength: dicom.maxPduLength,
      DicomModalities: Object.fromEntries(dicom.modalities.map((m) => [m.aeTitle, [m.aeTitle, m.host, m.port]])),
    } : {}),
    RemoteAccessAllowed: false,
    AuthenticationEnabled: false,
    HttpCompressionEnabled: false,
    TcpNoDelay: true,
    Plugins: [orthancDicomWebPlugin],
    DicomWeb: { Enable: true, Root: '/dicom-web/' },
  }, null, 2));
  // Debian's Orthanc leaves Nagle's algorithm on unless told otherwise, which stalls small answers.
  const child = spawnTracked(orthancBinary, [configDir], {
    cwd: dataDir, env: { ...process.env, TCP_NODELAY: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderrTail = outputTail(child);
  const target: HttpTarget = {
    name: 'Orthanc',
    dicomweb: `http://127.0.0.1:${httpPort}/dicom-web`,
    headers: {},
    agent: keepAliveAgent(),
  };
  const base = `http://127.0.0.1:${httpPort}`;
  try {
    await waitFor('Orthanc', async () => (await httpRequest(target, `${base}/system`, { timeoutMs: 2000 })).status === 200, child, 60_000);
  } catch (e) {
    await stopProcess(child);
    throw new Error(`${(e as Error).message}\n${stderrTail()}`);
  }
  const system = JSON.parse((await httpRequest(target, `${base}/system`, { collect: true })).body!.toString('utf8')) as { Version?: string };
  let dicomWebVersion = 'unknown';
  try {
    const plugin = await httpRequest(target, `${base}/plugins/dicom-web`, { collect: true });
    dicomWebVersion = (JSON.parse(plugin.body!.toString('utf8')) as { Version?: string }).Version ?? 'unknown';
  } catch {
    // older Orthanc: the version is only in its log
  }
  return {
    target, pid: child.pid!, child, stderrTail,
    version: system.Version ?? 'unknown',
    dicomWebVersion,
    async stop() {
      target.agent.destroy();
      await stopProcess(child, 20_000);
    },
  };
}
