/**
 * Routing and forwarding with real peers: DCMTK's storescu sends to Atrium, Atrium's
 * Forwarder sends on to DCMTK storescp destinations by rules, through the persistent
 * queue; a destination down never slows ingest, its rows wait and drain when it comes back,
 * fail after max attempts and are requeued; queued rows survive a restart.
 */
import { datasetBytes, sopOf } from './support/part10.ts';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { startAtrium, testSites, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { dcmtk, freePort, haveDcmtk, startStorescp } from './support/dcmtk.ts';
import { syntheticInstance } from './support/synthetic.ts';
import type { AtriumConfig } from '../src/config/config.ts';
import { ForwardingQueue, type DestinationStatus } from '../src/index/forwarding-queue.ts';
import { atriumCliArgs } from './support/cli.ts';
import { addUser } from '../src/cli/users.ts';
import { loginLocal, sessionCaller } from './support/browser-session.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** What a storescp wrote: its files by SOPInstanceUID. */
function received(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const name of readdirSync(dir)) {
    const f = readFileSync(path.join(dir, name));
    out.set(sopOf(f), f);
  }
  return out;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function api(atrium: RunningAtrium, route: string, init: { method?: string; body?: unknown; token?: string | null } = {}): Promise<Response> {
  const token = init.token === undefined ? atrium.tokens['CHU-NORD'] : init.token;
  return fetch(atrium.dicomweb.replace(/\/dicom-web$/, '/api/forwarding') + route, {
    method: init.method ?? 'GET',
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
}

async function statusOf(atrium: RunningAtrium, destination: string): Promise<DestinationStatus | undefined> {
  const res = await api(atrium, '/');
  assert.equal(res.status, 200);
  const body = await res.json() as { destinations: DestinationStatus[] };
  return body.destinations.find((d) => d.destination === destination);
}

function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...atriumCliArgs(), ...args], { cwd: repoRoot, env: { ...process.env, ATRIUM_LOG_LEVEL: 'error' } },
      (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }));
  });
}

for (const db of testDatabases()) {
  describe(`forwarding by rules to DCMTK storescp (${db.name})`, { skip: !haveDcmtk && 'DCMTK is not installed (apt-get install dcmtk)' }, () => {
    let atrium: RunningAtrium;
    let index: AtriumConfig['index'];
    let cleanup: () => Promise<void>;
    let dest: Awaited<ReturnType<typeof startStorescp>>;
    let down: Awaited<ReturnType<typeof startStorescp>> | undefined;
    let downPort: number;
    const work = mkdtempSync(path.join(tmpdir(), 'atrium-fwd-'));
    const dataDir = path.join(work, 'data');
    const destDir = path.join(work, 'dest');
    const downDir = path.join(work, 'down');
    const sendDir = path.join(work, 'send');
    const retry = { baseDelayMs: 100, maxDelayMs: 400, maxAttempts: 1000 };

    const configure = (maxAttempts = retry.maxAttempts) => (c: AtriumConfig) => {
      c.peers = [
        { aeTitle: 'MODALITY', site: 'CHU-NORD', may: { store: true, query: false, retrieve: false } },
        { aeTitle: 'MODALITY-2', site: 'CHU-NORD', may: { store: true, query: false, retrieve: false } },
        { aeTitle: 'SUD-MODALITY', site: 'CLIN-SUD', may: { store: true, query: false, retrieve: false } },
        { aeTitle: 'DEST', host: '127.0.0.1', port: dest.port, site: 'CHU-NORD', may: { store: false, query: false, retrieve: false } },
        { aeTitle: 'DOWN', host: '127.0.0.1', port: downPort, site: 'CHU-NORD', may: { store: false, query: false, retrieve: false } },
      ];
      c.routing = {
        rules: [
          { name: 'ct-chu-nord', sites: ['CHU-NORD'], modalities: ['CT'], destinations: ['DEST'] },
          { name: 'modality-2', callingAETitles: ['MODALITY-2'], destinations: ['DOWN'] },
        ],
        retry: { ...retry, maxAttempts },
        associationsPerPeer: 2,
        pollIntervalMs: 100,
        claimLeaseSeconds: c.routing.claimLeaseSeconds,
      };
    };
    const start = (maxAttempts?: number) => startAtrium({ index, dataDir, dimse: true, forwarding: true, configure: configure(maxAttempts) });

    const write = (name: string, file: Buffer) => {
      const p = path.join(sendDir, name);
      writeFileSync(p, file);
      return p;
    };
    const storescu = (calling: string, paths: string[]) => dcmtk('storescu', ['-aet', calling, '-aec', 'ATRIUM', '127.0.0.1', String(atrium.dimse!.port), ...paths]);

    before(async () => {
      const opened = await db.open();
      index = opened.config;
      cleanup = opened.cleanup;
      for (const d of [dataDir, destDir, downDir, sendDir]) mkdirSync(d);
      dest = await startStorescp('DEST', destDir);
      downPort = await freePort();
      atrium = await start();
    });

    after(async () => {
      await atrium?.close();
      await dest?.stop();
      await down?.stop();
      await cleanup?.();
      rmSync(work, { recursive: true, force: true });
    });

    const study = syntheticInstance().uids.study;
    const cts = Array.from({ length: 3 }, () => syntheticInstance({ PatientID: 'FWD-1', Modality: 'CT', StudyInstanceUID: study, Rows: 64, Columns: 64 }).file);
    const mrs = Array.from({ length: 2 }, () => syntheticInstance({ PatientID: 'FWD-1', Modality: 'MR', StudyInstanceUID: study, Rows: 32, Columns: 32 }).file);

    it('forwards every CT from CHU-NORD to DEST byte for byte, and neither the MR nor another site\'s CT', async () => {
      const paths = [...cts.map((f, i) => write(`ct${i}.dcm`, f)), ...mrs.map((f, i) => write(`mr${i}.dcm`, f))];
      const r = await storescu('MODALITY', paths);
      assert.equal(r.code, 0, r.output);
      const sud = syntheticInstance({ PatientID: 'SUD-1', Modality: 'CT' }).file;
      assert.equal((await storescu('SUD-MODALITY', [write('sud.dcm', sud)])).code, 0);

      const s = await waitFor('3 rows done for DEST', async () => {
        const st = await statusOf(atrium, 'DEST');
        return st && st.done === 3 ? st : undefined;
      });
      assert.equal(s.pending + s.inProgress + s.failed, 0);
      const got = received(destDir);
      assert.equal(got.size, 3, 'only the CT arrived');
      for (const f of cts) {
        const file = got.get(sopOf(f));
        assert.ok(file, 'every CT arrived');
        assert.ok(datasetBytes(file).equals(datasetBytes(f)), 'the forwarded dataset is the one sent');
      }
      for (const f of [...mrs, sud]) assert.ok(!got.has(sopOf(f)), 'neither the MR nor the CLIN-SUD CT is forwarded');
      assert.equal(await statusOf(atrium, 'DOWN'), undefined, 'no rule sent anything to DOWN');
    });

    const mr2 = Array.from({ length: 4 }, () => syntheticInstance({ PatientID: 'FWD-2', Modality: 'MR', Rows: 32, Columns: 32 }).file);

    it('answers C-STORE at once while the destination is down; its rows wait with their attempts and the last error', async () => {
      // Stores never wait for forwarding (it runs from the queue); only the answers are checked here.
      const r = await storescu('MODALITY-2', mr2.map((f, i) => write(`mr2-${i}.dcm`, f)));
      assert.equal(r.code, 0, r.output);
      assert.equal(await atrium.archive.index.countInstances(), 10);
      const s = await waitFor('DOWN rows retried twice', async () => {
        const st = await statusOf(atrium, 'DOWN');
        return st && st.pending === 4 && st.retrying === 4 && (st.lastError?.attempts ?? 0) >= 2 ? st : undefined;
      });
      assert.equal(s.done, 0);
      assert.equal(s.failed, 0);
      assert.match(s.lastError!.message, /cannot reach DOWN/);
      assert.ok(s.nextAttemptAt && s.oldestPendingSince);
      // Another peer is not held up by it.
      const more = syntheticInstance({ PatientID: 'FWD-3', Modality: 'CT', Rows: 16, Columns: 16 }).file;
      assert.equal((await storescu('MODALITY', [write('more.dcm', more)])).code, 0);
      await waitFor('the CT sent to DEST meanwhile', async () => ((await statusOf(atrium, 'DEST'))?.done === 4 ? true : undefined));
    });

    it('drains the waiting rows once a storescp listens on the destination\'s port', async () => {
      down = await startStorescp('DOWN', downDir, [], downPort);
      await waitFor('DOWN rows done', async () => {
        const st = await statusOf(atrium, 'DOWN');
        return st && st.done === 4 && st.pending === 0 ? st : undefined;
      });
      const got = received(downDir);
      for (const f of mr2) assert.ok(got.get(sopOf(f))?.subarray(0).length && datasetBytes(got.get(sopOf(f))!).equals(datasetBytes(f)));
    });

    it('keeps queued rows across a restart, and sends them once the destination is back', async () => {
      await down!.stop();
      down = undefined;
      const objs = Array.from({ length: 2 }, () => syntheticInstance({ PatientID: 'FWD-4', Modality: 'MR', Rows: 16, Columns: 16 }).file);
      assert.equal((await storescu('MODALITY-2', objs.map((f, i) => write(`restart-${i}.dcm`, f)))).code, 0);
      await waitFor('rows pending for DOWN', async () => ((await statusOf(atrium, 'DOWN'))?.retrying === 2 ? true : undefined));
      await atrium.close();
      down = await startStorescp('DOWN', downDir, [], downPort);
      atrium = await start();
      await waitFor('rows queued before the restart sent', async () => {
        const st = await statusOf(atrium, 'DOWN');
        return st && st.done === 6 && st.pending === 0 ? st : undefined;
      });
      const got = received(downDir);
      for (const f of objs) assert.ok(got.has(sopOf(f)));
    });

    it('sends after a restart the rows a crash left in progress (SQLite: the only sender; PostgreSQL waits for the claim to go stale)', { skip: db.name !== 'sqlite' && 'several nodes may share a PostgreSQL queue' }, async () => {
      await down!.stop();
      down = undefined;
      const obj = syntheticInstance({ PatientID: 'FWD-6', Modality: 'MR', Rows: 16, Columns: 16 }).file;
      assert.equal((await storescu('MODALITY-2', [write('crash.dcm', obj)])).code, 0);
      await waitFor('a row pending for DOWN', async () => ((await statusOf(atrium, 'DOWN'))?.retrying === 1 ? true : undefined));
      await atrium.close();
      // A sender that died mid-send: the row stays in progress in the index.
      const crashed = await startAtrium({ index, dataDir, configure: configure() });
      const queue = new ForwardingQueue(crashed.archive.index.sql);
      await crashed.archive.index.sql.run(`UPDATE forward_queue SET next_attempt_at = ? WHERE state = 'pending'`, [new Date(0).toISOString()]);
      assert.equal((await queue.claimDue('DOWN', 10)).rows.length, 1);
      await crashed.close();
      down = await startStorescp('DOWN', downDir, [], downPort);
      atrium = await start();
      await waitFor('the row left in progress sent', async () => {
        const st = await statusOf(atrium, 'DOWN');
        return st && st.done === 7 && st.inProgress === 0 ? st : undefined;
      });
      assert.ok(received(downDir).has(sopOf(obj)));
    });

    it('marks rows failed after the last attempt; atrium forwarding --retry-failed makes them pending again', async () => {
      await down!.stop();
      down = undefined;
      await atrium.close();
      atrium = await start(2);
      const obj = syntheticInstance({ PatientID: 'FWD-5', Modality: 'MR', Rows: 16, Columns: 16 }).file;
      assert.equal((await storescu('MODALITY-2', [write('failing.dcm', obj)])).code, 0);
      const s = await waitFor('a failed row', async () => {
        const st = await statusOf(atrium, 'DOWN');
        return st && st.failed === 1 && st.pending === 0 ? st : undefined;
      });
      assert.equal(s.lastError?.state, 'failed');
      assert.equal(s.lastError?.attempts, 2);

      const configFile = path.join(work, 'atrium.yaml');
      writeFileSync(configFile, YAML.stringify({
        dataDir,
        index: index.engine === 'sqlite' ? { engine: 'sqlite', path: index.path } : { engine: 'postgres', url: index.url, schema: index.schema },
        sites: testSites,
      }));
      down = await startStorescp('DOWN', downDir, [], downPort);
      const cli = await runCli(['forwarding', '--retry-failed', '--destination', 'DOWN', '--config', configFile]);
      assert.equal(cli.code, 0, cli.stderr);
      const report = JSON.parse(cli.stdout) as { requeued: number; destinations: DestinationStatus[] };
      assert.equal(report.requeued, 1);
      assert.equal(report.destinations.length, 1);
      assert.equal(report.destinations[0]!.destination, 'DOWN');
      await waitFor('the requeued row sent', async () => {
        const st = await statusOf(atrium, 'DOWN');
        return st && st.failed === 0 && st.pending + st.inProgress === 0 ? st : undefined;
      });
      assert.ok(received(downDir).has(sopOf(obj)));
    });

    it('prefetches a patient\'s studies to a peer (POST /api/forwarding/prefetch); refuses unknown peers and callers without a token', async () => {
      const res = await api(atrium, '/prefetch', { method: 'POST', body: { PatientID: 'FWD-1', destination: 'DEST' } });
      assert.equal(res.status, 202, await res.clone().text());
      assert.deepEqual(await res.json(), { destination: 'DEST', studies: 1, instances: 5 });
      await waitFor('the MR of FWD-1 at DEST', async () => {
        const st = await statusOf(atrium, 'DEST');
        return st && st.pending + st.inProgress === 0 && received(destDir).has(sopOf(mrs[0]!)) ? st : undefined;
      });
      const got = received(destDir);
      for (const f of mrs) assert.ok(datasetBytes(got.get(sopOf(f))!).equals(datasetBytes(f)));

      const unknown = await api(atrium, '/prefetch', { method: 'POST', body: { PatientID: 'FWD-1', destination: 'NOSUCHAE' } });
      assert.equal(unknown.status, 400);
      assert.equal(unknown.headers.get('content-type'), 'application/problem+json; charset=utf-8');
      const wildcard = await api(atrium, '/prefetch', { method: 'POST', body: { PatientID: 'FWD*', destination: 'DEST' } });
      assert.equal(wildcard.status, 400);
      // Another site's PatientID space: nothing of CHU-NORD's FWD-1 is found under CLIN-SUD's issuer.
      const otherSite = await api(atrium, '/prefetch', { method: 'POST', body: { PatientID: 'FWD-1', destination: 'DEST' }, token: atrium.tokens['CLIN-SUD'] });
      assert.deepEqual(await otherSite.json(), { destination: 'DEST', studies: 0, instances: 0 });
      assert.equal((await api(atrium, '/', { token: null })).status, 401);
    });

    it('sends by a rule to a peer an administrator added in the portal; a rule naming no peer stops the start; a peer a rule sends to is not removed', async () => {
      const portalDir = path.join(work, 'portal-dest');
      mkdirSync(portalDir);
      const portalDest = await startStorescp('PORTAL-DEST', portalDir);
      try {
        // The peer, added through the administration API on the running node: kept in the index, not in the file.
        const password = 'un mot de passe assez long pour les tests';
        await addUser(atrium.archive, { login: 'admin.fwd', displayName: 'Admin', roles: ['site-admin'], sites: ['CHU-NORD'], password }, { actor: 'test', via: 'cli' });
        const base = atrium.dicomweb.replace(/\/dicom-web$/, '');
        const asAdmin = sessionCaller(base, await loginLocal(base, 'admin.fwd', password));
        const added = await asAdmin('POST', '/api/admin/peers', { aeTitle: 'PORTAL-DEST', site: 'CHU-NORD', host: '127.0.0.1', port: portalDest.port });
        assert.equal(added.status, 201, await added.text());
        await atrium.close();

        // A rule naming an AE title nobody declared: the start is refused, saying which.
        const withRules = (...rules: AtriumConfig['routing']['rules']) => (c: AtriumConfig) => {
          configure()(c);
          c.routing.rules.push(...rules);
        };
        await assert.rejects(startAtrium({ index, dataDir, dimse: true, forwarding: true, configure: withRules({ name: 'typo', destinations: ['NOBODY'] }) }),
          /routing\.rules\[2\] \(typo\)\.destinations: NOBODY is not a configured peer \(neither in the configuration file nor added in the portal\)/);

        // The rule naming the portal's peer: every MR of CHU-NORD goes there too.
        atrium = await startAtrium({ index, dataDir, dimse: true, forwarding: true, configure: withRules({ name: 'mr-to-portal-peer', sites: ['CHU-NORD'], modalities: ['MR'], destinations: ['PORTAL-DEST'] }) });
        const mr = syntheticInstance({ PatientID: 'FWD-2', Modality: 'MR', Rows: 16, Columns: 16 }).file;
        const sent = await storescu('MODALITY', [write('portal-mr.dcm', mr)]);
        assert.equal(sent.code, 0, sent.output);
        const got = await waitFor('the MR at PORTAL-DEST', async () => received(portalDir).get(sopOf(mr)));
        assert.ok(datasetBytes(got).equals(datasetBytes(mr)));

        // Removing it, or taking its address away, would leave the rule sending nowhere: refused.
        const restarted = atrium.dicomweb.replace(/\/dicom-web$/, '');
        const asAdminAgain = sessionCaller(restarted, await loginLocal(restarted, 'admin.fwd', password));
        const removal = await asAdminAgain('DELETE', '/api/admin/peers/PORTAL-DEST');
        assert.equal(removal.status, 409);
        assert.match(((await removal.json()) as { detail: string }).detail, /forwarding rules send to PORTAL-DEST \(mr-to-portal-peer\)/);
        assert.equal((await asAdminAgain('PUT', '/api/admin/peers/PORTAL-DEST', { site: 'CHU-NORD' })).status, 409);
        assert.equal(atrium.archive.peers.get('PORTAL-DEST')?.port, portalDest.port);
      } finally {
        await portalDest.stop();
      }
    });
  });
}
