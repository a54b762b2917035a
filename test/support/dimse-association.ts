/** DIMSE associations of our own, for what DCMTK's tools cannot send, and Storage Commitment requests. */
import { Association } from '../../src/dimse/association.ts';
import { CommandField, Status } from '../../src/dimse/command.ts';
import { SOPClass } from '../../src/dimse/sop-classes.ts';
import { TransferSyntax } from '../../src/dicom/dataset.ts';
import { encodeDataset } from '../../src/dicom/part10-writer.ts';
import type { RunningAtrium } from './atrium.ts';

export function rawAssociation(atrium: RunningAtrium, contexts: Array<{ id: number; abstractSyntax: string; transferSyntaxes: string[] }>, calling = 'STORESCU') {
  return Association.connect({
    host: '127.0.0.1', port: atrium.dimse!.port, callingAETitle: calling, calledAETitle: 'ATRIUM',
    presentationContexts: contexts, maxPduLength: 65536, idleTimeoutMs: 30_000,
  });
}

/**
 * Asks Atrium to commit to these objects (N-ACTION) and waits for its N-EVENT-REPORT on the
 * same association: the event type (1 all committed, 2 some failed) and the report's bytes.
 */
export async function requestStorageCommitment(atrium: RunningAtrium, calling: string, refs: Array<{ SOPClassUID: string; SOPInstanceUID: string }>, transactionUID = '1.2.3.4.5.6.7'): Promise<{ actionStatus: number; eventType?: number; body: Buffer }> {
  const assoc = await rawAssociation(atrium, [{ id: 1, abstractSyntax: SOPClass.StorageCommitmentPushModel, transferSyntaxes: [TransferSyntax.ExplicitVRLittleEndian] }], calling);
  const reports: Array<{ eventType?: number; body: Buffer }> = [];
  assoc.on('request', (m) => {
    void (async () => {
      const body = await m.dataset!.collect(1 << 20);
      reports.push({ eventType: m.command.EventTypeID, body });
      await assoc.send(m.presentationContextId, { CommandField: CommandField.NEventReportRSP, MessageIDBeingRespondedTo: m.command.MessageID, AffectedSOPClassUID: SOPClass.StorageCommitmentPushModel, AffectedSOPInstanceUID: '1.2.840.10008.1.20.1.1', EventTypeID: m.command.EventTypeID, Status: 0, hasDataset: false });
    })();
  });
  try {
    const ui = (s: string) => Buffer.from(s.length % 2 ? `${s}\0` : s, 'latin1');
    const item = (cls: string, sop: string) => new Map([
      [0x00081150, { tag: 0x00081150, vr: 'UI' as const, value: ui(cls) }],
      [0x00081155, { tag: 0x00081155, vr: 'UI' as const, value: ui(sop) }],
    ]);
    const ds = new Map([
      [0x00081195, { tag: 0x00081195, vr: 'UI' as const, value: ui(transactionUID) }],
      [0x00081199, { tag: 0x00081199, vr: 'SQ' as const, items: refs.map((r) => item(r.SOPClassUID, r.SOPInstanceUID)) }],
    ]);
    const rsp = await assoc.request(1, {
      CommandField: CommandField.NActionRQ, RequestedSOPClassUID: SOPClass.StorageCommitmentPushModel,
      RequestedSOPInstanceUID: '1.2.840.10008.1.20.1.1', ActionTypeID: 1,
    }, encodeDataset(ds, true, true));
    if (rsp.command.Status !== Status.Success) return { actionStatus: rsp.command.Status ?? -1, body: Buffer.alloc(0) };
    for (let i = 0; i < 100 && reports.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    const report = reports[0];
    if (!report) throw new Error('no N-EVENT-REPORT came back');
    return { actionStatus: rsp.command.Status, ...report };
  } finally {
    await assoc.release();
  }
}
