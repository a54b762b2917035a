import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface TestS3Server {
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  close(): Promise<void>;
}

/**
 * Runs in the child: s3rver 3.7 on 127.0.0.1, a free port, one bucket; prints the
 * port, and stops when its stdin closes (the test closed it, or the test died).
 */
const childScript = `
const S3rver = require(process.argv[1]);
const [directory, bucket] = process.argv.slice(2);
const server = new S3rver({ port: 0, address: '127.0.0.1', directory, silent: true, configureBuckets: [{ name: bucket }] });
server.run().then((address) => {
  process.stdout.write(JSON.stringify({ port: address.port }) + '\\n');
}, (error) => {
  process.stderr.write(String(error && error.stack || error));
  process.exit(1);
});
process.stdin.resume();
process.stdin.on('end', () => server.close().finally(() => process.exit(0)));
`;

/**
 * Starts s3rver (a real S3 HTTP server backed by files) on 127.0.0.1 on a free
 * port, in a fresh temporary folder, with one bucket; credentials S3RVER/S3RVER.
 * It runs in a child process with OpenSSL's legacy provider: s3rver makes
 * ListObjectsV2 continuation tokens with DES, which OpenSSL 3 has dropped.
 * close() stops it and removes the folder.
 */
export async function startS3Server(options: { bucket?: string } = {}): Promise<TestS3Server> {
  const bucket = options.bucket ?? 'atrium-test';
  const directory = await mkdtemp(path.join(tmpdir(), 'atrium-s3rver-'));
  const s3rverPath = createRequire(import.meta.url).resolve('s3rver');
  const child = spawn(process.execPath, ['--openssl-legacy-provider', '-e', childScript, s3rverPath, directory, bucket], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  let port: number;
  try {
    port = await readPort(child);
  } catch (e) {
    child.kill('SIGKILL');
    await rm(directory, { recursive: true, force: true });
    throw e;
  }
  let closing: Promise<void> | undefined;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    close() {
      closing ??= (async () => {
        const exited = child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : once(child, 'exit').then(() => {});
        child.stdin?.end();
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
        await rm(directory, { recursive: true, force: true });
      })();
      return closing;
    },
  };
}

async function readPort(child: ChildProcess): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => reject(new Error(`s3rver did not start within 15 s: ${stderr}`)), 15_000);
    child.stderr?.setEncoding('utf8').on('data', (text: string) => {
      stderr += text;
    });
    child.stdout?.setEncoding('utf8').on('data', (text: string) => {
      stdout += text;
      const line = stdout.split('\n')[0];
      if (stdout.includes('\n') && line !== undefined) {
        clearTimeout(timer);
        try {
          resolve((JSON.parse(line) as { port: number }).port);
        } catch {
          reject(new Error(`s3rver printed ${line}`));
        }
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`s3rver exited with ${code}: ${stderr}`));
    });
  });
}
