/**
 * The audit trail anchored outside the database (probe item 8): `atrium audit verify`
 * checks the chain against signed checkpoints of its head, so that records cut off its
 * end, a chain rewritten with fresh hashes, a removed row of audit_event_patients or a
 * forged anchor all fail; `atrium serve` anchors by itself, at shutdown too, and sends
 * the anchors to the syslog collector.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { stowFiles } from './support/stow.ts';
import { freePort, haveRsyslogTls, makeCertificates, rsyslogCollector } from './support/rsyslog.ts';
import { AuditTrail, auditHash } from '../src/access/audit.ts';
import type { SqlDatabase } from '../src/index/sql.ts';
import { atriumCliArgs } from './support/cli.ts';

const execFileAsync = promisify(execFile);
const root = path.resolve(import.meta.dirname, '..');
const KEY = 'test-anchor-key-0123456789abcdef0123456789';
const GENESIS = '0'.repeat(64);

interface Verification { ok: boolean; records: number; brokenAt?: number; why?: string; anchorsVerified?: number; lastAnchorVerified?: { seq: number; hash: string } }

/** The CLI as an operator runs it, from the sources. */
async function atriumCli(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const e: NodeJS.ProcessEnv = { ...process.env, ATRIUM_LOG_LEVEL: 'warn', ...env };
  delete e.DATABASE_URL;
  if (env.ATRIUM_AUDIT_ANCHOR_KEY === undefined) delete e.ATRIUM_AUDIT_ANCHOR_KEY;
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [...atriumCliArgs(), ...args], { cwd: root, env: e });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const x = err as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

/** Lets the test edit the trail as someone with write access to the database would. */
async function dropAppendOnly(sql: SqlDatabase): Promise<void> {
  if (sql.engine === 'sqlite') {
    for (const t of ['audit_events', 'audit_event_patients']) await sql.exec(`DROP TRIGGER IF EXISTS ${t}_no_update; DROP TRIGGER IF EXISTS ${t}_no_delete;`);
  } else {
    for (const t of ['audit_events', 'audit_event_patients']) await sql.exec(`ALTER TABLE ${t} DISABLE TRIGGER ${t}_append_only`);
  }
}

for (const db of testDatabases()) {
  describe(`audit trail anchors (${db.name})`, () => {
    const work = mkdtempSync(path.join(tmpdir(), 'atrium-anchor-'));
    after(() => rmSync(work, { recursive: true, force: true }));
    let n = 0;

    /** A fresh Atrium with a few audited requests (a store, queries naming the patient), anchored through the CLI. */
    async function trailWithAnchor(): Promise<{
      atrium: RunningAtrium; sql: SqlDatabase; anchors: string; close: () => Promise<void>;
      cli: (...args: string[]) => ReturnType<typeof atriumCli>; cliWithKey: (key: string, ...args: string[]) => ReturnType<typeof atriumCli>;
    }> {
      const dir = path.join(work, `t${n++}`);
      const opened = await db.open();
      const atrium = await startAtrium({ index: opened.config });
      const anchors = path.join(dir, 'elsewhere', 'anchors.jsonl');
      const configFile = path.join(work, `atrium-${n}.yaml`);
      const index = opened.config.engine === 'sqlite'
        ? ['index:', '  engine: sqlite', `  path: ${JSON.stringify(opened.config.path)}`]
        : ['index:', '  engine: postgres', `  url: ${JSON.stringify(opened.config.url)}`, `  schema: ${opened.config.schema}`];
      writeFileSync(configFile, [...index, 'audit:', '  anchor:', `    file: ${JSON.stringify(anchors)}`, ''].join('\n'));
      const cliWithKey = (key: string, ...args: string[]) => atriumCli({ ATRIUM_CONFIG: configFile, ATRIUM_DATA_DIR: path.join(dir, 'data'), ATRIUM_AUDIT_ANCHOR_KEY: key }, ...args);
      const cli = (...args: string[]) => cliWithKey(KEY, ...args);
      const obj = syntheticInstance({ PatientID: `P-ANCHOR-${n}`, Rows: 4, Columns: 4 });
      const token = atrium.tokens['CHU-NORD']!;
      assert.equal((await stowFiles(atrium.dicomweb, token, [obj.file])).status, 200);
      for (let i = 0; i < 3; i++) {
        assert.equal((await fetch(`${atrium.dicomweb}/studies?PatientID=P-ANCHOR-${n}`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
      }
      const anchored = await cli('audit', 'anchor');
      assert.equal(anchored.code, 0, anchored.stderr);
      return {
        atrium, sql: atrium.archive.index.sql, cli, cliWithKey, anchors,
        close: async () => {
          await atrium.close();
          await opened.cleanup();
        },
      };
    }

    const head = async (sql: SqlDatabase) => (await sql.get<{ id: number; hash: string }>('SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1'))!;

    it('verifies an intact trail against its anchors, and says which anchor it verified last', async () => {
      const t = await trailWithAnchor();
      try {
        const h = await head(t.sql);
        const r = await t.cli('audit', 'verify');
        assert.equal(r.code, 0, r.stderr);
        const v = JSON.parse(r.stdout) as Verification;
        assert.equal(v.ok, true);
        assert.equal(v.anchorsVerified, 1);
        assert.equal(v.lastAnchorVerified!.seq, Number(h.id));
        assert.equal(v.lastAnchorVerified!.hash, h.hash);
        assert.match(r.stderr, /intact/);
        // Records after the last anchor are fine: the chain covers them until the next one.
        await fetch(`${t.atrium.dicomweb}/studies`, { headers: { authorization: `Bearer ${t.atrium.tokens['CHU-NORD']}` } });
        assert.equal((await t.cli('audit', 'verify')).code, 0);
      } finally {
        await t.close();
      }
    });

    it('fails when the last records were deleted', async () => {
      const t = await trailWithAnchor();
      try {
        const h = await head(t.sql);
        await dropAppendOnly(t.sql);
        // Both tables, as a careful intruder would: the chain of what is left still holds.
        await t.sql.run('DELETE FROM audit_event_patients WHERE event_id >= ?', [Number(h.id) - 1]);
        await t.sql.run('DELETE FROM audit_events WHERE id >= ?', [Number(h.id) - 1]);
        const r = await t.cli('audit', 'verify');
        assert.equal(r.code, 1);
        const v = JSON.parse(r.stdout) as Verification;
        assert.equal(v.ok, false);
        assert.equal(v.brokenAt, Number(h.id));
        assert.match(r.stderr, /removed from its end/);
      } finally {
        await t.close();
      }
    });

    it('fails when the whole chain was rewritten with recomputed hashes', async () => {
      const t = await trailWithAnchor();
      try {
        const h = await head(t.sql);
        await dropAppendOnly(t.sql);
        // Someone else's name on the second record, and every hash after it made anew.
        const events = await new AuditTrail(t.sql).eventsAfter(0, 1000);
        let prev = GENESIS;
        for (const [i, e] of events.entries()) {
          const actor = i === 1 ? 'someone-else' : e.actor;
          const hash = auditHash(prev, e.at, { ...e, actor });
          await t.sql.run('UPDATE audit_events SET actor = ?, prev_hash = ?, hash = ? WHERE id = ?', [actor, prev, hash, e.id]);
          prev = hash;
        }
        const r = await t.cli('audit', 'verify');
        assert.equal(r.code, 1);
        const v = JSON.parse(r.stdout) as Verification;
        assert.equal(v.brokenAt, Number(h.id));
        assert.equal(v.records, events.length - 1, 'the chain itself holds up to the anchored record');
        assert.match(r.stderr, /not the one anchored at .*rewritten/);
      } finally {
        await t.close();
      }
    });

    it('fails when a row of audit_event_patients (who looked at which patient) was deleted', async () => {
      const t = await trailWithAnchor();
      try {
        const row = (await t.sql.get<{ event_id: number; patient_ref: string }>('SELECT event_id, patient_ref FROM audit_event_patients ORDER BY event_id DESC LIMIT 1'))!;
        await dropAppendOnly(t.sql);
        await t.sql.run('DELETE FROM audit_event_patients WHERE event_id = ? AND patient_ref = ?', [row.event_id, row.patient_ref]);
        const r = await t.cli('audit', 'verify');
        assert.equal(r.code, 1);
        assert.equal((JSON.parse(r.stdout) as Verification).brokenAt, Number(row.event_id));
        assert.match(r.stderr, /audit_event_patients/);
        // One added (naming a patient the record did not touch) fails too.
        await t.sql.run('INSERT INTO audit_event_patients (event_id, patient_ref) VALUES (?, ?), (?, ?)', [row.event_id, row.patient_ref, row.event_id, 'CHU-NORD|CHUNORD|OTHER']);
        assert.equal((await t.cli('audit', 'verify')).code, 1);
      } finally {
        await t.close();
      }
    });

    it('fails on an anchor line whose signature does not hold, and when the anchors are gone', async () => {
      const t = await trailWithAnchor();
      try {
        // An anchor moved back to an earlier record (to cover a truncation), signature kept.
        const line = JSON.parse(readFileSync(t.anchors, 'utf8').trim().split('\n').at(-1)!) as { seq: number; hash: string };
        const earlier = (await t.sql.get<{ id: number; hash: string }>('SELECT id, hash FROM audit_events WHERE id < ? ORDER BY id DESC LIMIT 1', [line.seq]))!;
        appendFileSync(t.anchors, JSON.stringify({ ...line, seq: Number(earlier.id), hash: earlier.hash }) + '\n');
        const r = await t.cli('audit', 'verify');
        assert.equal(r.code, 1);
        assert.match(r.stderr, /line 2: its signature does not hold/);
        // The file removed: a trail with records and no anchor is not vouched for.
        rmSync(t.anchors);
        const gone = await t.cli('audit', 'verify');
        assert.equal(gone.code, 1);
        assert.match(gone.stderr, /holds none/);
        // Anchors signed with another key than the one at hand are refused, and say so.
        assert.equal((await t.cli('audit', 'anchor')).code, 0);
        assert.equal((await t.cli('audit', 'verify', '--anchors', t.anchors)).code, 0);
        const forged = await t.cliWithKey('another-key-0123456789abcdef0123456789', 'audit', 'verify');
        assert.equal(forged.code, 1);
        assert.match(forged.stderr, /signed with another key/);
      } finally {
        await t.close();
      }
    });
  });
}

describe('audit anchors written by atrium serve', () => {
  const work = mkdtempSync(path.join(tmpdir(), 'atrium-anchor-serve-'));
  after(() => rmSync(work, { recursive: true, force: true }));

  /** `atrium serve` from the sources, in its own process; resolves with its DICOMweb URL. */
  async function serve(configFile: string, env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; url: string; stop: () => Promise<void> }> {
    const e: NodeJS.ProcessEnv = { ...process.env };
    delete e.DATABASE_URL;
    delete e.ATRIUM_AUDIT_ANCHOR_KEY;
    Object.assign(e, env);
    const child = spawn(process.execPath, [...atriumCliArgs(), 'serve', '--config', configFile], { cwd: root, env: e, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        for (const line of out.split('\n')) if (line.includes('atrium is serving')) resolve((JSON.parse(line) as { url: string }).url);
      });
      child.once('exit', (code) => reject(new Error(`atrium exited with ${code}: ${stderr}`)));
    });
    const stop = () => new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
    return { child, url, stop };
  }

  const waitFor = async (what: string, ok: () => boolean, ms = 20_000) => {
    const deadline = Date.now() + ms;
    while (!ok()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const lines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter((l) => l !== '') : []);
  const config = (dataDir: string, extra: string[]) => {
    const file = path.join(dataDir, 'atrium.yaml');
    writeFileSync(file, [`dataDir: ${dataDir}`, 'http: { host: 127.0.0.1, port: 0 }', 'dimse: { enabled: false }', 'hl7: { enabled: false }', 'index: { engine: sqlite }', 'log: { level: info }', ...extra, ''].join('\n'));
    return file;
  };

  it('anchors the head every audit.anchor.everySeconds while serving, with a key it generated into the data folder (0600)', async () => {
    const dataDir = mkdtempSync(path.join(work, 'periodic-'));
    const configFile = config(dataDir, ['audit: { anchor: { everySeconds: 1 } }']);
    const atrium = await serve(configFile, {});
    try {
      const keyFile = path.join(dataDir, 'audit-anchor.key');
      assert.equal(statSync(keyFile).mode & 0o777, 0o600);
      const token = readFileSync(path.join(dataDir, 'api-token'), 'utf8').trim();
      const anchors = path.join(dataDir, 'audit-anchors.jsonl');
      // The first start records the first administrator's creation, anchored at start.
      const atStart = lines(anchors).length;
      assert.ok(atStart <= 1, `${atStart} anchors at start`);
      assert.equal((await fetch(`${atrium.url}/studies`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
      await waitFor('an anchor while serving', () => lines(anchors).length > atStart);
      const r = await atriumCli({ ATRIUM_CONFIG: configFile }, 'audit', 'verify');
      assert.equal(r.code, 0, r.stderr);
      assert.ok(((JSON.parse(r.stdout) as Verification).anchorsVerified ?? 0) >= atStart + 1);
    } finally {
      await atrium.stop();
    }
  });

  it('anchors the head at shutdown and sends each anchor to the syslog collector', { skip: !haveRsyslogTls && 'rsyslogd with its gtls driver or openssl is not installed' }, async () => {
    const dataDir = mkdtempSync(path.join(work, 'shutdown-'));
    const certs = path.join(work, 'certs');
    makeCertificates(certs, 'ca', [{ name: 'collector', usage: 'server' }]);
    const port = await freePort();
    const collector = rsyslogCollector({ dir: path.join(work, 'collector'), port, ca: path.join(certs, 'ca.crt'), cert: path.join(certs, 'collector.crt'), key: path.join(certs, 'collector.key'), requireClientCertificate: false });
    await collector.start();
    try {
      // An hour between anchors: only the one at shutdown covers these records.
      const configFile = config(dataDir, ['audit:', '  anchor: { everySeconds: 3600 }', `  syslog: { host: 127.0.0.1, port: ${port}, caFile: ${path.join(certs, 'ca.crt')}, pollMs: 50 }`]);
      const env = { ATRIUM_AUDIT_ANCHOR_KEY: KEY };
      const atrium = await serve(configFile, env);
      // The first start records the first administrator's creation, anchored at start.
      const atStart = lines(path.join(dataDir, 'audit-anchors.jsonl')).length;
      const token = readFileSync(path.join(dataDir, 'api-token'), 'utf8').trim();
      for (let i = 0; i < 2; i++) assert.equal((await fetch(`${atrium.url}/studies`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
      await atrium.stop();
      assert.equal(existsSync(path.join(dataDir, 'audit-anchor.key')), false, 'the key from the environment, none generated');
      const all = lines(path.join(dataDir, 'audit-anchors.jsonl'));
      assert.equal(all.length, atStart + 1, 'one more anchor, at shutdown');
      const anchors = all.slice(atStart);
      const r = await atriumCli({ ATRIUM_CONFIG: configFile, ...env }, 'audit', 'verify');
      assert.equal(r.code, 0, r.stderr);
      const v = JSON.parse(r.stdout) as Verification;
      assert.ok(v.records >= 2);
      assert.equal(v.lastAnchorVerified!.seq, v.records, 'the head at shutdown (a fresh trail numbers its records from 1)');
      await waitFor('the anchor at the collector', () => collector.messages().some((m) => m.toString('utf8').includes('ATRIUM-AUDIT-ANCHOR')));
      await waitFor('every anchor at the collector', () => collector.messages().filter((m) => m.toString('utf8').includes(' ATRIUM-AUDIT-ANCHOR - ')).length >= all.length);
      const sent = collector.messages().map((m) => m.toString('utf8')).filter((m) => m.includes(' ATRIUM-AUDIT-ANCHOR - '));
      assert.equal(sent.length, all.length, 'each anchor sent once');
      const last = sent[sent.length - 1]!;
      assert.ok(last.endsWith(` ATRIUM-AUDIT-ANCHOR - ${anchors[0]}`), last);
      // What the collector kept verifies the trail too.
      const copy = path.join(work, 'from-collector.jsonl');
      writeFileSync(copy, sent.map((m) => m.slice(m.indexOf(' - ') + 3)).join('\n') + '\n');
      assert.equal((await atriumCli({ ATRIUM_CONFIG: configFile, ...env }, 'audit', 'verify', '--anchors', copy)).code, 0);
    } finally {
      await collector.stop();
    }
  });
});
