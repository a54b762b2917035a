import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  AbortReason, PduEncodingError, PduError, PduReader, PduTooLongError, PduType, decodePdu, encodeAbort, encodeAssociateAC, encodeAssociateRJ,
  encodeAssociateRQ, pDataHeader,
} from './pdu.ts';

describe('PDUs (PS3.8 9.3)', () => {
  const rq = {
    calledAETitle: 'ATRIUM', callingAETitle: 'CT1', applicationContext: '1.2.840.10008.3.1.1.1',
    presentationContexts: [{ id: 1, abstractSyntax: '1.2.840.10008.1.1', transferSyntaxes: ['1.2.840.10008.1.2', '1.2.840.10008.1.2.1'] }],
    userInformation: { maxPduLength: 16384, implementationClassUID: '1.2.3', implementationVersionName: 'X', roles: [{ sopClassUID: '1.2.840.10008.5.1.4.1.1.2', scuRole: false, scpRole: true }], asyncOperations: { invoked: 3, performed: 1 } },
  };

  it('reads back an A-ASSOCIATE-RQ as it was written, AE titles trimmed', () => {
    const pdu = decodePdu(encodeAssociateRQ(rq));
    assert.equal(pdu.type, PduType.AssociateRQ);
    assert.deepEqual(pdu, { type: PduType.AssociateRQ, ...rq });
  });

  it('writes AE titles space-padded to 16 bytes and the PDU length big-endian', () => {
    const b = encodeAssociateRQ(rq);
    assert.equal(b.readUInt32BE(2), b.length - 6);
    assert.equal(b.toString('latin1', 10, 26), 'ATRIUM          ');
  });

  it('reads an A-ASSOCIATE-AC with a rejected context', () => {
    const ac = { ...rq, presentationContexts: [{ id: 1, result: 0, transferSyntax: '1.2.840.10008.1.2' }, { id: 3, result: 3, transferSyntax: '' }] };
    const pdu = decodePdu(encodeAssociateAC(ac));
    assert.equal(pdu.type, PduType.AssociateAC);
    if (pdu.type === PduType.AssociateAC) assert.deepEqual(pdu.presentationContexts, ac.presentationContexts);
  });

  it('reads A-ASSOCIATE-RJ and A-ABORT fields', () => {
    assert.deepEqual(decodePdu(encodeAssociateRJ(1, 1, 3)), { type: PduType.AssociateRJ, result: 1, source: 1, reason: 3 });
    assert.deepEqual(decodePdu(encodeAbort(2, 6)), { type: PduType.Abort, source: 2, reason: 6 });
  });

  it('cuts a stream split anywhere into PDUs and PDV pieces, handing P-DATA values on as views', () => {
    const data = Buffer.from('abcdefgh');
    const command = Buffer.from('cmd!');
    // One P-DATA-TF holding two PDVs (a whole command, then a dataset fragment), then an A-ABORT.
    const pdvs = Buffer.concat([
      Buffer.from([0, 0, 0, 6, 1, 3]), command,
      Buffer.from([0, 0, 0, 10, 1, 2]), data,
    ]);
    const pdata = Buffer.concat([Buffer.from([0x04, 0, 0, 0, 0, pdvs.length]), pdvs]);
    const stream = Buffer.concat([pdata, encodeAbort(0, 0)]);
    for (let cut = 0; cut <= stream.length; cut++) {
      for (let cut2 = cut; cut2 <= stream.length; cut2 += 3) {
        const r = new PduReader(1 << 20);
        const pieces = [...r.push(stream.subarray(0, cut)), ...r.push(stream.subarray(cut, cut2)), ...r.push(stream.subarray(cut2))];
        const cmd = Buffer.concat(pieces.flatMap((p) => (p.kind === 'pdv' && p.command ? [p.data] : [])));
        const ds = Buffer.concat(pieces.flatMap((p) => (p.kind === 'pdv' && !p.command ? [p.data] : [])));
        assert.ok(cmd.equals(command) && ds.equals(data), `cuts at ${cut}, ${cut2}`);
        const ends = pieces.filter((p) => p.kind === 'pdv' && p.end);
        assert.equal(ends.length, 2);
        assert.ok(pieces.every((p) => p.kind !== 'pdv' || !p.last || p.end), 'the last bit only on a PDV\'s final piece');
        assert.equal(pieces.filter((p) => p.kind === 'pdv' && p.last).length, 2);
        const abort = pieces.filter((p) => p.kind === 'pdu');
        assert.equal(abort.length, 1);
        assert.deepEqual(decodePdu((abort[0] as { raw: Buffer }).raw), { type: PduType.Abort, source: 0, reason: 0 });
      }
    }
    const whole = new PduReader(1 << 20).push(stream);
    const piece = whole.find((p) => p.kind === 'pdv' && !p.command)!;
    assert.ok(piece.kind === 'pdv' && piece.data.buffer === stream.buffer, 'a view of the received chunk');
    void pDataHeader;
  });

  it('refuses an unknown PDU type and an oversized PDU with the abort reason to send', () => {
    assert.throws(() => new PduReader(1024).push(Buffer.from([0x0a, 0, 0, 0, 0, 0])), (e: unknown) => e instanceof PduError && e.reason === AbortReason.UnrecognizedPdu);
    assert.throws(() => new PduReader(1024).push(Buffer.from([0x04, 0, 0, 0, 0x10, 0])), (e: unknown) => e instanceof PduError && e.reason === AbortReason.InvalidPduParameterValue);
  });

  it('refuses to encode a user information item longer than 65,535 bytes with PduEncodingError, not a RangeError', () => {
    const roles = Array.from({ length: 3000 }, () => ({ sopClassUID: '1.2.840.10008.5.1.4.1.1.2', scuRole: true, scpRole: true }));
    const ac = { ...rq, presentationContexts: [{ id: 1, result: 0, transferSyntax: '1.2.840.10008.1.2' }], userInformation: { ...rq.userInformation, roles } };
    assert.throws(() => encodeAssociateAC(ac), PduEncodingError);
    assert.throws(() => encodeAssociateRQ({ ...rq, userInformation: { ...rq.userInformation, asyncOperations: { invoked: 70000, performed: 1 } } }), PduEncodingError);
    assert.throws(() => encodeAssociateAC({ ...ac, userInformation: rq.userInformation, presentationContexts: [{ id: 257, result: 0, transferSyntax: '1.2' }] }), PduEncodingError);
  });

  it('refuses an A-ASSOCIATE-RQ that gives one presentation context ID twice', () => {
    const twice = encodeAssociateRQ({ ...rq, presentationContexts: [rq.presentationContexts[0]!, { ...rq.presentationContexts[0]!, abstractSyntax: '1.2.840.10008.5.1.4.1.1.2' }] });
    assert.throws(() => decodePdu(twice), (e: unknown) => e instanceof PduError && e.reason === AbortReason.InvalidPduParameterValue);
  });

  it('refuses a PDU longer than its limit from the header alone, saying its type and length', () => {
    const reader = new PduReader(64 * 1024);
    assert.throws(() => reader.push(Buffer.from([0x01, 0, 0, 0x10, 0, 0])),
      (e: unknown) => e instanceof PduTooLongError && e.pduType === PduType.AssociateRQ && e.length === 0x100000 && e.limit === 64 * 1024);
  });

  it('refuses a PDV whose length does not fit its PDU', () => {
    const bad = Buffer.concat([Buffer.from([0x04, 0, 0, 0, 0, 8]), Buffer.from([0, 0, 0, 99, 1, 3, 0, 0])]);
    assert.throws(() => decodePdu(bad), PduError);
    assert.throws(() => new PduReader(1 << 20).push(bad), PduError);
  });
});
