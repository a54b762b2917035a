/**
 * Objects refused because they contradict the index (a study under another patient, a
 * SOPInstanceUID another site holds): facts for identitovigilance. The sender was told
 * only that the UID cannot be accepted from its site; the audit trail keeps both sides
 * (the sender's site and object, the holder's site, study and patient record), for the
 * territory's administrators and the holder's site, never in the answer to the sender.
 */
import type { ArchiveIndex, IdentityConflict } from '../index/archive-index.ts';
import type { Site } from '../index/records.ts';
import { patientRef, type AuditEvent, type AuditTrail } from './audit.ts';

/** Who refused objects came from, as the audit trail names them. */
export type ConflictOrigin = Pick<AuditEvent, 'actor' | 'actorKind' | 'site' | 'source' | 'via'>;

/** The audit record of one refused object: both patient records, the holder's study in the details only. */
export async function identityConflictEvent(
  index: ArchiveIndex,
  siteById: ReadonlyMap<number, Site>,
  origin: ConflictOrigin,
  conflict: IdentityConflict,
): Promise<AuditEvent> {
  const sentSite = siteById.get(conflict.sent.siteId)?.code ?? '?';
  const holderSite = siteById.get(conflict.holder.siteId)?.code ?? '?';
  const holderRecord = await index.patientRecord(conflict.holder.patientId);
  const patients = [patientRef(sentSite, conflict.sent.IssuerOfPatientID, conflict.sent.PatientID)];
  if (holderRecord) patients.push(patientRef(siteById.get(holderRecord.siteId)?.code ?? '?', holderRecord.patient.IssuerOfPatientID, holderRecord.patient.PatientID));
  return {
    action: 'store', outcome: 'refused', ...origin,
    // The event's study is the sender's own: "who looked at my images?" answers it to the
    // sender's site too, and must not show it the holder's study.
    StudyInstanceUID: conflict.sent.StudyInstanceUID,
    patients,
    details: {
      why: 'identity-conflict', conflict: conflict.reason, crossSite: sentSite !== holderSite,
      SOPInstanceUID: conflict.sent.SOPInstanceUID, sentBySite: sentSite,
      heldBySite: holderSite, heldInStudy: conflict.holder.StudyInstanceUID,
    },
  };
}

/** Records the identity conflicts among refused objects (nothing when there is none). */
export async function recordIdentityConflicts(
  audit: AuditTrail,
  index: ArchiveIndex,
  siteById: ReadonlyMap<number, Site>,
  origin: ConflictOrigin,
  conflicts: ReadonlyArray<IdentityConflict | undefined>,
): Promise<void> {
  const events: AuditEvent[] = [];
  for (const c of conflicts) if (c) events.push(await identityConflictEvent(index, siteById, origin, c));
  await audit.record(events);
}
