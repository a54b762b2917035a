/**
 * The production runtime: `npm start` runs the compiled JavaScript of `npm run build`
 * through bin/atrium.mjs, starts on embedded defaults with no warning, and answers.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from './support/dcmtk.ts';

const root = path.resolve(import.meta.dirname, '..');

describe('the production runtime', () => {
  it('npm start serves from the compiled code on embedded defaults, without any warning on stderr', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'atrium-runtime-'));
    const [http, dimse, hl7] = [await freePort(), await freePort(), await freePort()];
    const config = path.join(dir, 'atrium.yaml');
    writeFileSync(config, [`dataDir: ${path.join(dir, 'data')}`, `http: { port: ${http} }`, `dimse: { port: ${dimse} }`, `hl7: { port: ${hl7} }`, ''].join('\n'));
    const child = spawn('npm', ['start', '--silent', '--', '--config', config], { cwd: root, env: { ...process.env, DATABASE_URL: '' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
    child.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
    try {
      await new Promise<void>((resolve, reject) => {
        const check = setInterval(() => {
          if (stdout.includes('atrium is serving')) { clearInterval(check); resolve(); }
        }, 50);
        child.on('exit', (code) => { clearInterval(check); reject(new Error(`npm start exited ${code}: ${stderr}`)); });
      });
      const res = await fetch(`http://127.0.0.1:${http}/health`);
      assert.equal(res.status, 200);
      const token = readFileSync(path.join(dir, 'data', 'api-token'), 'utf8').trim();
      const studies = await fetch(`http://127.0.0.1:${http}/dicom-web/studies`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(studies.status, 200);
      assert.equal(stderr, '', 'nothing on stderr: no deprecation or experimental warning');
    } finally {
      // npm runs node in a child of its own: end the whole group.
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGTERM');
      await new Promise((r) => child.once('close', r));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('bin/atrium.mjs refuses to run without the compiled code, and says how to build it', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'atrium-nobuild-'));
    try {
      cpSync(path.join(root, 'bin'), path.join(dir, 'bin'), { recursive: true });
      const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        execFile(process.execPath, [path.join(dir, 'bin', 'atrium.mjs'), 'serve'], (e, _out, stderr) => resolve({ code: e ? (e.code as number) : 0, stderr }));
      });
      assert.equal(result.code, 2);
      assert.match(result.stderr, /npm run build/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
