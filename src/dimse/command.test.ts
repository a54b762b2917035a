import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CommandError, CommandField, Status, decodeCommand, encodeCommand } from './command.ts';

describe('DIMSE command sets (PS3.7 E.1)', () => {
  it('round-trips a C-MOVE response with its counters and a failed-UID comment', () => {
    const cmd = {
      CommandField: CommandField.CMoveRSP, MessageIDBeingRespondedTo: 7, AffectedSOPClassUID: '1.2.840.10008.5.1.4.1.2.2.2',
      Status: Status.SubOperationsCompleteWithFailures, NumberOfCompletedSuboperations: 3, NumberOfFailedSuboperations: 1,
      NumberOfWarningSuboperations: 0, ErrorComment: 'one failed', hasDataset: true,
    };
    assert.deepEqual(decodeCommand(encodeCommand(cmd)), cmd);
  });

  it('starts with the command group length, which counts the rest of the group', () => {
    const b = encodeCommand({ CommandField: CommandField.CEchoRQ, MessageID: 1, AffectedSOPClassUID: '1.2.840.10008.1.1', hasDataset: false });
    assert.equal(b.readUInt32LE(0), 0x00000000);
    assert.equal(b.readUInt32LE(8), b.length - 12);
    // CommandDataSetType 0x0101: no dataset.
    const at = b.indexOf(Buffer.from([0x00, 0x00, 0x00, 0x08]));
    assert.equal(b.readUInt16LE(at + 8), 0x0101);
  });

  it('pads odd UIDs with NUL and AE titles to 16 characters', () => {
    const b = encodeCommand({ CommandField: CommandField.CMoveRQ, MessageID: 2, AffectedSOPClassUID: '1.2.3', MoveDestination: 'DEST', hasDataset: true });
    assert.ok(b.includes(Buffer.from('1.2.3\0', 'latin1')));
    assert.ok(b.includes(Buffer.from('DEST            ', 'latin1')));
  });

  it('refuses a command set without CommandField, or with an element of another group', () => {
    assert.throws(() => decodeCommand(Buffer.from([0, 0, 0x10, 0x01, 2, 0, 0, 0, 1, 0])), CommandError);
    assert.throws(() => decodeCommand(Buffer.from([8, 0, 0x18, 0, 2, 0, 0, 0, 0x31, 0])), CommandError);
  });
});
