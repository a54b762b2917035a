/**
 * DICOM TLS (PS3.15 B.1): DCMTK's tools over TLS against Atrium, and Atrium's own
 * association to a TLS storescp for C-MOVE. Certificates are made by openssl per run.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { dcmtk, haveDcmtk, startStorescp } from './support/dcmtk.ts';
import { Association } from '../src/dimse/association.ts';
import { CommandField, Status } from '../src/dimse/command.ts';
import { writeDataset } from '../src/dimse/identifier.ts';
import { SOPClass } from '../src/dimse/sop-classes.ts';
import { TransferSyntax } from '../src/dicom/dataset.ts';
import { syntheticInstance } from './support/synthetic.ts';

const haveOpenssl = existsSync('/usr/bin/openssl');

/** A CA and certificates it signed, in `dir`: <name>.key / <name>.crt. */
function makeCertificates(dir: string, names: string[]): void {
  const ossl = (args: string[]) => execFileSync('/usr/bin/openssl', args, { cwd: dir, stdio: 'pipe' });
  ossl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=Atrium test CA']);
  for (const name of names) {
    ossl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
    ossl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2']);
  }
}

describe('DIMSE over TLS', { skip: (!haveDcmtk || !haveOpenssl) && 'DCMTK or openssl is not installed' }, () => {
  let atrium: RunningAtrium;
  let dest: Awaited<ReturnType<typeof startStorescp>>;
  const work = mkdtempSync(path.join(tmpdir(), 'atrium-tls-'));
  const certs = path.join(work, 'certs');
  const destDir = path.join(work, 'dest');
  const c = (f: string) => path.join(certs, f);
  const obj = syntheticInstance({ PatientID: 'TLS-1', Rows: 16, Columns: 16 });

  before(async () => {
    mkdirSync(certs);
    mkdirSync(destDir);
    makeCertificates(certs, ['atrium', 'modality', 'dest']);
    dest = await startStorescp('DEST', destDir, ['+tls', c('dest.key'), c('dest.crt'), '+cf', c('ca.crt')]);
    atrium = await startAtrium({
      dimse: true,
      forwarding: true,
      configure: (config) => {
        config.routing.rules = [{ name: 'to the TLS workstation', modalities: ['MR'], destinations: ['DEST'] }];
        config.routing.pollIntervalMs = 100;
        config.dimse.tls = { certFile: c('atrium.crt'), keyFile: c('atrium.key'), caFile: c('ca.crt'), requireClientCertificate: true };
        config.peers = [
          { aeTitle: 'MODALITY', site: 'CHU-NORD', may: { store: true, query: true, retrieve: true } },
          { aeTitle: 'DEST', host: '127.0.0.1', port: dest.port, tls: true, site: 'CHU-NORD', may: { store: false, query: false, retrieve: false } },
        ];
      },
    });
  });

  after(async () => {
    await atrium?.close();
    await dest?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('forwards by rule to a TLS peer', async () => {
    const mr = syntheticInstance({ PatientID: 'TLS-2', Modality: 'MR', Rows: 8, Columns: 8 });
    const file = path.join(work, 'mr.dcm');
    writeFileSync(file, mr.file);
    assert.equal((await dcmtk('storescu', [...tlsArgs(), '-aet', 'MODALITY', '-aec', 'ATRIUM', '127.0.0.1', port(), file])).code, 0);
    const deadline = Date.now() + 15_000;
    while (readdirSync(destDir).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.equal(readdirSync(destDir).length, 1, 'the MR reached the TLS storescp');
    rmSync(path.join(destDir, readdirSync(destDir)[0]!));
  });

  const tlsArgs = () => ['+tls', c('modality.key'), c('modality.crt'), '+cf', c('ca.crt')];
  const port = () => String(atrium.dimse!.port);

  it('serves C-ECHO and C-STORE over TLS to a peer with a certificate from the trusted CA', async () => {
    const echo = await dcmtk('echoscu', [...tlsArgs(), '-aet', 'MODALITY', '-aec', 'ATRIUM', '127.0.0.1', port()]);
    assert.equal(echo.code, 0, echo.output);
    const file = path.join(work, 'a.dcm');
    writeFileSync(file, obj.file);
    const store = await dcmtk('storescu', [...tlsArgs(), '-aet', 'MODALITY', '-aec', 'ATRIUM', '127.0.0.1', port(), file]);
    assert.equal(store.code, 0, store.output);
    assert.ok(await atrium.archive.index.findInstanceBySOPInstanceUID(obj.uids.sop));
  });

  it('refuses a plain TCP caller and a TLS caller without a client certificate', async () => {
    const plain = await dcmtk('echoscu', ['-aet', 'MODALITY', '-aec', 'ATRIUM', '127.0.0.1', port()], 20_000);
    assert.notEqual(plain.code, 0);
    const anonymous = await dcmtk('echoscu', ['+tla', '+cf', c('ca.crt'), '-aet', 'MODALITY', '-aec', 'ATRIUM', '127.0.0.1', port()], 20_000);
    assert.notEqual(anonymous.code, 0, anonymous.output);
    // The listener still serves.
    assert.equal((await dcmtk('echoscu', [...tlsArgs(), '-aet', 'MODALITY', '-aec', 'ATRIUM', '127.0.0.1', port()])).code, 0);
  });

  it('closes connections that never finish the TLS handshake at the A-ASSOCIATE-RQ deadline, one beyond dimse.maxPendingConnections at once, and still serves', { timeout: 120_000 }, async () => {
    const config = atrium.dimse!.config;
    const saved = { associateTimeoutMs: config.associateTimeoutMs, maxPendingConnections: config.maxPendingConnections };
    config.associateTimeoutMs = 1000;
    config.maxPendingConnections = 3;
    const open = () => new Promise<{ socket: net.Socket; closed: Promise<void>; isClosed: () => boolean }>((resolve, reject) => {
      let isClosed = false;
      const socket = net.connect({ port: Number(port()), host: '127.0.0.1' });
      const closed = new Promise<void>((r) => socket.on('close', () => {
        isClosed = true;
        r();
      }));
      socket.on('error', () => {});
      socket.once('connect', () => resolve({ socket, closed, isClosed: () => isClosed }));
      socket.once('error', reject);
    });
    // Two silent, one stopping inside its ClientHello; connections are taken in the order they open.
    const stalled = [await open(), await open(), await open()];
    stalled[2]!.socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
    try {
      const extra = await open();
      await extra.closed;
      assert.ok(stalled.every((s) => !s.isClosed()), 'the one beyond the cap is closed first, before any deadline');
      await Promise.all(stalled.map((s) => s.closed));
    } finally {
      for (const s of stalled) s.socket.destroy();
      Object.assign(config, saved);
    }
    for (let i = 0; i < 200 && atrium.dimse!.pendingConnections > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal((await dcmtk('echoscu', [...tlsArgs(), '-aet', 'MODALITY', '-aec', 'ATRIUM', '127.0.0.1', port()])).code, 0);
  });

  it('C-MOVEs over TLS to a peer marked tls (DCMTK storescp), presenting its own certificate', async () => {
    // movescu has no TLS in Debian's DCMTK: the C-MOVE request comes from Atrium's own SCU code over TLS.
    const assoc = await Association.connect({
      host: '127.0.0.1', port: atrium.dimse!.port, callingAETitle: 'MODALITY', calledAETitle: 'ATRIUM',
      tls: { cert: readFileSync(c('modality.crt')), key: readFileSync(c('modality.key')), ca: readFileSync(c('ca.crt')), checkServerIdentity: () => undefined },
      presentationContexts: [{ id: 1, abstractSyntax: SOPClass.StudyRootMove, transferSyntaxes: [TransferSyntax.ExplicitVRLittleEndian] }],
      maxPduLength: 65536, idleTimeoutMs: 30_000,
    });
    try {
      const identifier = writeDataset([
        { tag: 0x00080052, vr: 'CS', values: ['STUDY'] },
        { tag: 0x0020000d, vr: 'UI', values: [obj.uids.study] },
      ], TransferSyntax.ExplicitVRLittleEndian);
      const rsp = await assoc.request(1, { CommandField: CommandField.CMoveRQ, AffectedSOPClassUID: SOPClass.StudyRootMove, MoveDestination: 'DEST', Priority: 0 }, identifier);
      assert.equal(rsp.command.Status, Status.Success, rsp.command.ErrorComment);
      assert.equal(rsp.command.NumberOfCompletedSuboperations, 1);
    } finally {
      await assoc.release();
    }
    assert.equal(readdirSync(destDir).length, 1);
    assert.match(dest.output(), /TLS|Association Received/);
  });

});
