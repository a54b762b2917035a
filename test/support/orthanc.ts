import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export const orthancBinary = '/usr/sbin/Orthanc';
export const haveOrthanc = existsSync(orthancBinary);

export interface RunningOrthanc {
  url: string;
  dicomPort: number;
  aeTitle: string;
  child: ChildProcess;
  /** JSON of a REST call; throws with Orthanc's answer when it is not 2xx. */
  rest<T = unknown>(method: string, route: string, body?: unknown): Promise<T>;
  raw(route: string): Promise<Buffer>;
  stop(): Promise<void>;
}

/**
 * Debian's Orthanc as a DICOM peer: its own DIMSE listener on `dicomPort`, REST on
 * `httpPort`, the given modalities known, loopback only. TCP_NODELAY=1 for DCMTK inside.
 */
export async function startOrthancPeer(dir: string, options: {
  httpPort: number;
  dicomPort: number;
  aeTitle: string;
  modalities: Record<string, [string, string, number]>;
}): Promise<RunningOrthanc> {
  mkdirSync(dir, { recursive: true });
  const configFile = path.join(dir, 'orthanc.json');
  writeFileSync(configFile, JSON.stringify({
    Name: 'atrium-test-peer',
    StorageDirectory: path.join(dir, 'storage'),
    IndexDirectory: path.join(dir, 'index'),
    HttpPort: options.httpPort,
    DicomPort: options.dicomPort,
    DicomAet: options.aeTitle,
    DicomServerEnabled: true,
    RemoteAccessAllowed: false,
    AuthenticationEnabled: false,
    DicomCheckCalledAet: false,
    DicomAlwaysAllowEcho: true,
    DicomAlwaysAllowStore: true,
    DicomAlwaysAllowFind: true,
    DicomAlwaysAllowMove: true,
    DicomModalities: options.modalities,
    TcpNoDelay: true,
    Plugins: [],
    StorageCompression: false,
  }, null, 2));
  const child = spawn(orthancBinary, [...(process.env.ATRIUM_TEST_ORTHANC_LOG ? ['--verbose'] : []), configFile], { cwd: dir, env: { ...process.env, TCP_NODELAY: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-20_000)));
  child.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-20_000)));
  if (process.env.ATRIUM_TEST_ORTHANC_LOG) child.stderr!.pipe(createWriteStream(process.env.ATRIUM_TEST_ORTHANC_LOG));
  const url = `http://127.0.0.1:${options.httpPort}`;
  const rest = async <T,>(method: string, route: string, body?: unknown): Promise<T> => {
    const res = await fetch(url + route, {
      method,
      body: body === undefined ? undefined : Buffer.isBuffer(body) ? new Uint8Array(body) : JSON.stringify(body),
      headers: Buffer.isBuffer(body) ? { 'content-type': 'application/dicom' } : undefined,
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`Orthanc ${method} ${route}: ${res.status} ${text}`);
    return (text === '' ? undefined : JSON.parse(text)) as T;
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await rest('GET', '/system');
      break;
    } catch {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`Orthanc did not start:\n${log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    url, dicomPort: options.dicomPort, aeTitle: options.aeTitle, child, rest,
    async raw(route: string) {
      const res = await fetch(url + route);
      if (!res.ok) throw new Error(`Orthanc GET ${route}: ${res.status}`);
      return Buffer.from(await res.arrayBuffer());
    },
    stop: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('close', () => resolve());
      child.kill('SIGTERM');
    }),
  };
}
