/**
 * Teleradiology with several nodes (or many requests) at once: an alert is leased by the node
 * that sends it, and a node whose attempt outlived its lease does not overwrite what the other
 * node did with the alert meanwhile; what many requests record at once stays one audit chain.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { loginLocal, request } from './support/browser-session.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { addUser } from '../src/cli/users.ts';
import { Tags } from '../src/dicom/dataset.ts';
import { TeleAlerts } from '../src/workflow/tele-alerts.ts';
import { AuditTrail } from '../src/access/audit.ts';

const password = 'un mot de passe assez long pour les tests';

for (const engine of testDatabases()) {
  describe(`teleradiology with several nodes at once (${engine.name})`, () => {
    let atrium: RunningAtrium;
    let base: string;
    let requestId: number;
    let cleanup: () => Promise<void>;
    // The paging gateway: holds its answer to one call while a test says so, then refuses it.
    const calls: string[] = [];
    let hold: Promise<void> | undefined;
    const gateway = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        calls.push(body);
        const held = hold;
        hold = undefined;
        if (held) void held.then(() => res.writeHead(503).end());
        else res.writeHead(204).end();
      });
    });

    before(async () => {
      const db = await engine.open();
      cleanup = db.cleanup;
      await new Promise<void>((resolve) => gateway.listen(0, '127.0.0.1', resolve));
      atrium = await startAtrium({
        index: db.config,
        configure: (c) => {
          c.teleradiology.alerts = { webhookUrl: `http://127.0.0.1:${(gateway.address() as AddressInfo).port}/page` };
          // One attempt: a refusal gives the alert up.
          c.teleradiology.delivery = { ...c.teleradiology.delivery, ackTimeoutMs: 5_000, maxAttempts: 1 };
        },
      });
      base = atrium.dicomweb.replace(/\/dicom-web$/, '');
      const by = { actor: 'test', via: 'cli' as const };
      await addUser(atrium.archive, { login: 'manip.sud', displayName: 'Manipulateur', roles: ['technologist'], sites: ['CLIN-SUD'], password }, by);
      await addUser(atrium.archive, { login: 'neuro', displayName: 'Dr Neuro', roles: ['radiologist'], sites: ['CHU-NORD'], password }, by);
      await addUser(atrium.archive, { login: 'admin', displayName: 'Admin', roles: ['territory-admin'], sites: [], password }, by);
      const post = async (who: string, url: string, body: unknown) => {
        const s = await loginLocal(base, who, password);
        const r = await request(s.jar, `${base}/api/teleradiology${url}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': s.csrf }, body: JSON.stringify(body) });
        const text = await r.text();
        assert.ok(r.status < 300, text);
        return JSON.parse(text) as Record<string, unknown>;
      };
      const now = Date.now();
      await post('admin', '/oncall', { login: 'neuro', specialty: 'neuro', startsAt: new Date(now - 60_000).toISOString(), endsAt: new Date(now + 3_600_000).toISOString() });
      const prior = syntheticInstance({ PatientID: 'AVC-2', Modality: 'CR', Rows: 4, Columns: 4 });
      assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CLIN-SUD']!, [prior.file])).status, 200);
      requestId = (await post('manip.sud', '/requests', {
        patient: { PatientID: 'AVC-2' }, AccessionNumber: 'AVC-0043', urgency: 'stroke', modality: 'CT', bodyPart: 'HEAD', specialty: 'neuro',
        clinicalContext: 'Hémiplégie', clinicalQuestion: 'Occlusion ?', requestingPhysician: { name: 'Dr Urgences' }, proposedProtocol: 'Scanner',
      })).id as number;
      const ct = syntheticInstance({ PatientID: 'AVC-2', Modality: 'CT', Rows: 4, Columns: 4, extra: [{ tag: Tags.AccessionNumber, vr: 'SH', value: Buffer.from('AVC-0043') }] });
      assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CLIN-SUD']!, [ct.file])).status, 200);
      // The images meet the request: it goes to the on-call neuroradiologist, and an alert is queued.
      await atrium.teleImages.drain();
    });

    after(async () => {
      await atrium?.close();
      await new Promise((resolve) => gateway.close(resolve));
      await cleanup?.();
    });

    it('leaves an alert another node sent as sent when its own late attempt is then refused', async () => {
      const alerts = () => atrium.archive.index.sql.all<{ status: string }>('SELECT status FROM tele_alerts');
      assert.deepEqual((await alerts()).map((a) => a.status), ['pending']);
      let answer!: () => void;
      hold = new Promise<void>((resolve) => { answer = resolve; });
      const logger = pino({ level: 'silent' });
      const nodeA = new TeleAlerts(atrium.archive.index.sql, atrium.config.teleradiology, logger);
      const nodeB = new TeleAlerts(atrium.archive.index.sql, atrium.config.teleradiology, logger);
      const late = nodeA.sendDue();
      for (let i = 0; i < 500 && calls.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(calls.length, 1, 'node A is waiting for the gateway');
      // Node B finds A's lease run out (its clock is ahead) and pages: the gateway takes it.
      assert.equal(await nodeB.sendDue(new Date(Date.now() + 60_000)), 1);
      assert.deepEqual((await alerts()).map((a) => a.status), ['sent']);
      answer();
      assert.equal(await late, 0);
      assert.deepEqual((await alerts()).map((a) => a.status), ['sent'], 'the late refusal does not mark a delivered alert failed');
    });

    it('keeps one audit chain when a request is viewed many times at once', async () => {
      const s = await loginLocal(base, 'neuro', password);
      // Each view is an audit record: twenty at once, as the portals of several radiologists poll.
      const views = await Promise.all(Array.from({ length: 20 }, () => request(s.jar, `${base}/api/teleradiology/requests/${requestId}`)));
      assert.deepEqual(views.map((v) => v.status), views.map(() => 200));
      const verified = await new AuditTrail(atrium.archive.index.sql).verify();
      assert.equal(verified.ok, true, JSON.stringify(verified));
    });
  });
}
