/**
 * The DIMSE listener facing hostile callers over a real socket: requests made to overflow
 * the answer, connections that hold slots without an AE title, and a bounded fuzz of
 * mutated PDUs. After each, the process is alive, no exception escaped, and a real peer
 * still gets its association.
 */
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { dcmtk, haveDcmtk } from './support/dcmtk.ts';
import { rawAssociation } from './support/dimse-association.ts';
import { Association, AssociationAbortedError } from '../src/dimse/association.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { datasetBytes } from './support/part10.ts';
import { CommandField, Priority, Status, encodeCommand } from '../src/dimse/command.ts';
import {
  DICOM_APPLICATION_CONTEXT, PduType, RejectReason, RejectSource, decodePdu, encodeAbort, encodeAssociateRQ, encodeReleaseRQ, pDataHeader,
  type RoleSelection,
} from '../src/dimse/pdu.ts';
import { SOPClass } from '../src/dimse/sop-classes.ts';
import { TransferSyntax } from '../src/dicom/dataset.ts';
import { prng } from './support/fuzz.ts';

const CTImageStorage = '1.2.840.10008.5.1.4.1.1.2';

/** What one connection got back, and whether the server closed it (the client never did). */
interface Exchange {
  reply: Buffer;
}

/** Connects, writes `parts` one after the other, half-closes when `end`, and resolves with what came back once the connection closed. */
function exchange(port: number, parts: Buffer[], end = true): Promise<Exchange> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    const s = net.connect({ port, host: '127.0.0.1' }, () => {
      for (const p of parts) s.write(p);
      if (end) s.end();
    });
    s.on('data', (d: Buffer) => got.push(d));
    // A reset from the server is a closed connection too.
    s.on('error', () => {});
    s.on('close', () => resolve({ reply: Buffer.concat(got) }));
  });
}

/** An open connection that the test drives, and that notes when the server closes it. */
function openConnection(port: number): Promise<{ socket: net.Socket; closed: Promise<Buffer>; isClosed: () => boolean }> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    let isClosed = false;
    const socket = net.connect({ port, host: '127.0.0.1' });
    const closed = new Promise<Buffer>((r) => socket.on('close', () => {
      isClosed = true;
      r(Buffer.concat(got));
    }));
    socket.on('data', (d: Buffer) => got.push(d));
    socket.on('error', () => {});
    socket.once('connect', () => resolve({ socket, closed, isClosed: () => isClosed }));
    socket.once('error', reject);
  });
}

async function until(what: string, condition: () => boolean): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (condition()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`never came true: ${what}`);
}


function associateRQ(calling: string, roles: RoleSelection[] = [], withImplementation = true, maxPduLength = 16384): Buffer {
  return encodeAssociateRQ({
    calledAETitle: 'ATRIUM', callingAETitle: calling, applicationContext: DICOM_APPLICATION_CONTEXT,
    presentationContexts: [
      { id: 1, abstractSyntax: SOPClass.Verification, transferSyntaxes: [TransferSyntax.ImplicitVRLittleEndian] },
      { id: 3, abstractSyntax: CTImageStorage, transferSyntaxes: [TransferSyntax.ExplicitVRLittleEndian, TransferSyntax.ImplicitVRLittleEndian] },
    ],
    userInformation: {
      maxPduLength, roles,
      ...(withImplementation ? { implementationClassUID: '1.2.3.4', implementationVersionName: 'FUZZ', asyncOperations: { invoked: 2, performed: 1 } } : {}),
    },
  });
}

/** One P-DATA-TF holding one PDV. */
function pdata(pcId: number, command: boolean, last: boolean, data: Buffer): Buffer {
  return Buffer.concat([pDataHeader(pcId, command, last, data.length), data]);
}

describe('DIMSE listener facing hostile callers', () => {
  let atrium: RunningAtrium;
  const escaped: unknown[] = [];
  const onEscaped = (e: unknown) => escaped.push(e);
  const port = () => atrium.dimse!.port;
  const healthUrl = () => atrium.dicomweb.replace(/\/dicom-web$/, '/health');

  /** A real peer: a fresh association answers C-ECHO. */
  async function echo(calling = 'STORESCU'): Promise<void> {
    const assoc = await rawAssociation(atrium, [{ id: 1, abstractSyntax: SOPClass.Verification, transferSyntaxes: [TransferSyntax.ImplicitVRLittleEndian] }], calling);
    try {
      const rsp = await assoc.request(1, { CommandField: CommandField.CEchoRQ, AffectedSOPClassUID: SOPClass.Verification });
      assert.equal(rsp.command.Status, Status.Success);
    } finally {
      await assoc.release();
    }
  }

  async function stillServing(): Promise<void> {
    assert.deepEqual(escaped, [], 'no exception escaped a connection');
    await echo();
    const health = await fetch(healthUrl());
    assert.equal(health.status, 200);
    // The HL7 listener of the same process still takes connections.
    await new Promise<void>((resolve, reject) => {
      const s = net.connect({ port: atrium.hl7!.port, host: '127.0.0.1' }, () => {
        s.destroy();
        resolve();
      });
      s.once('error', reject);
    });
  }

  before(async () => {
    process.on('uncaughtException', onEscaped);
    process.on('unhandledRejection', onEscaped);
    atrium = await startAtrium({
      dimse: true,
      hl7: true,
      configure: (c) => {
        c.peers = [
          { aeTitle: 'STORESCU', site: 'CHU-NORD', may: { store: true, query: true, retrieve: true } },
          { aeTitle: 'MODALITY', site: 'CHU-NORD', may: { store: true, query: false, retrieve: false } },
        ];
      },
    });
  });

  after(async () => {
    await atrium?.close();
    process.off('uncaughtException', onEscaped);
    process.off('unhandledRejection', onEscaped);
  });

  afterEach(() => assert.deepEqual(escaped, [], 'no exception escaped a connection'));

  it('refuses an A-ASSOCIATE-RQ whose role selection items would overflow the answer, and keeps serving DIMSE and HTTP', async () => {
    // ~2,000 role items fill the request's user information item; echoed back with Atrium's
    // own implementation items, they made an item longer than 65,535 bytes.
    const roles = Array.from({ length: 1985 }, () => ({ sopClassUID: CTImageStorage, scuRole: true, scpRole: true }));
    // Larger than the default dimse.maxAssociateRequestBytes: refused from its header.
    const { reply } = await exchange(port(), [associateRQ('MODALITY', roles, false)], false);
    assert.equal(reply[0], PduType.AssociateRJ, 'A-ASSOCIATE-RJ');
    await stillServing();
  });

  it('answers role selection once per proposed class when the request is allowed that large, and keeps serving', async () => {
    const config = atrium.dimse!.config;
    const saved = config.maxAssociateRequestBytes;
    config.maxAssociateRequestBytes = 1024 * 1024;
    try {
      // As above, two of them for classes not proposed: still more than 65,535 bytes if all were echoed.
      const roles = Array.from({ length: 1985 }, (_, i) => ({ sopClassUID: i === 500 || i === 1000 ? `${CTImageStorage}.${i % 9}` : CTImageStorage, scuRole: true, scpRole: true }));
      const { reply } = await exchange(port(), [associateRQ('MODALITY', roles, false), encodeReleaseRQ()], false);
      assert.equal(reply[0], PduType.AssociateAC, 'A-ASSOCIATE-AC');
      const ac = decodePdu(reply.subarray(0, 6 + reply.readUInt32BE(2)));
      assert.ok(ac.type === PduType.AssociateAC);
      assert.deepEqual(ac.userInformation.roles, [{ sopClassUID: CTImageStorage, scuRole: true, scpRole: false }],
        'one answer, for the one proposed storage class; no SCP role for a store-only peer');
    } finally {
      config.maxAssociateRequestBytes = saved;
    }
    await stillServing();
  });

  it('answers a peer that announces a maximum PDU length of 1 byte, in PDUs of a workable size', { timeout: 120_000 }, async () => {
    const echoRq = pdata(1, true, true, encodeCommand({ CommandField: CommandField.CEchoRQ, MessageID: 7, AffectedSOPClassUID: SOPClass.Verification, hasDataset: false }));
    const c = await openConnection(port());
    const got: Buffer[] = [];
    c.socket.on('data', (d: Buffer) => got.push(d));
    const types = () => {
      const reply = Buffer.concat(got);
      const out: number[] = [];
      for (let at = 0; at + 6 <= reply.length && at + 6 + reply.readUInt32BE(at + 2) <= reply.length; at += 6 + reply.readUInt32BE(at + 2)) out.push(reply[at]!);
      return out;
    };
    c.socket.write(Buffer.concat([associateRQ('MODALITY', [], true, 1), echoRq]));
    await until('the C-ECHO response', () => types().includes(PduType.PDataTF));
    c.socket.write(encodeReleaseRQ());
    await c.closed;
    assert.deepEqual(types(), [PduType.AssociateAC, PduType.PDataTF, PduType.ReleaseRP], 'the C-ECHO response in one P-DATA-TF, then the release');
    await stillServing();
  });

  it('refuses an A-ASSOCIATE-RQ announced longer than dimse.maxAssociateRequestBytes from its header, without waiting for its bytes', { timeout: 120_000 }, async () => {
    const c = await openConnection(port());
    const head = Buffer.from([PduType.AssociateRQ, 0, 0, 0, 0, 0]);
    head.writeUInt32BE(1024 * 1024, 2);
    // The header and a few bytes of the body; the rest never comes, and the connection stays open.
    c.socket.write(Buffer.concat([head, associateRQ('STORESCU').subarray(6, 100)]));
    const reply = await c.closed;
    assert.equal(reply[0], PduType.AssociateRJ, 'A-ASSOCIATE-RJ');
    assert.equal(reply[8], RejectSource.ServiceProviderPresentation);
    assert.equal(reply[9], RejectReason.LocalLimitExceeded);
    await stillServing();
  });

  it('closes connections that trickle their A-ASSOCIATE-RQ at the fixed deadline, and accepts a real peer meanwhile', { timeout: 120_000 }, async () => {
    const config = atrium.dimse!.config;
    const saved = config.associateTimeoutMs;
    config.associateTimeoutMs = 3000;
    const rq = associateRQ('STORESCU');
    const tricklers = await Promise.all(Array.from({ length: 3 }, () => openConnection(port())));
    // One byte every 100 ms: far more often than the deadline, so a timer reset by each byte would never fire.
    const sent = tricklers.map(() => 0);
    const timers = tricklers.map((t, i) => setInterval(() => {
      if (!t.isClosed() && sent[i]! < rq.length - 1) t.socket.write(rq.subarray(sent[i]!, ++sent[i]!));
    }, 100));
    try {
      await echo();
      assert.ok(tricklers.every((t) => !t.isClosed()), 'the real peer was served while the tricklers were connected');
      const replies = await Promise.all(tricklers.map((t) => t.closed));
      for (const r of replies) assert.equal(r[0], PduType.Abort, 'an A-ABORT before closing');
      assert.ok(sent.every((n) => n > 0 && n < rq.length), 'each was still trickling, its request unfinished');
    } finally {
      timers.forEach(clearInterval);
      for (const t of tricklers) t.socket.destroy();
      config.associateTimeoutMs = saved;
    }
    await stillServing();
  });

  it('accepts a real peer while more connections than dimse.maxAssociations wait without an A-ASSOCIATE-RQ', { timeout: 120_000 }, async () => {
    const config = atrium.dimse!.config;
    const saved = config.maxAssociations;
    config.maxAssociations = 2;
    // Connections are taken in the order they open: the idle ones are held before the real peer comes.
    const idle = await Promise.all(Array.from({ length: 5 }, () => openConnection(port())));
    try {
      if (haveDcmtk) {
        const r = await dcmtk('echoscu', ['-aet', 'STORESCU', '-aec', 'ATRIUM', '127.0.0.1', String(port())]);
        assert.equal(r.code, 0, r.output);
      }
      await echo();
      assert.ok(idle.every((c) => !c.isClosed()));
    } finally {
      for (const c of idle) c.socket.destroy();
      config.maxAssociations = saved;
    }
    await stillServing();
  });

  it('closes a connection beyond dimse.maxPendingConnections at once, before those already waiting', { timeout: 120_000 }, async () => {
    const config = atrium.dimse!.config;
    const saved = config.maxPendingConnections;
    config.maxPendingConnections = 3;
    const waiting = await Promise.all(Array.from({ length: 3 }, () => openConnection(port())));
    try {
      const extra = await openConnection(port());
      const reply = await extra.closed;
      assert.equal(reply.length, 0, 'closed without a word');
      assert.ok(waiting.every((c) => !c.isClosed()), 'the earlier connections are still open');
    } finally {
      for (const c of waiting) c.socket.destroy();
    }
    await until('the slots are freed', () => atrium.dimse!.pendingConnections === 0);
    config.maxPendingConnections = saved;
    await stillServing();
  });

  it('survives a few hundred mutated A-ASSOCIATE-RQ, P-DATA-TF and A-RELEASE PDUs (fixed seed), then serves a real peer', { timeout: 120_000 }, async () => {
    const random = prng(0x5eed_d1c0);
    const int = (n: number) => Math.floor(random() * n);
    const rq = associateRQ('STORESCU', [{ sopClassUID: CTImageStorage, scuRole: true, scpRole: false }]);
    const echoRq = pdata(1, true, true, encodeCommand({ CommandField: CommandField.CEchoRQ, MessageID: 1, AffectedSOPClassUID: SOPClass.Verification, hasDataset: false }));
    const object = syntheticInstance({ PatientID: 'FUZZ-1', Modality: 'CT', Rows: 8, Columns: 8 });
    const dataset = datasetBytes(object.file);
    const storeRq = Buffer.concat([
      pdata(3, true, true, encodeCommand({
        CommandField: CommandField.CStoreRQ, MessageID: 2, AffectedSOPClassUID: CTImageStorage, AffectedSOPInstanceUID: object.uids.sop,
        Priority: Priority.Medium, hasDataset: true,
      })),
      pdata(3, false, false, dataset.subarray(0, 200)),
      pdata(3, false, true, dataset.subarray(200)),
    ]);
    const release = encodeReleaseRQ();
    const itemTypes = [0x01, 0x04, 0x10, 0x20, 0x21, 0x30, 0x40, 0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x58, 0xff];

    function mutate(pdu: Buffer): Buffer {
      let b = Buffer.from(pdu);
      for (let n = 1 + int(3); n > 0; n--) {
        switch (int(7)) {
          case 0: // byte flips
            for (let k = 1 + int(8); k > 0 && b.length > 0; k--) b[int(b.length)] ^= 1 << int(8);
            break;
          case 1: // truncation
            b = b.subarray(0, int(b.length + 1));
            break;
          case 2: // the PDU length lies
            if (b.length >= 6) b.writeUInt32BE([0, 1, b.length - 7, b.length - 5, 0x7fffffff, 0xffffffff, int(0x100000)][int(7)]! >>> 0, 2);
            break;
          case 3: // an item, PDV or UID length lies
            if (b.length >= 8) {
              const at = 6 + int(b.length - 7);
              if (random() < 0.5) b.writeUInt16BE([0, 1, 0xffff, int(0x10000)][int(4)]!, at);
              else if (at + 4 <= b.length) b.writeUInt32BE([0, 1, 0xffffffff, int(0x1000000)][int(4)]! >>> 0, at);
            }
            break;
          case 4: // a random item type
            if (b.length > 0) b[int(b.length)] = itemTypes[int(itemTypes.length)]!;
            break;
          case 5: // random bytes inserted
            {
              const at = int(b.length + 1);
              b = Buffer.concat([b.subarray(0, at), Buffer.from(Array.from({ length: 1 + int(64) }, () => int(256))), b.subarray(at)]);
            }
            break;
          default: // a slice repeated, now and then a short one many times
            {
              const from = int(b.length + 1);
              const many = random() < 0.2;
              const to = from + int(Math.min(b.length - from, many ? 64 : b.length) + 1);
              const copies = Array.from({ length: many ? 1 + int(2000) : 1 }, () => b.subarray(from, to));
              b = Buffer.concat([b.subarray(0, to), ...copies, b.subarray(to)]);
            }
        }
      }
      return b;
    }

    const pick = <T>(list: readonly T[]): T => list[int(list.length)]!;
    const rawItem = (type: number, value: Buffer) => {
      const h = Buffer.from([type, 0, 0, 0]);
      // Lengths are right when they fit, and lie (wrapped) when they do not.
      h.writeUInt16BE(value.length & 0xffff, 2);
      return Buffer.concat([h, value]);
    };
    const latin1 = (t: string) => Buffer.from(t, 'latin1');
    const uids = [SOPClass.Verification, CTImageStorage, `${CTImageStorage}.7`, '1.2.3', '', '9'.repeat(64), `${CTImageStorage}.${'1'.repeat(300)}`];
    /** An A-ASSOCIATE-RQ grown with lengths kept consistent: many contexts, many role items, odd UIDs, unknown sub-items. */
    function grownRQ(): Buffer {
      const contexts = Array.from({ length: 1 + int(random() < 0.2 ? 300 : 4) }, (_, k) => rawItem(0x20, Buffer.concat([
        Buffer.from([random() < 0.9 ? (2 * k + 1) & 0xff : int(256), 0, 0, 0]),
        rawItem(0x30, latin1(pick(uids))),
        ...Array.from({ length: int(4) }, () => rawItem(0x40, latin1(pick([TransferSyntax.ExplicitVRLittleEndian, TransferSyntax.ImplicitVRLittleEndian, '1.2.3', '']))))
      ])));
      const role = () => {
        const uid = latin1(pick(uids));
        const v = Buffer.alloc(2 + uid.length + 2);
        v.writeUInt16BE(uid.length, 0);
        uid.copy(v, 2);
        v[2 + uid.length] = int(3);
        v[3 + uid.length] = int(3);
        return rawItem(0x54, v);
      };
      const maxLength = Buffer.alloc(4);
      maxLength.writeUInt32BE(pick([0, 1, 16384, 0xffffffff]) >>> 0);
      const window = Buffer.alloc(4);
      window.writeUInt16BE(int(0x10000));
      window.writeUInt16BE(int(0x10000), 2);
      const subItems = [
        rawItem(0x51, maxLength),
        ...Array.from({ length: random() < 0.3 ? 1900 + int(100) : int(4) }, role),
        ...(random() < 0.5 ? [rawItem(0x53, window)] : []),
        ...(random() < 0.5 ? [rawItem(0x52, latin1('1'.repeat(int(200))))] : []),
        ...Array.from({ length: int(3) }, () => rawItem(0x56 + int(10), Buffer.from(Array.from({ length: int(40) }, () => int(256))))),
      ];
      const fixed = Buffer.alloc(68, 0x20);
      fixed.writeUInt16BE(1, 0);
      fixed.writeUInt16BE(0, 2);
      fixed.write('ATRIUM'.padEnd(16), 4, 'latin1');
      fixed.write(pick(['STORESCU', 'MODALITY', 'NOBODY']).padEnd(16), 20, 'latin1');
      fixed.fill(0, 36);
      const body = Buffer.concat([fixed, rawItem(0x10, latin1(DICOM_APPLICATION_CONTEXT)), ...contexts, rawItem(0x50, Buffer.concat(subItems))]);
      const head = Buffer.from([PduType.AssociateRQ, 0, 0, 0, 0, 0]);
      head.writeUInt32BE(body.length, 2);
      return Buffer.concat([head, body]);
    }

    const cases: Buffer[][] = [];
    for (let i = 0; i < 400; i++) {
      switch (i % 5) {
        case 0: cases.push([mutate(rq)]); break;
        case 4: cases.push([random() < 0.7 ? grownRQ() : mutate(grownRQ()), echoRq, release]); break;
        case 1: cases.push([rq, mutate(echoRq), release]); break;
        case 2: cases.push([rq, mutate(storeRq), release]); break;
        default: cases.push([rq, echoRq, mutate(random() < 0.5 ? release : encodeAbort(0, 0))]);
      }
    }
    // Large requests reach the negotiation too, not only the size limit (tested above).
    const config = atrium.dimse!.config;
    const saved = config.maxAssociateRequestBytes;
    config.maxAssociateRequestBytes = 1024 * 1024;
    try {
      // Four connections at a time; each ends when its bytes are written (the listener sees the end).
      let next = 0;
      await Promise.all(Array.from({ length: 4 }, async () => {
        while (next < cases.length) {
          const parts = cases[next++]!;
          // Cut at a random point too: the reader must not depend on how bytes arrive.
          const whole = Buffer.concat(parts);
          const cut = int(whole.length + 1);
          await exchange(port(), [whole.subarray(0, cut), whole.subarray(cut)]);
        }
      }));
    } finally {
      config.maxAssociateRequestBytes = saved;
    }
    await stillServing();
    if (haveDcmtk) {
      const r = await dcmtk('echoscu', ['-aet', 'STORESCU', '-aec', 'ATRIUM', '127.0.0.1', String(port())]);
      assert.equal(r.code, 0, r.output);
    }
  });
});

describe('Atrium\'s own associations facing a hostile SCP', () => {
  const escaped: unknown[] = [];
  const onEscaped = (e: unknown) => escaped.push(e);
  before(() => {
    process.on('uncaughtException', onEscaped);
    process.on('unhandledRejection', onEscaped);
  });
  after(() => {
    process.off('uncaughtException', onEscaped);
    process.off('unhandledRejection', onEscaped);
  });
  afterEach(() => assert.deepEqual(escaped, [], 'no exception escaped a connection'));

  /** A peer that answers whatever `answer` says to each PDU it receives; resolves with its port and what it saw. */
  async function hostileScp(answer: (pdu: Buffer, socket: net.Socket) => void): Promise<{ port: number; closed: Promise<void>; stop: () => void }> {
    let closedResolve!: () => void;
    const closed = new Promise<void>((r) => (closedResolve = r));
    const server = net.createServer((socket) => {
      let held = Buffer.alloc(0);
      socket.on('error', () => {});
      socket.on('close', () => closedResolve());
      socket.on('data', (d: Buffer) => {
        held = Buffer.concat([held, d]);
        while (held.length >= 6 && held.length >= 6 + held.readUInt32BE(2)) {
          const pdu = held.subarray(0, 6 + held.readUInt32BE(2));
          held = held.subarray(pdu.length);
          answer(pdu, socket);
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return { port: (server.address() as net.AddressInfo).port, closed, stop: () => server.close() };
  }

  const verification = [{ id: 1, abstractSyntax: SOPClass.Verification, transferSyntaxes: [TransferSyntax.ImplicitVRLittleEndian] }];
  const connect = (port: number, associateTimeoutMs?: number) => Association.connect({
    host: '127.0.0.1', port, callingAETitle: 'ATRIUM', calledAETitle: 'HOSTILE', presentationContexts: verification,
    maxPduLength: 16384, idleTimeoutMs: 30_000, associateTimeoutMs,
  });

  /** An A-ASSOCIATE-AC accepting context 1, its user information item made of `subItems`. */
  function associateAC(subItems: Buffer[]): Buffer {
    const item = (type: number, value: Buffer) => Buffer.concat([Buffer.from([type, 0, value.length >> 8, value.length & 0xff]), value]);
    const fixed = Buffer.alloc(68, 0x20);
    fixed.writeUInt16BE(1, 0);
    fixed.fill(0, 36);
    const body = Buffer.concat([
      fixed, item(0x10, Buffer.from(DICOM_APPLICATION_CONTEXT)),
      item(0x21, Buffer.concat([Buffer.from([1, 0, 0, 0]), item(0x40, Buffer.from(TransferSyntax.ImplicitVRLittleEndian))])),
      item(0x50, Buffer.concat(subItems)),
    ]);
    const head = Buffer.from([PduType.AssociateAC, 0, 0, 0, 0, 0]);
    head.writeUInt32BE(body.length, 2);
    return Buffer.concat([head, body]);
  }

  it('takes an A-ASSOCIATE-AC announcing a 1-byte maximum PDU and thousands of roles it did not ask for, and still sends its C-ECHO', { timeout: 120_000 }, async () => {
    const maxLength = Buffer.from([0x51, 0, 0, 4, 0, 0, 0, 1]);
    const role = Buffer.from([0x54, 0, 0, 4, 0, 0, 1, 1]);
    let largestPdu = 0;
    const scp = await hostileScp((pdu, socket) => {
      largestPdu = Math.max(largestPdu, pdu.length);
      if (pdu[0] === PduType.AssociateRQ) socket.write(associateAC([maxLength, ...Array.from({ length: 8000 }, () => role)]));
      else if (pdu[0] === PduType.PDataTF) {
        socket.write(pdata(1, true, true, encodeCommand({ CommandField: CommandField.CEchoRSP, MessageIDBeingRespondedTo: 1, AffectedSOPClassUID: SOPClass.Verification, Status: Status.Success, hasDataset: false })));
      } else if (pdu[0] === PduType.ReleaseRQ) socket.end(Buffer.from([PduType.ReleaseRP, 0, 0, 0, 0, 4, 0, 0, 0, 0]));
    });
    try {
      const assoc = await connect(scp.port);
      assert.deepEqual(assoc.roles, [], 'no role it did not ask for');
      const rsp = await assoc.request(1, { CommandField: CommandField.CEchoRQ, AffectedSOPClassUID: SOPClass.Verification });
      assert.equal(rsp.command.Status, Status.Success);
      await assoc.release();
    } finally {
      scp.stop();
    }
  });

  it('gives up, and closes, an association whose A-ASSOCIATE-AC trickles in past its deadline', { timeout: 120_000 }, async () => {
    const ac = associateAC([Buffer.from([0x51, 0, 0, 4, 0, 0, 0x40, 0])]);
    const timers: NodeJS.Timeout[] = [];
    const scp = await hostileScp((pdu, socket) => {
      let at = 0;
      if (pdu[0] === PduType.AssociateRQ) timers.push(setInterval(() => at < ac.length - 1 && !socket.destroyed && socket.write(ac.subarray(at, ++at)), 50));
    });
    try {
      await assert.rejects(connect(scp.port, 500), AssociationAbortedError);
      await scp.closed;
    } finally {
      timers.forEach(clearInterval);
      scp.stop();
    }
  });

  it('refuses an A-ASSOCIATE-AC it cannot read, and closes the connection', { timeout: 120_000 }, async () => {
    const ac = associateAC([Buffer.from([0x51, 0, 0, 4, 0, 0, 0x40, 0])]);
    // The accepted context given twice: its item follows the fixed fields and the application context item.
    const at = 6 + 68 + 4 + DICOM_APPLICATION_CONTEXT.length;
    assert.equal(ac[at], 0x21);
    const context = ac.subarray(at, at + 4 + ac.readUInt16BE(at + 2));
    const twice = Buffer.concat([ac.subarray(0, at), context, ac.subarray(at)]);
    twice.writeUInt32BE(twice.length - 6, 2);
    const scp = await hostileScp((pdu, socket) => {
      if (pdu[0] === PduType.AssociateRQ) socket.write(twice);
    });
    try {
      await assert.rejects(connect(scp.port), AssociationAbortedError);
      await scp.closed;
    } finally {
      scp.stop();
    }
  });
});
