/**
 * The CI-SIS teleradiology volet (ANS, "Volet Téléradiologie", HL7 v2.5.1, MSH-21
 * `1.0^CISIS_TLR_HL7_V2`): a site's RIS asks Atrium's teleradiology for an exam.
 *   flux 1  ORM^O01, ORC-1 NW: the request (patient with INS in PID-3 and its status in
 *           PID-32; OBR-4 the modality; OBR-31 the justification; OBX the volet's clinical
 *           items: anatomical region, height, weight, pregnancy, history, proposed protocol)
 *   flux 2  ORM^O01, ORC-1 CA: the request cancelled (reason in ORC-16)
 *   flux 3  ORU^R01, ORC-1 OK or OC: Atrium's answer (exchange/teleradiology-volet-answers.ts)
 *   flux 4  OMI^O23 (ORC-5 SC, IPC): after the exam, its accession number, Study Instance
 *           UID (IPC-3) and how long the images are kept (TQ1-6)
 * Each is mapped onto the teleradiology requests of workflow/tele-requests.ts: a request
 * filed here is on the worklists as one filed in the portal. The volet is a draft: its
 * version, profile name and codes are kept here, in `teleradiologyVolet`, and nowhere else.
 */
import type { Principal } from '../access/principal.ts';
import type { Archive } from '../archive/archive.ts';
import type { Hl7Sender, TeleradiologyConfig } from '../config/config.ts';
import { isValidUID } from '../dicom/uids.ts';
import type { Site } from '../index/records.ts';
import { applyMigrations, type Migration } from '../index/migrations.ts';
import type { SqlDatabase } from '../index/sql.ts';
import { registerPatientIn } from '../patients/patient-registry.ts';
import { insValue, parseINS } from '../patients/ins.ts';
import { TeleError, TeleRequests, type NewTeleRequest } from '../workflow/tele-requests.ts';
import { Hl7Error, Hl7ErrorCode } from './acknowledgment.ts';
import { identifiersOf, xcnName } from './fields.ts';
import { componentOf, encodeSegment, findSegment, repetitionsOf, standardDelimiters, valueOf, type Hl7Message, type Segment } from './message.ts';
import { patientOf, registryError, requireSegment } from './patient-messages.ts';

/** The one place the volet's version and vocabulary live (it is a draft: they may move). */
export const teleradiologyVolet = {
  /** MSH-21.2, the message profile. */
  profile: 'CISIS_TLR_HL7_V2',
  /** MSH-21.1, the version of the volet Atrium implements (its published examples say 1.0). */
  version: '1.0',
  /** MSH-12 of the messages Atrium sends. */
  hl7Version: '2.5.1',
  /** Coding system of the volet's own OBX-3 codes. */
  observationSystem: 'TLR_OBSERVATION',
  /** ORC-17 of Atrium's answers (the answering organisation's type). */
  organisationType: ['PLATEFORME_TELERADIOLOGIE', '', 'TLR_TYPE_ORGANISATION'],
  codes: {
    /** Anatomical region, SNOMED CT coded; sub-id x.1 the region, x.2 the laterality. Earlier drafts said REGION_ANATOMIQUE. */
    region: ['LOCALISATION_ANATOMIQUE', 'REGION_ANATOMIQUE'],
    protocol: 'PROTOCOLE_IMAGERIE',
    history: ['ANTECEDENTS', '11329-0'],
    height: '8302-2',
    weight: '29463-7',
    pregnancy: '82810-3',
  },
} as const;

/** Whether MSH-21 names the volet (whatever version: a wrong version is refused by name, not taken for plain HL7). */
export function isTeleradiologyVolet(msh: Segment): boolean {
  return repetitionsOf(msh, 21).some((rep) => componentOf(rep, 2).trim() === teleradiologyVolet.profile);
}

export const teleradiologyVoletMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'teleradiology requests received over the CI-SIS volet, and the answers owed to their RIS',
    sql: `
CREATE TABLE tlr_volet_orders (
  request_id BIGINT PRIMARY KEY REFERENCES tele_requests (id),
  site_id BIGINT NOT NULL REFERENCES sites (id),
  placer_order_number {text} NOT NULL,
  sender_application {text} NOT NULL,
  sender_facility {text} NOT NULL,
  pid_segment TEXT NOT NULL,
  procedure_code TEXT NOT NULL,
  image_retention TEXT,
  cancelled_at {text},
  answer_code {text},
  answer_attempts INTEGER NOT NULL DEFAULT 0,
  answer_next_at {text},
  answer_status {text},
  answer_last_error TEXT,
  answer_payload TEXT,
  answer_sent_at {text},
  created_at {text} NOT NULL
);
CREATE UNIQUE INDEX tlr_volet_orders_placer ON tlr_volet_orders (site_id, placer_order_number);
`,
  },
];

export async function migrateTeleradiologyVolet(db: SqlDatabase): Promise<void> {
  await applyMigrations(db, teleradiologyVoletMigrations, 'tlr_volet_migrations');
}

const text = (v: string): string | undefined => (v.trim() === '' || v === '""' ? undefined : v.trim());

/** The OBX of the message, by OBX-3.1, each with its sub-id (OBX-4), value (OBX-5) and units (OBX-6). */
interface Observation { code: string; subId: string; type: string; value: string; display: string; units: string; segment: Segment }

function observationsOf(message: Hl7Message): Observation[] {
  return message.segments.filter((s) => s.id === 'OBX').map((s) => {
    const type = valueOf(s, 2);
    // ED (encapsulated data): the text is component 5, base64 when component 4 says so.
    const value = type === 'ED'
      ? (valueOf(s, 5, 4).toLowerCase() === 'base64' ? Buffer.from(valueOf(s, 5, 5), 'base64').toString('utf8') : valueOf(s, 5, 5))
      : valueOf(s, 5, 1);
    return { code: valueOf(s, 3, 1), subId: valueOf(s, 4), type, value, display: valueOf(s, 5, 2), units: valueOf(s, 6, 1), segment: s };
  });
}

/** The RPPS of an XCN: IDNPS type-8 identifiers are "8" followed by the 11-digit RPPS. */
function rppsOf(id: string): string | undefined {
  if (/^8[0-9]{11}$/.test(id)) return id.slice(1);
  return /^[0-9]{11}$/.test(id) ? id : undefined;
}

const pregnancyTexts: Record<string, string> = { Y: 'enceinte', N: 'non enceinte', UNK: 'inconnu' };

/** What a flux 1 message asks, read and checked: every mandatory item missing is named at once. */
export interface VoletRequest {
  placerOrderNumber: string;
  request: Omit<NewTeleRequest, 'patient' | 'site'>;
  procedureCode: string;
}

export function readVoletRequest(message: Hl7Message, specialty: string): VoletRequest {
  const orc = findSegment(message, 'ORC');
  const obr = findSegment(message, 'OBR');
  const tq1 = findSegment(message, 'TQ1');
  const obx = observationsOf(message);
  const missing: Array<{ item: string; segment: string; field?: number }> = [];
  const placer = text(valueOf(orc, 2)) ?? text(valueOf(obr, 2));
  if (!placer) missing.push({ item: 'ORC-2 (identifiant de la demande)', segment: 'ORC', field: 2 });
  const modality = text(valueOf(obr, 4, 1));
  if (!modality) missing.push({ item: 'OBR-4 (modalité de l\'examen demandé)', segment: 'OBR', field: 4 });
  const justification = text(valueOf(obr, 31, 2)) ?? text(valueOf(obr, 31, 1));
  if (!justification) missing.push({ item: 'OBR-31 (justification de la demande)', segment: 'OBR', field: 31 });
  const physicianName = xcnName(orc, 12) ?? xcnName(obr, 16);
  if (!physicianName) missing.push({ item: 'ORC-12 (prescripteur)', segment: 'ORC', field: 12 });
  const codes = teleradiologyVolet.codes;
  const regions = obx.filter((o) => (codes.region as readonly string[]).includes(o.code));
  const region = regions.filter((o) => o.subId === '' || o.subId.endsWith('.1') || !o.subId.includes('.'));
  if (region.length === 0 || region.every((o) => !text(o.value))) missing.push({ item: `OBX ${codes.region[0]} (localisation anatomique)`, segment: 'OBX' });
  if (missing.length > 0) {
    const first = missing[0]!;
    throw new Hl7Error('AE', Hl7ErrorCode.requiredFieldMissing,
      `mandatory items of the CI-SIS teleradiology volet missing: ${missing.map((m) => m.item).join(', ')}`,
      { segment: first.segment, ...(first.field !== undefined ? { field: first.field } : {}) });
  }
  const laterality = regions.filter((o) => o.subId.endsWith('.2')).map((o) => o.display || o.value);
  const bodyPart = [region.map((o) => o.display || o.value).join(', '), ...laterality].join(', ');
  const one = (code: string) => obx.find((o) => o.code === code);
  const height = one(codes.height), weight = one(codes.weight), pregnancy = one(codes.pregnancy);
  const history = obx.filter((o) => (codes.history as readonly string[]).includes(o.code)).map((o) => o.display || o.value).filter((v) => v !== '');
  const context = [
    weight && text(weight.value) ? `poids ${weight.value} ${weight.units || 'kg'}` : undefined,
    height && text(height.value) ? `taille ${height.value} ${height.units || 'cm'}` : undefined,
    pregnancy && text(pregnancy.value) ? `grossesse : ${pregnancyTexts[pregnancy.value] ?? pregnancy.value}` : undefined,
    history.length > 0 ? `antécédents : ${history.join('; ')}` : undefined,
  ].filter((v): v is string => v !== undefined);
  const protocol = text(one(codes.protocol)?.value ?? '');
  const procedureText = text(valueOf(obr, 4, 2)) ?? modality!;
  // TQ1-9 priority (table 0485): S (stat) and A (ASAP) are urgent.
  const priority = valueOf(tq1, 9, 1);
  const rpps = rppsOf(valueOf(orc, 12, 1)) ?? rppsOf(valueOf(obr, 16, 1));
  const accession = text(valueOf(obr, 18));
  return {
    placerOrderNumber: placer!,
    procedureCode: JSON.stringify((obr!.fields[4]?.[0] ?? []).map((component) => component[0] ?? '')),
    request: {
      // The accession number comes with flux 4; until then the request is known by its placer number.
      AccessionNumber: accession ?? placer!,
      urgency: priority === 'S' || priority === 'A' ? 'urgent' : 'routine',
      modality: modality!,
      bodyPart,
      specialty,
      clinicalContext: context.length > 0 ? context.join(' ; ') : 'non renseigné par le demandeur',
      clinicalQuestion: justification!,
      requestingPhysician: { name: physicianName!, ...(rpps ? { rpps } : {}) },
      proposedProtocol: protocol ?? `${procedureText} ${bodyPart}`,
    },
  };
}

/** The patient of a volet message: the site's PatientID when PID-3 has one, else the INS (keyed by its OID). */
function voletPatient(pid: Segment, site: Site): { key: { siteId: number; IssuerOfPatientID: string; PatientID: string }; patient: ReturnType<typeof patientOf> } {
  let own = true;
  try {
    identifiersOf(pid, 3, site.issuerOfPatientID);
  } catch (e) {
    if (!(e instanceof Hl7Error) || e.code !== Hl7ErrorCode.requiredFieldMissing) throw e;
    own = false;
  }
  if (own) {
    const patient = patientOf(pid, site);
    return { key: { siteId: site.id, IssuerOfPatientID: site.issuerOfPatientID, PatientID: patient.PatientID }, patient };
  }
  // The volet's examples name the patient by INS alone: the record is keyed by the INS under its authority's OID.
  const insRep = repetitionsOf(pid, 3).find((rep) => componentOf(rep, 5) === 'INS');
  if (!insRep) throw new Hl7Error('AE', Hl7ErrorCode.requiredFieldMissing, 'PID-3 has neither an identifier of the sending site nor an INS', { segment: 'PID', field: 3 });
  const oid = componentOf(insRep, 4, 2);
  let value: string;
  try {
    value = insValue(parseINS(componentOf(insRep, 1), oid));
  } catch (e) {
    throw new Hl7Error('AE', Hl7ErrorCode.dataTypeError, `PID-3 INS: ${(e as Error).message}`, { segment: 'PID', field: 3 });
  }
  const withOwn: Segment = { id: pid.id, fields: pid.fields.map((f, i) => (i === 3 ? [...f, [[value], [''], [''], [site.issuerOfPatientID]]] : f)) };
  const patient = patientOf(withOwn, site);
  return { key: { siteId: site.id, IssuerOfPatientID: oid, PatientID: value }, patient };
}

export interface VoletContext {
  site: Site;
  sender: Hl7Sender;
  messageControlId: string;
}

/**
 * Applies a message of the volet. Registering the patient, filing the request and linking it
 * to its placer number are separate transactions (filing runs the teleradiology workflow's
 * own): a failure after the patient is registered leaves the patient, never half a request.
 */
export class TeleradiologyVoletReceiver {
  private readonly requests: TeleRequests;

  constructor(private readonly archive: Archive, config: TeleradiologyConfig) {
    this.requests = new TeleRequests(archive, config);
  }

  async apply(message: Hl7Message, ctx: VoletContext): Promise<void> {
    const msh = message.segments[0]!;
    const declared = repetitionsOf(msh, 21).find((rep) => componentOf(rep, 2).trim() === teleradiologyVolet.profile);
    const version = componentOf(declared, 1).trim();
    if (version !== teleradiologyVolet.version) {
      throw new Hl7Error('AR', Hl7ErrorCode.unsupportedVersionId, `MSH-21 volet version ${JSON.stringify(version)} of ${teleradiologyVolet.profile} is not supported (${teleradiologyVolet.version})`, { segment: 'MSH', field: 21 });
    }
    const orc = requireSegment(message, 'ORC');
    requireSegment(message, 'OBR');
    const control = valueOf(orc, 1);
    const afterExam = valueOf(msh, 9, 1) === 'OMI' || valueOf(orc, 5) === 'SC' || findSegment(message, 'IPC') !== undefined;
    if (control === 'CA') return this.cancel(message, ctx);
    if (control !== 'NW') {
      throw new Hl7Error('AE', Hl7ErrorCode.tableValueNotFound, `ORC-1 ${JSON.stringify(control)} is not an order control of the teleradiology volet (NW, CA)`, { segment: 'ORC', field: 1 });
    }
    if (afterExam) return this.completeAfterExam(message, ctx);
    return this.file(message, ctx);
  }

  private principalOf(ctx: VoletContext): Principal {
    return { kind: 'client', id: `${ctx.sender.application}@${ctx.sender.facility}`, name: `HL7 ${ctx.sender.application}`, roles: [], sites: [ctx.site], authenticatedBy: 'api-key' };
  }

  /** Flux 1: a new request. */
  private async file(message: Hl7Message, ctx: VoletContext): Promise<void> {
    const pid = requireSegment(message, 'PID');
    const { key, patient } = voletPatient(pid, ctx.site);
    const asked = readVoletRequest(message, ctx.sender.teleradiologySpecialty ?? 'general');
    const sql = this.archive.index.sql;
    const known = await sql.get<{ request_id: number }>('SELECT request_id FROM tlr_volet_orders WHERE site_id = ? AND placer_order_number = ?', [ctx.site.id, asked.placerOrderNumber]);
    if (known) throw new Hl7Error('AE', Hl7ErrorCode.duplicateKeyIdentifier, `request ${asked.placerOrderNumber} (ORC-2) was already received`, { segment: 'ORC', field: 2 });
    await sql.transaction(async (tx) => {
      try {
        await registerPatientIn(tx, key, patient.demographics, patient.identity);
      } catch (e) {
        throw registryError(e, { segment: 'PID', field: 3 });
      }
    });
    let id: number;
    try {
      ({ id } = await this.requests.createRequest(this.principalOf(ctx),
        { ...asked.request, site: ctx.site.code, patient: { PatientID: key.PatientID, IssuerOfPatientID: key.IssuerOfPatientID } }, { via: 'hl7' }));
    } catch (e) {
      throw teleErrorToHl7(e);
    }
    await sql.run(
      `INSERT INTO tlr_volet_orders (request_id, site_id, placer_order_number, sender_application, sender_facility, pid_segment, procedure_code, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      [id, ctx.site.id, asked.placerOrderNumber, ctx.sender.application, ctx.sender.facility, encodeSegment(pid, standardDelimiters), asked.procedureCode, new Date().toISOString()],
    );
  }

  private async requestOf(placer: string | undefined, ctx: VoletContext, where: { segment: string; field: number }): Promise<{ request_id: number; status: string; cancelled_at: string | null }> {
    const row = placer === undefined ? undefined : await this.archive.index.sql.get<{ request_id: number; status: string; cancelled_at: string | null }>(
      `SELECT o.request_id, r.status, o.cancelled_at FROM tlr_volet_orders o JOIN tele_requests r ON r.id = o.request_id
        WHERE o.site_id = ? AND o.placer_order_number = ?`, [ctx.site.id, placer]);
    if (!row) throw new Hl7Error('AE', Hl7ErrorCode.unknownKeyIdentifier, `no teleradiology request ${placer ?? '(none named)'} of this site`, where);
    return row;
  }

  /** Flux 2: the requesting site cancels; the request leaves the worklists, no answer is sent. */
  private async cancel(message: Hl7Message, ctx: VoletContext): Promise<void> {
    const orc = findSegment(message, 'ORC')!;
    const placer = text(valueOf(orc, 2)) ?? text(valueOf(findSegment(message, 'OBR'), 2));
    const row = await this.requestOf(placer, ctx, { segment: 'ORC', field: 2 });
    if (row.cancelled_at !== null) return; // a repeated cancellation changes nothing
    if (row.status === 'reported') throw new Hl7Error('AE', Hl7ErrorCode.applicationRecordLocked, `request ${placer} is already reported: it cannot be cancelled`, { segment: 'ORC', field: 1 });
    const reason = text(valueOf(orc, 16, 2)) ?? text(valueOf(orc, 16, 1));
    const now = new Date().toISOString();
    await this.archive.index.sql.transaction(async (tx) => {
      await tx.run(`UPDATE tele_requests SET status = 'returned', returned_reason = ?, claimed_by = NULL, claim_expires_at = NULL, updated_at = ? WHERE id = ? AND status <> 'reported'`,
        [`annulée par le demandeur${reason ? ` : ${reason}` : ''}`, now, row.request_id]);
      await tx.run('UPDATE tlr_volet_orders SET cancelled_at = ? WHERE request_id = ?', [now, row.request_id]);
      const r = await this.requests.row(tx, Number(row.request_id));
      await this.requests.record(tx, this.principalOf(ctx), { via: 'hl7' }, 'tele-request', r, { cancelled: true, controlId: ctx.messageControlId });
    });
  }

  /** Flux 4: after the exam, the accession number, the study's UID and the images' retention. */
  private async completeAfterExam(message: Hl7Message, ctx: VoletContext): Promise<void> {
    const obr = findSegment(message, 'OBR');
    const ipc = findSegment(message, 'IPC');
    // The volet's example names the request in OBR-2 (ORC-2 is the post-exam message's own number).
    const placer = text(valueOf(obr, 2)) ?? text(valueOf(findSegment(message, 'ORC'), 2));
    const row = await this.requestOf(placer, ctx, { segment: 'OBR', field: 2 });
    if (row.cancelled_at !== null) throw new Hl7Error('AE', Hl7ErrorCode.applicationRecordLocked, `request ${placer} was cancelled`, { segment: 'OBR', field: 2 });
    const accession = text(valueOf(ipc, 1));
    const uid = text(valueOf(ipc, 3));
    // A Study Instance UID that is no UID (the volet's example holds a placeholder) is not recorded: images are matched by accession number then.
    const study = uid !== undefined && isValidUID(uid) ? uid : undefined;
    const tq1 = findSegment(message, 'TQ1');
    const retention = text([valueOf(tq1, 6, 1), valueOf(tq1, 6, 2)].filter((v) => v !== '').join(' '));
    const now = new Date().toISOString();
    await this.archive.index.sql.transaction(async (tx) => {
      await tx.run(
        `UPDATE tele_requests SET accession_number = COALESCE(?, accession_number), study_instance_uid = COALESCE(study_instance_uid, ?), updated_at = ? WHERE id = ?`,
        [accession ?? null, study ?? null, now, row.request_id]);
      await tx.run('UPDATE tlr_volet_orders SET image_retention = COALESCE(?, image_retention) WHERE request_id = ?', [retention ?? null, row.request_id]);
      const r = await this.requests.row(tx, Number(row.request_id));
      await this.requests.record(tx, this.principalOf(ctx), { via: 'hl7' }, 'tele-request', r, {
        afterExam: true, controlId: ctx.messageControlId, ...(accession ? { AccessionNumber: accession } : {}), ...(study ? { StudyInstanceUID: study } : {}), ...(retention ? { imageRetention: retention } : {}),
      });
    });
  }
}

/** The workflow's refusals as acknowledgment errors. */
function teleErrorToHl7(e: unknown): unknown {
  if (!(e instanceof TeleError)) return e;
  const code = e.code === 'not-found' ? Hl7ErrorCode.unknownKeyIdentifier : e.code === 'incomplete' ? Hl7ErrorCode.requiredFieldMissing : Hl7ErrorCode.tableValueNotFound;
  return new Hl7Error('AE', code, e.message, { segment: 'ORC' });
}
