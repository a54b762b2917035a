/**
 * A research export whose node dies mid-way: `atrium serve` as a process, an export to a
 * DICOMweb destination that holds the upload unanswered (the export is caught in the middle
 * for certain), SIGKILL, start again. The export then reads "interrupted" with why, through the
 * API; restarted, it runs again from the start under its id and finishes; only an interrupted
 * or failed export is restarted.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { AtriumProcess, singleSiteProcessConfig } from './support/atrium-process.ts';
import { loginLocal, request } from './support/browser-session.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';

const cli = path.join(path.resolve(import.meta.dirname, '..'), 'bin/atrium.mjs');
const password = 'un mot de passe assez long pour les tests';

function addUser(configFile: string, login: string, role: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile(process.execPath, [cli, 'user', 'add', login, '--name', login, '--role', role, '--site', 'CHU-NORD', '--password-stdin', '--config', configFile],
      (err, _stdout, stderr) => (err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve()));
    child.stdin!.end(`${password}\n`);
  });
}

describe('a research export interrupted by a crash of its node', () => {
  const { dataDir, configFile, token } = singleSiteProcessConfig('atrium-research-restart-', 'modality');
  const atrium = new AtriumProcess(configFile);
  // The destination: holds every upload unanswered while `hold`, else takes it (200).
  let hold = true;
  const received: string[] = [];
  let heldRequest: (() => void) | undefined;
  const held = new Promise<void>((resolve) => { heldRequest = resolve; });
  const destination = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (hold) {
        heldRequest!();
        return; // never answered
      }
      received.push(Buffer.concat(chunks).toString('latin1'));
      res.writeHead(200, { 'content-type': 'application/dicom+json' }).end('{}');
    });
  });
  let base: string;
  let destinationUrl: string;

  before(async () => {
    await addUser(configFile, 'chercheur', 'researcher');
    await addUser(configFile, 'admin.nord', 'site-admin');
    await new Promise<void>((resolve) => destination.listen(0, '127.0.0.1', resolve));
    destinationUrl = `http://127.0.0.1:${(destination.address() as AddressInfo).port}/dicom-web`;
    await atrium.start();
    base = atrium.url.replace(/\/dicom-web$/, '');
    const objects = ['RST-1', 'RST-2'].map((id) => syntheticInstance({ PatientID: id, PatientName: `Patient^${id}`, Modality: 'CT', Rows: 4, Columns: 4 }).file);
    assert.equal((await stowFiles(atrium.url, token, objects)).status, 200);
  });

  after(async () => {
    await atrium.stop();
    destination.closeAllConnections();
    await new Promise((resolve) => destination.close(resolve));
    rmSync(dataDir, { recursive: true, force: true });
  });

  const as = async (session: { jar: Awaited<ReturnType<typeof loginLocal>>['jar']; csrf: string }, method: string, url: string, body?: unknown) => {
    const r = await request(session.jar, `${base}${url}`, {
      method, headers: { 'x-csrf-token': session.csrf, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) as Record<string, unknown> : {} };
  };

  it('reads "interrupted" after the node is killed mid-export and started again, and finishes once restarted', async () => {
    let researcher = await loginLocal(base, 'chercheur', password);
    const admin = await loginLocal(base, 'admin.nord', password);
    const created = await as(researcher, 'POST', '/api/research/projects', { name: 'Reprise', criteria: { modalities: ['CT'] }, dicomwebUrl: destinationUrl });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const projectId = created.body.id as number;
    assert.equal((await as(admin, 'POST', `/api/research/projects/${projectId}/approve`)).status, 200);
    const started = await as(researcher, 'POST', `/api/research/projects/${projectId}/exports`, { kind: 'dicomweb' });
    assert.equal(started.status, 202);
    const exportId = started.body.id as number;
    await held; // the export is sending its first patient: mid-way
    assert.equal((await as(researcher, 'GET', `/api/research/exports/${exportId}`)).body.status, 'running', 'running while its node runs it');

    await atrium.kill();
    await atrium.start();
    base = atrium.url.replace(/\/dicom-web$/, ''); // a new port
    researcher = await loginLocal(base, 'chercheur', password);
    const after = await as(researcher, 'GET', `/api/research/exports/${exportId}`);
    assert.equal(after.status, 200);
    assert.equal(after.body.status, 'interrupted');
    assert.match(after.body.error as string, /stopped .* before it finished/);
    const listed = await as(researcher, 'GET', `/api/research/projects/${projectId}`);
    assert.deepEqual((listed.body.exports as Array<{ id: number; status: string }>).map((e) => [e.id, e.status]), [[exportId, 'interrupted']]);

    hold = false;
    const restarted = await as(researcher, 'POST', `/api/research/exports/${exportId}/restart`);
    assert.equal(restarted.status, 202, JSON.stringify(restarted.body));
    let row: Record<string, unknown>;
    for (;;) {
      row = (await as(researcher, 'GET', `/api/research/exports/${exportId}`)).body;
      if (row.status !== 'running') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(row.status, 'done', JSON.stringify(row));
    assert.equal(row.error, undefined, 'the interruption\'s reason is gone once done');
    assert.equal((row.manifest as { instances: number }).instances, 2);
    assert.equal(received.length, 2, 'each patient sent to the destination once the export restarted');
    for (const body of received) assert.doesNotMatch(body, /RST-[12]/);

    // A done export is not restarted.
    const again = await as(researcher, 'POST', `/api/research/exports/${exportId}/restart`);
    assert.equal(again.status, 409);
    assert.match(String(again.body.detail), /only an interrupted or failed export/);
  });
});
