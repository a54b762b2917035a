/**
 * The file hasher's thread (see file-hasher.ts): reads ranges of files the main thread has
 * just written (from the page cache, on this thread) and hashes them, one SHA-256 per job.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';

export type HashRequest =
  | { op: 'open'; id: number; file: string }
  | { op: 'range'; id: number; length: number }
  | { op: 'end'; id: number }
  | { op: 'abort'; id: number };

export type HashReply = { id: number; sha256: string } | { id: number; error: string };

interface Job { fd: number; hash: Hash; at: number; error?: string }

const jobs = new Map<number, Job>();
const buffer = Buffer.allocUnsafe(256 * 1024);

function close(job: Job): void {
  try {
    closeSync(job.fd);
  } catch {
    // Already closed: nothing to release.
  }
}

parentPort!.on('message', (m: HashRequest) => {
  if (m.op === 'open') {
    try {
      jobs.set(m.id, { fd: openSync(m.file, 'r'), hash: createHash('sha256'), at: 0 });
    } catch (e) {
      jobs.set(m.id, { fd: -1, hash: createHash('sha256'), at: 0, error: (e as Error).message });
    }
    return;
  }
  const job = jobs.get(m.id);
  if (!job) return;
  if (m.op === 'range') {
    if (job.error) return;
    try {
      let left = m.length;
      while (left > 0) {
        const n = readSync(job.fd, buffer, 0, Math.min(left, buffer.length), job.at);
        if (n === 0) throw new Error(`the file ended ${left} bytes before the range written`);
        job.hash.update(buffer.subarray(0, n));
        job.at += n;
        left -= n;
      }
    } catch (e) {
      job.error = (e as Error).message;
    }
    return;
  }
  jobs.delete(m.id);
  if (job.fd >= 0) close(job);
  if (m.op === 'end') {
    const reply: HashReply = job.error ? { id: m.id, error: job.error } : { id: m.id, sha256: job.hash.digest('hex') };
    parentPort!.postMessage(reply);
  }
});
