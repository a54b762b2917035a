import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { encodeMessage, findSegment, Hl7SyntaxError, parseMessage, repetitionsOf, valueOf } from './message.ts';
import { declaredCharacterSet, decodeText } from './character-sets.ts';
import { MllpDecoder, MllpFrameRefused, MllpHeaderTooLarge, frameMessage } from './mllp.ts';
import { buildAcknowledgment, Hl7Error, Hl7ErrorCode } from './acknowledgment.ts';

const adt = [
  'MSH|^~\\&|RIS|CHU|ATRIUM|ATRIUM|20260101120000||ADT^A04^ADT_A01|MSG1|P|2.5|||||FRA|8859/1',
  'PID|||123^^^CHUNORD^PI~180012B01234533^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS||DUPONT^H\\E\\l\\F\\ne^^^^^L~MARTIN^Hélène^^^^^D||19800101|F',
].join('\r');

describe('HL7 v2 parser', () => {
  it('reads fields, repetitions, components and subcomponents by their HL7 positions', () => {
    const m = parseMessage(adt);
    const msh = findSegment(m, 'MSH')!;
    assert.equal(valueOf(msh, 1), '|');
    assert.equal(valueOf(msh, 2), '^~\\&');
    assert.equal(valueOf(msh, 9, 1), 'ADT');
    assert.equal(valueOf(msh, 9, 2), 'A04');
    assert.equal(valueOf(msh, 10), 'MSG1');
    assert.equal(valueOf(msh, 18), '8859/1');
    const pid = findSegment(m, 'PID')!;
    const ids = repetitionsOf(pid, 3);
    assert.equal(ids.length, 2);
    assert.equal(valueOf(pid, 3, 4, 1, 1), 'ASIP-SANTE-INS-NIR');
    assert.equal(valueOf(pid, 3, 4, 2, 1), '1.2.250.1.213.1.4.8');
    assert.equal(valueOf(pid, 3, 5, 1, 1), 'INS');
    assert.equal(valueOf(pid, 5, 7, 1, 1), 'D');
  });

  it('replaces the escape sequences \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ and hex', () => {
    const m = parseMessage('MSH|^~\\&|A|B|C|D|||ADT^A08|1|P|2.5\rNTE|||a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\X41\\g\\Z\\');
    assert.equal(valueOf(findSegment(m, 'NTE'), 3), 'a|b^c&d~e\\fAg\\Z\\');
  });

  it('honours other separators named by MSH-1 and MSH-2', () => {
    const m = parseMessage('MSH#$*@!#APP#FAC#####ADT$A08#9#P#2.5\nPID###1$$$X!Y*2$$$Z');
    const pid = findSegment(m, 'PID')!;
    assert.equal(valueOf(pid, 3, 1), '1');
    assert.equal(valueOf(pid, 3, 4, 1), 'X');
    assert.equal(valueOf(pid, 3, 4, 2), 'Y');
    assert.equal(valueOf(pid, 3, 1, 1, 1), '2');
    assert.equal(valueOf(pid, 3, 4, 1, 1), 'Z');
    assert.equal(valueOf(findSegment(m, 'MSH'), 9, 2), 'A08');
  });

  it('splits segments on CR, LF or CRLF', () => {
    const m = parseMessage('MSH|^~\\&|A|B\r\nPID|1\nPV1|1\rOBR|1\r\n');
    assert.deepEqual(m.segments.map((s) => s.id), ['MSH', 'PID', 'PV1', 'OBR']);
  });

  it('refuses truncated encoding characters and a message without MSH', () => {
    assert.throws(() => parseMessage('MSH|^~|A|B'), Hl7SyntaxError);
    assert.throws(() => parseMessage('MSH|^^\\&|A|B'), Hl7SyntaxError);
    assert.throws(() => parseMessage('PID|1'), Hl7SyntaxError);
  });

  it('encodes back to the same text, escaping delimiters', () => {
    const text = 'MSH|^~\\&|A|B|||||ADT^A08|1|P|2.5\rPID|||1^^^X&Y~2||A\\F\\B^C\\E\\D\r';
    assert.equal(encodeMessage(parseMessage(text)), text);
  });

  it('reads MSH-18 before decoding, and decodes 8859/1 and UTF-8', () => {
    const latin = Buffer.from('MSH|^~\\&|A|B|||||ADT^A08|1|P|2.5||||||8859/1\rPID|||1||HÉLÈNE', 'latin1');
    assert.equal(declaredCharacterSet(latin), '8859/1');
    assert.match(decodeText(latin, '8859/1'), /HÉLÈNE/);
    const utf8 = Buffer.from('MSH|^~\\&|A|B|||||ADT^A08|1|P|2.5||||||UNICODE UTF-8\rPID|||1||HÉLÈNE', 'utf8');
    assert.equal(declaredCharacterSet(utf8), 'UNICODE UTF-8');
    assert.match(decodeText(utf8, 'UNICODE UTF-8'), /HÉLÈNE/);
  });
});

describe('MLLP framing', () => {
  it('cuts frames across chunks and skips bytes between frames', () => {
    const d = new MllpDecoder(1024);
    const a = frameMessage(Buffer.from('MSH|1')), b = frameMessage(Buffer.from('MSH|2'));
    const stream = Buffer.concat([Buffer.from('\n'), a, b]);
    const out = [...d.push(stream.subarray(0, 4)), ...d.push(stream.subarray(4, 9)), ...d.push(stream.subarray(9))];
    assert.deepEqual(out.map((x) => x.toString()), ['MSH|1', 'MSH|2']);
    assert.equal(d.pendingBytes, 0);
  });

  it('keeps an unfinished frame pending and refuses one past the limit', () => {
    const d = new MllpDecoder(8);
    assert.deepEqual(d.push(Buffer.from('\x0bMSH|')), []);
    assert.equal(d.pendingBytes, 4);
    assert.throws(() => d.push(Buffer.from('0123456789')), /larger than 8/);
  });

  it('screens a frame on its first segment before keeping more than the screening bound', () => {
    const seen: string[] = [];
    const screen = { maxHeaderBytes: 16, admit: (first: Buffer) => (seen.push(first.toString()), first.toString().startsWith('MSH|OK')) };
    const d = new MllpDecoder(1024, screen);
    const ok = `MSH|OK\r${'X'.repeat(100)}`;
    assert.deepEqual(d.push(Buffer.from(`\x0b${ok.slice(0, 3)}`)), []);
    assert.deepEqual(d.push(Buffer.from(`${ok.slice(3)}\x1c\r`)).map(String), [ok], 'an admitted frame grows past the bound');
    assert.deepEqual(seen, ['MSH|OK\r']);
    const refused = new MllpDecoder(1024, screen);
    assert.throws(() => refused.push(Buffer.from(`\x0bMSH|NO\n${'X'.repeat(100)}`)), (e: unknown) => e instanceof MllpFrameRefused && e.firstSegment.toString() === 'MSH|NO\n');
    assert.deepEqual(new MllpDecoder(1024, screen).push(frameMessage(Buffer.from('MSH|OK'))).map(String), ['MSH|OK'], 'a frame without terminator is screened whole at its end');
    assert.throws(() => new MllpDecoder(1024, screen).push(Buffer.from(`\x0b${'X'.repeat(17)}`)), MllpHeaderTooLarge);
    assert.throws(() => new MllpDecoder(1024, screen).push(Buffer.from('noise'.repeat(4))), MllpHeaderTooLarge, 'noise outside frames is bounded too');
  });
});

describe('HL7 acknowledgments', () => {
  it('answers ACK^<trigger>^ACK with MSA-2 the received control ID and an ERR naming code and location', () => {
    const header = {
      sendingApplication: 'RIS', sendingFacility: 'CHU', receivingApplication: 'ATRIUM', receivingFacility: 'ATRIUM',
      messageControlId: 'MSG1', triggerEvent: 'A04', processingId: 'P', version: '2.5', characterSet: '',
    };
    const ack = buildAcknowledgment(header, 'AE', new Hl7Error('AE', Hl7ErrorCode.requiredFieldMissing, 'PID-3 is required', { segment: 'PID', field: 3 }));
    const text = encodeMessage(ack);
    const m = parseMessage(text);
    const msh = findSegment(m, 'MSH')!;
    assert.equal(valueOf(msh, 5), 'RIS');
    assert.equal(valueOf(msh, 9, 1), 'ACK');
    assert.equal(valueOf(msh, 9, 2), 'A04');
    assert.equal(valueOf(msh, 9, 3), 'ACK');
    assert.equal(valueOf(findSegment(m, 'MSA'), 1), 'AE');
    assert.equal(valueOf(findSegment(m, 'MSA'), 2), 'MSG1');
    const err = findSegment(m, 'ERR')!;
    assert.equal(valueOf(err, 2, 1), 'PID');
    assert.equal(valueOf(err, 2, 3), '3');
    assert.equal(valueOf(err, 3, 1), '101');
    assert.equal(valueOf(err, 4), 'E');
    assert.equal(valueOf(err, 8), 'PID-3 is required');
  });
});
