/**
 * The HL7 listener facing peers that are not configured senders, or misbehave: a frame
 * is refused on its MSH before the rest is read, garbage is not kept, connections are
 * capped and idle or endless ones closed; no frame, however broken, ends the process.
 * Through a real MLLP socket, as a RIS or an attacker would speak.
 */
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { MllpClient, readAcknowledgment, sendHl7, type Acknowledgment } from './support/hl7.ts';
import { frameMessage, MllpDecoder } from '../src/hl7/mllp.ts';
import { findRegisteredPatient } from '../src/patients/patient-registry.ts';
import type { Hl7Config } from '../src/config/config.ts';
import { prng as mulberry32 } from './support/fuzz.ts';

let controlCounter = 0;

function msh(type: string, options: { application?: string; facility?: string; charset?: string; controlId?: string } = {}): string {
  controlCounter += 1;
  return `MSH|^~\\&|${options.application ?? 'RIS_NORD'}|${options.facility ?? 'CHU_NORD'}|ATRIUM|GHT|20260110093000||${type}|${options.controlId ?? `HOST${controlCounter}`}|P|2.5|||||FRA|${options.charset ?? '8859/1'}`;
}

function message(...segments: string[]): string {
  return segments.join('\r') + '\r';
}

const pid = (PatientID: string, name = 'DUPONT^HELENE^^^^^L') => `PID|1||${PatientID}^^^CHUNORD^PI||${name}||19800115|F`;

/** Atrium with the HL7 listener, RIS_NORD@CHU_NORD as the one known sender, and these listener options. */
async function startHl7Atrium(options: Partial<Hl7Config> = {}): Promise<RunningAtrium> {
  return startAtrium({
    hl7: true,
    configure: (c) => {
      c.hl7.senders = [{ application: 'RIS_NORD', facility: 'CHU_NORD', site: 'CHU-NORD' }];
      Object.assign(c.hl7, options);
    },
  });
}

/** A raw connection that records what the server answers and when it ends the connection. */
class RawPeer {
  readonly acks: Acknowledgment[] = [];
  readonly ended: Promise<void>;
  readonly closed: Promise<void>;
  isClosed = false;
  private readonly decoder = new MllpDecoder(1024 * 1024);
  private onAck: (() => void) | undefined;

  private constructor(readonly socket: net.Socket) {
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      for (const payload of this.decoder.push(chunk)) this.acks.push(readAcknowledgment(payload));
      this.onAck?.();
    });
    this.ended = new Promise((resolve) => socket.once('end', resolve));
    this.closed = new Promise((resolve) => socket.once('close', () => {
      this.isClosed = true;
      this.onAck?.();
      resolve();
    }));
  }

  static async connect(port: number): Promise<RawPeer> {
    const socket = net.connect({ port, host: '127.0.0.1', noDelay: true });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new RawPeer(socket);
  }

  /** Resolves when an acknowledgment satisfying `done` has come, or the connection closed. */
  until(done: (ack: Acknowledgment) => boolean): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.isClosed || this.acks.some(done)) {
          this.onAck = undefined;
          resolve();
        }
      };
      this.onAck = check;
      check();
    });
  }

  /** Writes `bytes` in pieces, each after the last one drained, until done or the server answered or closed; the bytes written. */
  async writeUntilAnswered(bytes: Buffer, piece = 64 * 1024): Promise<number> {
    let sent = 0;
    const answered = this.until(() => true).then(() => 'answered' as const);
    while (sent < bytes.length) {
      const chunk = bytes.subarray(sent, sent + piece);
      const drained = new Promise<'drained'>((resolve) => (this.socket.write(chunk) ? resolve('drained') : this.socket.once('drain', () => resolve('drained'))));
      sent += chunk.length;
      if ((await Promise.race([drained, answered])) === 'answered') break;
    }
    return sent;
  }

  destroy(): Promise<void> {
    this.socket.destroy();
    return this.closed;
  }
}

describe('HL7 listener before the sender is known', () => {
  let atrium: RunningAtrium;
  let port: number;
  // Within this process, an exception a connection let escape would land here (the test runner keeps it alive).
  const escaped: unknown[] = [];
  const onEscaped = (e: unknown) => escaped.push(e);

  before(async () => {
    process.on('uncaughtException', onEscaped);
    process.on('unhandledRejection', onEscaped);
    atrium = await startHl7Atrium();
    port = atrium.hl7!.port;
  });

  after(async () => {
    await atrium?.close();
    process.off('uncaughtException', onEscaped);
    process.off('unhandledRejection', onEscaped);
  });

  afterEach(() => assert.deepEqual(escaped, [], 'no exception escaped a connection'));

  it('answers AR to an unknown sender\'s huge frame after its MSH and ends the connection before the rest is sent', { timeout: 120_000 }, async () => {
    const body = 'OBX|1|ED|PDF||' + 'A'.repeat(15 * 1024 * 1024) + '\r';
    const m = message(msh('ADT^A04^ADT_A01', { application: 'HIS_X', facility: 'ELSEWHERE' }), pid('P9001')) + body;
    const frame = frameMessage(Buffer.from(m, 'latin1'));
    const peer = await RawPeer.connect(port);
    try {
      const sent = await peer.writeUntilAnswered(frame);
      await peer.ended;
      assert.ok(sent < frame.length / 2, `the server answered after ${sent} of ${frame.length} bytes`);
      assert.equal(peer.acks.length, 1);
      assert.equal(peer.acks[0]!.code, 'AR');
      assert.equal(peer.acks[0]!.errorCode, '204');
      assert.match(peer.acks[0]!.errorMessage!, /HIS_X.*ELSEWHERE.*not a configured HL7 sender/);
    } finally {
      await peer.destroy();
    }
    assert.equal(await findRegisteredPatient(atrium.archive.index.sql, { siteId: atrium.archive.sites.get('CHU-NORD')!.id, IssuerOfPatientID: 'CHUNORD', PatientID: 'P9001' }), undefined);
  });

  it('closes a frame without MSH once it passes the bound, and a stream of noise outside frames', { timeout: 120_000 }, async () => {
    const size = 16 * 1024 * 1024;
    for (const garbage of [Buffer.concat([Buffer.of(0x0b), Buffer.alloc(size, 'G')]), Buffer.alloc(size, 'N')]) {
      const peer = await RawPeer.connect(port);
      const sent = await peer.writeUntilAnswered(garbage);
      await peer.closed;
      assert.ok(sent < garbage.length / 2, `closed after ${sent} of ${garbage.length} bytes`);
      assert.deepEqual(peer.acks, []);
    }
    const ack = await sendHl7(port, message(msh('ADT^A04^ADT_A01'), pid('P9002')));
    assert.equal(ack.code, 'AA', ack.text);
  });

  it('answers AR and closes the connection when a frame of a known sender is followed by one of an unknown sender', { timeout: 120_000 }, async () => {
    const known = message(msh('ADT^A04^ADT_A01'), pid('P9003'));
    const unknown = message(msh('ADT^A04^ADT_A01', { application: 'HIS_X' }), pid('P9004'));
    const peer = await RawPeer.connect(port);
    peer.socket.write(Buffer.concat([frameMessage(Buffer.from(known, 'latin1')), frameMessage(Buffer.from(unknown, 'latin1'))]));
    await peer.ended;
    await peer.destroy();
    assert.deepEqual(peer.acks.map((a) => a.code), ['AA', 'AR'], 'answers in order');
  });

  it('answers AR naming MSH-2, not an internal error, to a message whose MSH-2 is too short to name a repetition separator', { timeout: 120_000 }, async () => {
    for (const encoding of ['^', '']) {
      const known = await sendHl7(port, `MSH|${encoding}|RIS_NORD|CHU_NORD|ATRIUM|GHT|20260110093000||ADT^A04^ADT_A01|ENC${encoding.length}|P|2.5||||||\r${pid('P9006')}\r`);
      assert.equal(known.code, 'AR', known.text);
      assert.equal(known.errorLocation, 'MSH-2');
      const unknown = await RawPeer.connect(port);
      unknown.socket.write(frameMessage(Buffer.from(`MSH|${encoding}|HIS_X|ELSEWHERE|ATRIUM|GHT|20260110093000||ADT^A04^ADT_A01|ENCX|P|2.5||||||\r`, 'latin1')));
      await unknown.ended;
      await unknown.destroy();
      assert.deepEqual(unknown.acks.map((a) => [a.code, a.errorCode, a.controlId]), [['AR', '204', 'ENCX']]);
    }
  });

  it('answers AR (207) when the database fails while applying a message, and goes on serving', { timeout: 120_000 }, async () => {
    const sql = atrium.archive.index.sql;
    await sql.exec('ALTER TABLE audit_events RENAME TO audit_events_away');
    let failed: Acknowledgment;
    try {
      failed = await sendHl7(port, message(msh('ADT^A04^ADT_A01'), pid('P9005')));
    } finally {
      await sql.exec('ALTER TABLE audit_events_away RENAME TO audit_events');
    }
    assert.equal(failed.code, 'AR', failed.text);
    assert.equal(failed.errorCode, '207');
    const ack = await sendHl7(port, message(msh('ADT^A04^ADT_A01'), pid('P9005')));
    assert.equal(ack.code, 'AA', ack.text);
  });

  it('survives hundreds of mutated frames from known and unknown senders, then applies a valid ADT^A01 with AA', { timeout: 120_000 }, async () => {
    const random = mulberry32(0x48_4c_37);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    const bases = (application: string) => [
      message(msh('ADT^A04^ADT_A01', { application }), 'EVN||20260110093000', pid('P9100', 'DUPONT^HÉLÈNE^^^^^L'), 'PV1|1|O'),
      message(msh('ADT^A08^ADT_A01', { application, charset: 'UNICODE UTF-8' }), pid('P9101', 'ŒUVRE^ZOÉ^^^^^L')),
      message(msh('ORM^O01^ORM_O01', { application }), pid('P9102', 'BERNARD^LUC^^^^^L'), 'PV1|1|O', 'ORC|NW|PLAC-91|FILL-91||SC',
        'OBR|1|PLAC-91|FILL-91|CTABD^Scanner abdomen^LOCAL|||20260112083000|||||||||||ACC-9102||||||CT|||^^^20260112101500', 'ZDS|1.2.250.1.999.1.9102^ATRIUM^Application^DICOM'),
      message(msh('ADT^A40^ADT_A39', { application }), pid('P9103'), 'MRG|P9104^^^CHUNORD^PI'),
    ];
    const mutations: Array<(bytes: Buffer) => Buffer> = [
      (b) => { const c = Buffer.from(b); for (let i = 0, n = 1 + Math.floor(random() * 8); i < n; i++) c[Math.floor(random() * c.length)] = Math.floor(random() * 256); return c; },
      (b) => b.subarray(0, 1 + Math.floor(random() * (b.length - 1))),
      (b) => Buffer.concat([Buffer.of(0x0b), b]),
      (b) => Buffer.concat([b, Buffer.of(0x1c, 0x0d), b]),
      (b) => Buffer.concat([b.subarray(0, Math.floor(random() * Math.min(b.length, 60))), Buffer.from('\r', 'latin1'), b.subarray(60)]),
      (b) => Buffer.from(b.toString('latin1').replace('^~\\&', pick(['^~\\', '^^\\&', '|~\\&', '^~\\&#', 'ABCD', '', '\r~\\&', '^~\\&\x0b'])), 'latin1'),
      (b) => Buffer.from(b.toString('latin1').replace('MSH|', pick(['MSH', 'MSH^', 'MS', 'XSH|', 'MSH\r', 'MSH\x1c'])), 'latin1'),
      (b) => Buffer.from(b.toString('latin1').replace('DUPONT', pick(['\\F\\\\S\\\\T\\\\R\\\\E\\', '\\X41FF\\', '\\XZZ\\', '\\', '\\.br\\\\H\\', '\\X' + 'F'.repeat(2001) + '\\'])), 'latin1'),
      (b) => Buffer.from(b.toString('latin1').replace('PV1|1|O', 'PV1|1|O|' + pick(['Z', '^', '~', '&']).repeat(Math.floor(random() * 200_000))), 'latin1'),
      (b) => Buffer.from(b.toString('latin1').replace('ATRIUM|GHT', 'ATRIUM|' + 'G'.repeat(Math.floor(random() * 20_000))), 'latin1'),
      (b) => Buffer.concat([b.subarray(0, 30 + Math.floor(random() * 60)), Buffer.of(0xc3, 0x28, 0xff, 0xfe, 0xe2, 0x82), b.subarray(90)]),
      (b) => Buffer.from(b.toString('latin1').replace(/\|(8859\/1|UNICODE UTF-8)\r/, `|${pick(['UNICODE UTF-16', '8859/15', 'ISO IR87', '', '~UNICODE UTF-8', 'A'.repeat(300), '\x00'])}\r`), 'latin1'),
      (b) => b.subarray(0, b.indexOf(0x0d)),
    ];
    const framed = (payload: Buffer) => {
      const shape = random();
      return shape < 0.1 ? payload : shape < 0.2 ? Buffer.concat([Buffer.of(0x0b), payload]) : shape < 0.3 ? Buffer.concat([payload, Buffer.of(0x1c, 0x0d)]) : frameMessage(payload);
    };
    const outcomes = new Map<string, number>();
    for (let i = 0; i < 300; i++) {
      const application = i % 2 === 0 ? 'RIS_NORD' : 'HIS_X';
      const base = Buffer.from(pick(bases(application)), 'latin1');
      let mutated: Buffer = base;
      for (let k = 0, n = 1 + Math.floor(random() * 2); k < n; k++) mutated = pick(mutations)(mutated);
      // A frame left open is ended; the probe (an unsupported type from the known sender, AR 200)
      // tells when the server has dealt with everything before it, unless it closed first.
      const probeId = `PROBE${i}`;
      const probe = frameMessage(Buffer.from(message(msh('SIU^S12^SIU_S12', { controlId: probeId })), 'latin1'));
      const peer = await RawPeer.connect(port);
      peer.socket.write(Buffer.concat([framed(mutated), Buffer.of(0x1c, 0x0d), probe]));
      await peer.until((a) => a.controlId === probeId);
      for (const a of peer.acks) assert.notEqual(a.errorCode, '207', `case ${i}: an internal error answered ${JSON.stringify(mutated.toString('latin1').slice(0, 200))}: ${a.errorMessage}`);
      const outcome = peer.isClosed ? 'closed' : 'probe answered';
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      await peer.destroy();
    }
    assert.ok((outcomes.get('closed') ?? 0) > 0 && (outcomes.get('probe answered') ?? 0) > 0, JSON.stringify([...outcomes]));

    const client = await MllpClient.connect(port);
    try {
      const ack = await client.send(message(msh('ADT^A01^ADT_A01'), 'EVN||20260110093000', pid('P9199', 'MARTIN^PAUL^^^^^L'), 'PV1|1|I'));
      assert.equal(ack.code, 'AA', ack.text);
    } finally {
      await client.close();
    }
    const applied = await findRegisteredPatient(atrium.archive.index.sql, { siteId: atrium.archive.sites.get('CHU-NORD')!.id, IssuerOfPatientID: 'CHUNORD', PatientID: 'P9199' });
    assert.equal(applied?.PatientName, 'MARTIN^PAUL');
  });
});

describe('HL7 listener connection limit', () => {
  let atrium: RunningAtrium;

  before(async () => {
    atrium = await startHl7Atrium({ maxConnections: 2 });
  });

  after(async () => {
    await atrium?.close();
  });

  it('closes connections beyond hl7.maxConnections while a known sender on an open one still gets AA', { timeout: 120_000 }, async () => {
    const port = atrium.hl7!.port;
    const client = await MllpClient.connect(port);
    const idle = await RawPeer.connect(port);
    const extra: RawPeer[] = [];
    try {
      assert.equal((await client.send(message(msh('ADT^A04^ADT_A01'), pid('P9201')))).code, 'AA');
      for (let i = 0; i < 3; i++) extra.push(await RawPeer.connect(port));
      await Promise.all(extra.map((p) => p.closed));
      assert.equal(idle.isClosed, false);
      const ack = await client.send(message(msh('ADT^A08^ADT_A01'), pid('P9201', 'DURAND^ALICE^^^^^L')));
      assert.equal(ack.code, 'AA', ack.text);
    } finally {
      await idle.destroy();
      await client.close();
    }
    // The places freed are taken again.
    assert.equal((await sendHl7(port, message(msh('ADT^A08^ADT_A01'), pid('P9201')))).code, 'AA');
  });
});

describe('HL7 listener timeouts', () => {
  let idleAtrium: RunningAtrium;
  let frameAtrium: RunningAtrium;

  before(async () => {
    idleAtrium = await startHl7Atrium({ idleTimeoutMs: 300 });
    frameAtrium = await startHl7Atrium({ frameTimeoutMs: 300 });
  });

  after(async () => {
    await idleAtrium?.close();
    await frameAtrium?.close();
  });

  it('closes a connection that sends nothing for hl7.idleTimeoutMs, also after an answered message', { timeout: 120_000 }, async () => {
    const silent = await RawPeer.connect(idleAtrium.hl7!.port);
    await silent.closed;
    const client = await MllpClient.connect(idleAtrium.hl7!.port);
    const closed = new Promise((resolve) => client.socket.once('close', resolve));
    assert.equal((await client.send(message(msh('ADT^A04^ADT_A01'), pid('P9301')))).code, 'AA');
    await closed;
  });

  it('closes a connection whose frame is not complete within hl7.frameTimeoutMs, however its bytes trickle in', { timeout: 120_000 }, async () => {
    const peer = await RawPeer.connect(frameAtrium.hl7!.port);
    peer.socket.write(Buffer.from(`\x0b${message(msh('ADT^A04^ADT_A01'))}`, 'latin1'));
    // One byte at a time, well within the idle timeout (the default, a minute), never the end block.
    const trickle = setInterval(() => peer.socket.write('Z'), 20);
    try {
      await peer.closed;
    } finally {
      clearInterval(trickle);
    }
    assert.deepEqual(peer.acks, []);
    assert.equal((await sendHl7(frameAtrium.hl7!.port, message(msh('ADT^A04^ADT_A01'), pid('P9302')))).code, 'AA');
  });
});

