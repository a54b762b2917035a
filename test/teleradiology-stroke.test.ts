/**
 * The stroke clock, end to end with the background matching running as `atrium serve` runs
 * it: the last image of a stroke exam is stored, and the request shows on the on-call
 * neuroradiologist's worklist with its images, and the images open to them, within 2 s.
 */
import assert from 'node:assert/strict';
import { stowFiles } from './support/stow.ts';
import { createServer } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { CookieJar, loginLocal, request } from './support/browser-session.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { addUser } from '../src/cli/users.ts';
import { Tags } from '../src/dicom/dataset.ts';

const engine = testDatabases().at(-1)!;
const password = 'un mot de passe assez long pour les tests';

describe(`stroke request on the on-call worklist (${engine.name})`, () => {
  let atrium: RunningAtrium;
  let base: string;
  let cleanup: () => Promise<void>;
  const sessions: Record<string, { jar: CookieJar; csrf: string }> = {};
  const prior = syntheticInstance({ PatientID: 'AVC-1', Modality: 'CR', Rows: 4, Columns: 4 });
  const study = syntheticInstance({ PatientID: 'AVC-1', Modality: 'CT', Rows: 4, Columns: 4, extra: [{ tag: Tags.AccessionNumber, vr: 'SH', value: Buffer.from('AVC-0042') }] });

  const stow = async (file: Buffer) => {
    const r = await stowFiles(`${base}/dicom-web`, atrium.tokens['CLIN-SUD']!, [file]);
    assert.equal(r.status, 200);
  };
  const call = (who: string, url: string, body?: unknown) => request(sessions[who]!.jar, `${base}/api/teleradiology${url}`, body === undefined ? {} : {
    method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': sessions[who]!.csrf }, body: JSON.stringify(body),
  });

  // The on-call service's paging gateway: refuses the first alert (503), takes the next ones.
  const pager: Array<Record<string, unknown>> = [];
  let pagerCalls = 0;
  const gateway = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      pagerCalls++;
      if (pagerCalls === 1) return res.writeHead(503).end();
      pager.push(JSON.parse(body) as Record<string, unknown>);
      res.writeHead(204).end();
    });
  });

  before(async () => {
    const db = await engine.open();
    cleanup = db.cleanup;
    await new Promise<void>((resolve) => gateway.listen(0, '127.0.0.1', resolve));
    const webhookUrl = `http://127.0.0.1:${(gateway.address() as { port: number }).port}/page`;
    atrium = await startAtrium({
      index: db.config, teleradiology: true,
      configure: (c) => {
        c.teleradiology.alerts = { webhookUrl };
        c.teleradiology.delivery = { ...c.teleradiology.delivery, retryBaseMs: 50, pollMs: 50 };
      },
    });
    base = atrium.dicomweb.replace(/\/dicom-web$/, '');
    await stow(prior.file);
    const by = { actor: 'test', via: 'cli' as const };
    await addUser(atrium.archive, { login: 'manip.sud', displayName: 'Manipulateur', roles: ['technologist'], sites: ['CLIN-SUD'], password }, by);
    await addUser(atrium.archive, { login: 'neuro', displayName: 'Dr Neuro', roles: ['radiologist'], sites: ['CHU-NORD'], password }, by);
    await addUser(atrium.archive, { login: 'admin', displayName: 'Admin', roles: ['territory-admin'], sites: [], password }, by);
    for (const who of ['manip.sud', 'neuro', 'admin']) {
      sessions[who] = await loginLocal(base, who, password);
    }
    const now = Date.now();
    assert.equal((await call('admin', '/oncall', { login: 'neuro', specialty: 'neuro', startsAt: new Date(now - 60_000).toISOString(), endsAt: new Date(now + 3_600_000).toISOString() })).status, 201);
  });

  after(async () => {
    await atrium?.close();
    await new Promise((resolve) => gateway.close(resolve));
    await cleanup?.();
  });

  it('shows the request with its images on the neuroradiologist\'s worklist once the last image is stored', async () => {
    const created = await call('manip.sud', '/requests', {
      patient: { PatientID: 'AVC-1' }, AccessionNumber: 'AVC-0042', urgency: 'stroke', modality: 'CT', bodyPart: 'HEAD', specialty: 'neuro',
      clinicalContext: 'Aphasie brutale', clinicalQuestion: 'Occlusion proximale ?', requestingPhysician: { name: 'Dr Urgences' }, proposedProtocol: 'Scanner + angioscanner',
    });
    assert.equal(created.status, 201, await created.clone().text());
    const { id } = (await created.json()) as { id: number };
    await stow(study.file);
    // How soon is measured by npm run bench:tele (the stroke clock); here, that it comes at all.
    let shown = false;
    for (let polls = 0; polls < 1500 && !shown; polls++) {
      const list = (await (await call('neuro', '/worklist?mine=true&urgency=stroke')).json()) as Array<{ id: number; imagesArrived: boolean }>;
      shown = list.some((e) => e.id === id && e.imagesArrived);
      if (!shown) await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(shown, 'on the neuroradiologist\'s worklist with its images');
    const images = await request(sessions.neuro!.jar, `${base}/dicom-web/studies/${study.uids.study}/metadata`);
    assert.equal(images.status, 200);

    // The alert channel: the on-call neuroradiologist is paged once, after one refusal, with no patient identity.
    for (let i = 0; i < 100 && pager.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(pager.length, 1, `pager got ${pagerCalls} call(s)`);
    const alert = pager[0]!;
    assert.equal(alert.kind, 'stroke-assigned');
    assert.equal(alert.request, id);
    assert.equal(alert.urgency, 'stroke');
    assert.deepEqual(alert.assignedTo, { login: 'neuro', name: 'Dr Neuro' });
    assert.equal(alert.site, 'CLIN-SUD');
    assert.ok(!JSON.stringify(alert).includes('AVC-1'), 'no patient identifier goes to the pager');
    const row = await atrium.archive.index.sql.get<{ status: string; attempts: number }>('SELECT status, attempts FROM tele_alerts WHERE request_id = ?', [id]);
    assert.deepEqual({ status: row!.status, attempts: Number(row!.attempts) }, { status: 'sent', attempts: 2 });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(pager.length, 1, 'the arrival of the images pages nobody again');
  });
});
