/**
 * The audit trail exported as DICOM audit messages to a real syslog collector over TLS
 * (issue 4, item 5, second part): rsyslogd with its GnuTLS driver, mutual TLS, RFC 5425
 * framing. Audit events are made through the public interface (STOW-RS, WADO-RS); the
 * collector's file must hold each one, in the trail's order, exactly as rendered; events
 * recorded while it was down arrive once it is back; a collector whose certificate the
 * configured CA did not sign receives nothing.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { stowFiles } from './support/stow.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { freePort, haveRsyslogTls, makeCertificates, rsyslogCollector, type Collector } from './support/rsyslog.ts';
import { AuditTrail } from '../src/access/audit.ts';
import { AuditSyslogExporter, auditSourceOf, syslogMessageOf } from '../src/access/audit-syslog.ts';
import type { AuditSyslogConfig } from '../src/config/config.ts';

const skip = !haveRsyslogTls && 'rsyslogd with its gtls driver (rsyslog, rsyslog-gnutls) or openssl is not installed';

async function stow(atrium: RunningAtrium, file: Buffer): Promise<void> {
  const res = await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, [file]);
  assert.equal(res.status, 200, await res.text());
}

async function wado(atrium: RunningAtrium, url: string, accept: string): Promise<void> {
  const res = await fetch(`${atrium.dicomweb}${url}`, { headers: { authorization: `Bearer ${atrium.tokens['CHU-NORD']}`, accept } });
  assert.equal(res.status, 200);
  await res.arrayBuffer();
}

async function waitFor(what: string, ok: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const eventIdOf = (m: Buffer) => /<EventID csd-code="(\d+)"/.exec(m.toString('utf8'))?.[1];
const actionCodeOf = (m: Buffer) => /EventActionCode="([CRUDE])"/.exec(m.toString('utf8'))?.[1];

describe('audit export to a syslog collector over TLS', { skip }, () => {
  const work = mkdtempSync(path.join(tmpdir(), 'atrium-syslog-'));
  const certs = path.join(work, 'certs');
  const c = (f: string) => path.join(certs, f);
  before(() => {
    makeCertificates(certs, 'ca', [{ name: 'collector', usage: 'server' }, { name: 'atrium', usage: 'client' }]);
    // Another authority, unknown to Atrium, for the impostor.
    makeCertificates(certs, 'rogue-ca', [{ name: 'impostor', usage: 'server' }]);
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  for (const db of testDatabases()) {
    describe(`(${db.name})`, () => {
      let atrium: RunningAtrium;
      let collector: Collector;
      let cleanup: () => Promise<void>;
      const first = syntheticInstance({ PatientID: 'P-SYS', PatientName: 'SYSLOG^Sam', Rows: 4, Columns: 4 });
      const second = syntheticInstance({ PatientID: 'P-SYS-2', PatientName: 'SYSLOG^Sue', Rows: 4, Columns: 4 });

      before(async () => {
        const port = await freePort();
        collector = rsyslogCollector({ dir: path.join(work, `collector-${db.name}`), port, ca: c('ca.crt'), cert: c('collector.crt'), key: c('collector.key'), requireClientCertificate: true });
        await collector.start();
        const opened = await db.open();
        cleanup = opened.cleanup;
        atrium = await startAtrium({
          index: opened.config,
          configure: (config) => {
            config.audit.syslog = {
              host: '127.0.0.1', port, caFile: c('ca.crt'), certFile: c('atrium.crt'), keyFile: c('atrium.key'),
              auditSourceId: 'ATRIUM-TEST', pollMs: 50,
            };
          },
        });
      });
      after(async () => {
        await atrium?.close();
        await collector?.stop();
        await cleanup?.();
      });

      /** What the collector must hold: every stored event, in order, rendered as the exporter renders it. */
      const expected = async () => {
        const events = await new AuditTrail(atrium.archive.index.sql).eventsAfter(0, 10_000);
        const source = auditSourceOf(atrium.config.audit.syslog!, atrium.config.dimse.aeTitle, 'atrium-test');
        return events.map((e) => syslogMessageOf(e, source));
      };

      it('sends each audit event, in order, as an RFC 5424 message holding its DICOM audit message, over mutual TLS', async () => {
        await stow(atrium, first.file);
        await wado(atrium, `/studies/${first.uids.study}/metadata`, 'application/dicom+json');
        await wado(atrium, `/studies/${first.uids.study}`, 'multipart/related; type="application/dicom"; transfer-syntax=*');
        const want = await expected();
        assert.equal(want.length, 3);
        await waitFor('3 messages at the collector', () => collector.messages().length >= 3);
        const got = collector.messages();
        assert.equal(got.length, 3, 'each event once');
        got.forEach((m, i) => assert.ok(m.equals(want[i]!), `message ${i} as rendered:\n${m.toString()}\n${want[i]!.toString()}`));
        // What an audit repository reads in them.
        for (const m of got) {
          assert.match(m.toString('utf8'), /^<85>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z atrium-test atrium \d+ IHE\+RFC-3881 - \uFEFF<AuditMessage><EventIdentification /);
          assert.match(m.toString('utf8'), /<AuditSourceIdentification AuditEnterpriseSiteID="CHU-NORD" AuditSourceID="ATRIUM-TEST">/);
          assert.match(m.toString('utf8'), new RegExp(`ParticipantObjectID="${first.uids.study.replace(/\./g, '\\.')}" ParticipantObjectTypeCode="2" ParticipantObjectTypeCodeRole="3"><ParticipantObjectIDTypeCode csd-code="110180"`));
          assert.match(m.toString('utf8'), /ParticipantObjectID="P-SYS\^\^\^CHUNORD" ParticipantObjectTypeCode="1" ParticipantObjectTypeCodeRole="1"><ParticipantObjectIDTypeCode csd-code="2" codeSystemName="RFC-3881"/);
        }
        // STOW-RS: instances transferred in (C); metadata: accessed (R); the study: transferred out (R).
        assert.deepEqual(got.map((m) => `${eventIdOf(m)}/${actionCodeOf(m)}`), ['110104/C', '110103/R', '110104/R']);
        // The exporter marks its progress once the collector's TCP stack took the bytes, which may be just after they arrive.
        const last = Number((await new AuditTrail(atrium.archive.index.sql).eventsAfter(0, 100)).at(-1)!.id);
        await waitFor('the exporter to mark its progress', () => atrium.auditSyslog!.status().exportedThrough === last);
      });

      it('keeps what is recorded while the collector is down, and sends it in order once it is back: nothing lost, nothing twice', async () => {
        const before = collector.messages().length;
        await collector.stop();
        await stow(atrium, second.file);
        await wado(atrium, `/studies/${second.uids.study}/metadata`, 'application/dicom+json');
        await waitFor('the exporter to notice', () => atrium.auditSyslog!.status().lastError !== undefined);
        assert.equal(collector.messages().length, before);
        await collector.start();
        const want = await expected();
        assert.equal(want.length, before + 2);
        await waitFor(`${want.length} messages at the collector`, () => collector.messages().length >= want.length);
        await new Promise((r) => setTimeout(r, 300)); // a duplicate would show up now
        const got = collector.messages();
        assert.equal(got.length, want.length, 'each event once');
        got.forEach((m, i) => assert.ok(m.equals(want[i]!), `message ${i} as rendered`));
        assert.match(got.at(-2)!.toString('utf8'), /ParticipantObjectID="P-SYS-2\^\^\^CHUNORD"/);
        assert.deepEqual(got.slice(-2).map((m) => `${eventIdOf(m)}/${actionCodeOf(m)}`), ['110104/C', '110103/R']);
        assert.equal(atrium.auditSyslog!.status().lastError, undefined);
      });
    });
  }

  it('sends nothing to a collector whose certificate the configured CA did not sign, and logs why', async () => {
    const port = await freePort();
    const impostor = rsyslogCollector({ dir: path.join(work, 'impostor'), port, ca: c('rogue-ca.crt'), cert: c('impostor.crt'), key: c('impostor.key'), requireClientCertificate: false });
    await impostor.start();
    const atrium = await startAtrium();
    let logged = '';
    const logger = pino({ level: 'warn' }, new Writable({ write(chunk, _enc, done) { logged += chunk; done(); } }));
    const config: AuditSyslogConfig = { host: '127.0.0.1', port, caFile: c('ca.crt'), auditSourceId: 'ATRIUM-TEST', pollMs: 50 };
    const exporter = new AuditSyslogExporter(atrium.archive.index.sql, config, auditSourceOf(config, 'ATRIUM', 'atrium-test'), logger);
    try {
      await stow(atrium, syntheticInstance({ PatientID: 'P-IMP', Rows: 4, Columns: 4 }).file);
      exporter.start();
      await waitFor('a refusal', () => exporter.status().lastError !== undefined);
      await new Promise((r) => setTimeout(r, 1500)); // a few retries
      assert.match(exporter.status().lastError!, /collector certificate refused/);
      assert.equal(exporter.status().connected, false);
      assert.equal(exporter.status().exportedThrough, 0, 'the cursor did not move');
      assert.deepEqual(impostor.messages(), []);
      const warning = JSON.parse(logged.split('\n')[0]!) as { msg: string; err: string; collector: string };
      assert.equal(warning.msg, 'audit export to the syslog collector failed; it retries');
      assert.match(warning.err, /certificate/);
      assert.equal(warning.collector, `127.0.0.1:${port}`);
    } finally {
      await exporter.stop();
      await atrium.close();
      await impostor.stop();
    }
  });
});
