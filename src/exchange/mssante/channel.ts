/**
 * The MSSanté channel of report deliveries (report-delivery.ts): a final or amended report
 * goes to the requesting physician's mailbox (found by RPPS in the configured directory, or
 * an address given) and, when the site allows it and the patient's INS is qualified, to the
 * patient's (<INS>@patient.mssante.fr, X-MSS-MES: FIN: no reply wanted). The message: the
 * IHE_XDM.ZIP of the study's current CR-IMG and KOS (xdm.ts), the report's PDF for humans,
 * subject XDM/1.0/DDM+<title>, the MSSanté headers and Disposition-Notification-To.
 *
 * Owns the table mssante_messages (its own migrations, like the DMP's): one row a delivery,
 * with the Message-ID it was sent under (the same for every attempt) and the answer that came
 * back: processed (MDN), error with the MDN's code and label, or bounced (DSN).
 */
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Archive } from '../../archive/archive.ts';
import type { MssanteConfig, MssanteSiteConfig } from '../../config/mssante-config.ts';
import { isMailAddress } from '../../config/mssante-config.ts';
import type { SqlDatabase } from '../../index/sql.ts';
import { applyMigrations, type Migration } from '../../index/migrations.ts';
import { insValue, shareableINS } from '../../patients/ins.ts';
import { AuditTrail } from '../../access/audit.ts';
import type { SignedReport } from '../signed-report.ts';
import { renderReportPdf } from '../report-pdf.ts';
import { listStudyDocuments, StudyDocuments, StudyDocumentSource } from '../study-documents.ts';
import type { DmpDocument } from '../dmp/document.ts';
import { mailboxCredentials, parseAnswer, readAnswers, submit, SubmissionRefused, type MailAnswer } from './mail.ts';
import { xdmMedia } from './xdm.ts';

const migrations: Migration[] = [
  {
    version: 1,
    name: 'MSSanté messages of report deliveries and their answers',
    sql: `
CREATE TABLE mssante_messages (
  delivery_id BIGINT PRIMARY KEY,
  message_id {text} NOT NULL UNIQUE,
  recipient {text},
  answer {text},
  answer_code {text},
  answer_label TEXT,
  answered_at {text}
);
`,
  },
  {
    version: 2,
    name: 'MSSanté recipients named by a teleradiology request (the physician\'s address typed, the copies)',
    sql: `
CREATE TABLE mssante_request_recipients (
  id {id},
  request_id BIGINT NOT NULL,
  role {text} NOT NULL,
  name TEXT,
  rpps {text},
  address {text}
);
CREATE INDEX mssante_request_recipients_request ON mssante_request_recipients (request_id, id);
`,
  },
  {
    version: 3,
    name: 'MSSanté deliveries of the reports received from a site\'s RIS (owned by site-reports.ts)',
    sql: `
CREATE TABLE mssante_site_deliveries (
  id {id},
  document_id BIGINT NOT NULL,
  site_id BIGINT NOT NULL,
  study_instance_uid {text} NOT NULL,
  destination {text} NOT NULL,
  status {text} NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at {text} NOT NULL,
  last_error TEXT,
  created_at {text} NOT NULL,
  sent_at {text},
  UNIQUE (document_id, destination)
);
CREATE INDEX mssante_site_deliveries_due ON mssante_site_deliveries (status, next_attempt_at);
CREATE INDEX mssante_site_deliveries_study ON mssante_site_deliveries (study_instance_uid, id);
`,
  },
];

const migrated = new WeakMap<SqlDatabase, Promise<unknown>>();

/** Creates the channel's table once per database handle (every node runs it; the first migrates). */
export async function migrateMssante(sql: SqlDatabase): Promise<void> {
  let done = migrated.get(sql);
  if (!done) {
    done = applyMigrations(sql, migrations, 'mssante_migrations');
    migrated.set(sql, done);
    done.catch(() => migrated.delete(sql));
  }
  await done;
}

/** What came back for a delivery: the MDN (processed, or error with its code and label) or a bounce. */
export interface MssanteAnswer { status: 'processed' | 'error' | 'bounced' | string; code?: string; label?: string; at: string }

/** The answers of MSSanté deliveries, by delivery id. */
export async function mssanteAnswers(sql: SqlDatabase, deliveryIds: readonly number[]): Promise<Map<number, MssanteAnswer>> {
  const answers = new Map<number, MssanteAnswer>();
  if (deliveryIds.length === 0) return answers;
  await migrateMssante(sql);
  const rows = await sql.all<{ delivery_id: number; answer: string | null; answer_code: string | null; answer_label: string | null; answered_at: string | null }>(
    `SELECT delivery_id, answer, answer_code, answer_label, answered_at FROM mssante_messages WHERE delivery_id IN (${deliveryIds.map(() => '?').join(', ')})`, [...deliveryIds]);
  for (const r of rows) {
    if (r.answer === null) continue;
    answers.set(Number(r.delivery_id), { status: r.answer, ...(r.answer_code ? { code: r.answer_code } : {}), ...(r.answer_label ? { label: r.answer_label } : {}), at: r.answered_at ?? '' });
  }
  return answers;
}

/** A recipient a request names: by its MSSanté address, or by RPPS (looked up in the directory when sent). */
export interface NamedRecipient { name?: string; rpps?: string; address?: string }

/** Why a request's recipients are refused (the caller answers 400), or undefined. */
export function invalidRecipients(physicianAddress: string | undefined, copies: readonly NamedRecipient[]): string | undefined {
  if (physicianAddress !== undefined && !isMailAddress(physicianAddress)) return 'requestingPhysician.mssante must be a mail address';
  for (const [i, c] of copies.entries()) {
    if (c.address === undefined && c.rpps === undefined) return `copies[${i}] names an MSSanté address or an RPPS`;
    if (c.address !== undefined && !isMailAddress(c.address)) return `copies[${i}].mssante must be a mail address`;
    if (c.rpps !== undefined && !/^[0-9]{11}$/.test(c.rpps)) return `copies[${i}].rpps must be an 11-digit RPPS number`;
  }
  return undefined;
}

/** Keeps the recipients a new request names, in its creating transaction (the table exists: migrateMssante first). */
export async function recordRequestRecipients(tx: SqlDatabase, requestId: number, physicianAddress: string | undefined, copies: readonly NamedRecipient[]): Promise<void> {
  if (physicianAddress !== undefined) {
    await tx.run(`INSERT INTO mssante_request_recipients (request_id, role, address) VALUES (?, 'physician', ?)`, [requestId, physicianAddress]);
  }
  for (const c of copies) {
    await tx.run(`INSERT INTO mssante_request_recipients (request_id, role, name, rpps, address) VALUES (?, 'copy', ?, ?, ?)`, [requestId, c.name ?? null, c.rpps ?? null, c.address ?? null]);
  }
}

/**
 * The destinations a signature queues for the site (tele-reports.ts, in the signing
 * transaction; the table exists: migrateMssante first): the physician (address typed, else
 * by RPPS), each copy, and the patient if the site allows it; each once.
 */
export async function mssanteDestinations(tx: SqlDatabase, config: MssanteConfig | undefined, siteCode: string | undefined, request: { id: number; rpps: string | null }): Promise<string[]> {
  const site = config?.sites.find((s) => s.site === siteCode);
  if (!site) return [];
  const named = await tx.all<{ role: string; rpps: string | null; address: string | null }>(
    'SELECT role, rpps, address FROM mssante_request_recipients WHERE request_id = ? ORDER BY id', [request.id]);
  const out: string[] = [];
  const physician = named.find((n) => n.role === 'physician' && n.address !== null);
  if (physician) out.push(physician.address!);
  else if (request.rpps) out.push(`rpps:${request.rpps}`);
  for (const c of named.filter((n) => n.role === 'copy')) out.push(c.address ?? `rpps:${c.rpps}`);
  if (site.patients) out.push('patient');
  return [...new Set(out)];
}

/** A delivery nothing will mend by retrying: failed, or bounced (the address refused). */
export class DeliveryRefused extends Error {
  constructor(message: string, readonly status: 'failed' | 'bounced') {
    super(message);
  }
}

export const PATIENT_DOMAIN = 'patient.mssante.fr';

/** A message's key: a report delivery's id, or minus the id of a site report's delivery (site-reports.ts). */
const deliveriesTable = (key: number) => key < 0 ? 'mssante_site_deliveries' : 'tele_deliveries';

/** The first MSSanté address (an e-mail telecom in the mssante.fr domains) of a FHIR searchset's resources. */
export function mssanteAddressOf(bundle: unknown): string | undefined {
  const entries = (bundle as { entry?: Array<{ resource?: { telecom?: Array<{ system?: string; value?: string }> } }> } | null)?.entry;
  if (!Array.isArray(entries)) return undefined;
  for (const e of entries) {
    for (const t of e.resource?.telecom ?? []) {
      if (t.system === 'email' && typeof t.value === 'string' && isMailAddress(t.value) && /(^|\.)mssante\.fr$/i.test(t.value.split('@')[1]!) && !t.value.endsWith(`@${PATIENT_DOMAIN}`)) return t.value;
    }
  }
  return undefined;
}
const CR_IMG_SUBJECT = "Compte rendu d'imagerie médicale";

export class MssanteChannel {
  private readonly documents: StudyDocuments;
  private readonly source: StudyDocumentSource;
  private readonly audit: AuditTrail;

  constructor(private readonly archive: Archive, private readonly config: MssanteConfig, private readonly logger: Logger, private readonly options: { publicBaseUrl?: string; timeZone?: string } = {}) {
    this.documents = new StudyDocuments(archive, options.publicBaseUrl !== undefined ? { publicBaseUrl: options.publicBaseUrl } : {}, logger);
    this.source = new StudyDocumentSource(archive.index.sql);
    this.audit = new AuditTrail(archive.index.sql);
  }

  private siteOf(code: string): MssanteSiteConfig | undefined {
    return this.config.sites.find((s) => s.site === code);
  }

  /**
   * The professional's address: in the directory file (read on each use: it is replaced as the
   * directory is), else from the Annuaire Santé FHIR API when configured. An API that does not
   * answer throws (the delivery is retried); one that knows no address answers undefined.
   */
  private async lookUpRpps(rpps: string): Promise<string | undefined> {
    if (this.config.directoryFile) {
      const entries = JSON.parse(readFileSync(this.config.directoryFile, 'utf8')) as unknown;
      if (!Array.isArray(entries)) throw new Error('the MSSanté directory file is not a list');
      const found = entries.find((e: unknown) => typeof e === 'object' && e !== null && (e as { rpps?: unknown }).rpps === rpps) as { address?: unknown } | undefined;
      if (typeof found?.address === 'string' && isMailAddress(found.address)) return found.address;
    }
    const annuaire = this.config.annuaire;
    if (!annuaire) return undefined;
    const key = annuaire.apiKeyEnv ? process.env[annuaire.apiKeyEnv] : undefined;
    const url = `${annuaire.baseUrl}/Practitioner?identifier=${encodeURIComponent(rpps)}&_revinclude=PractitionerRole:practitioner`;
    const r = await fetch(url, { headers: { accept: 'application/fhir+json', ...(key ? { 'ESANTE-API-KEY': key } : {}) }, signal: AbortSignal.timeout(this.config.timeoutMs) });
    if (!r.ok) throw new Error(`the Annuaire Santé answered ${r.status}`);
    return mssanteAddressOf(await r.json() as unknown);
  }

  /** The study's current CR-IMG and KOS, built now if they are due; a study still being built elsewhere is retried. */
  private async studyDocuments(StudyInstanceUID: string): Promise<DmpDocument[]> {
    const sql = this.archive.index.sql;
    await this.documents.buildIfDue(StudyInstanceUID);
    const due = await sql.get<{ last_error: string | null }>('SELECT last_error FROM study_documents_due WHERE study_instance_uid = ?', [StudyInstanceUID]);
    if (due && due.last_error === null) throw new Error("the study's documents are still being built");
    const current = (await listStudyDocuments(sql, StudyInstanceUID)).filter((d) => d.current);
    const out: DmpDocument[] = [];
    for (const kind of ['CR-IMG', 'KOS'] as const) {
      const d = current.filter((c) => c.kind === kind).sort((a, b) => b.id - a.id)[0];
      const doc = d ? await this.source.documentFor(String(d.id)) : undefined;
      if (doc) out.push(doc as DmpDocument);
    }
    return out;
  }

  /** Sends one delivery; answers where it went. Throws DeliveryRefused for what no retry mends, any other error to retry. */
  async send(delivery: { id: number; destination: string }, signed: SignedReport): Promise<{ to: string; details: Record<string, unknown> }> {
    if (!signed.StudyInstanceUID) throw new DeliveryRefused('the request has no study: no document to send', 'failed');
    const sent = await this.sendStudyReport({
      key: delivery.id, destination: delivery.destination, siteCode: signed.requestingSite.code, StudyInstanceUID: signed.StudyInstanceUID, pdf: () => renderReportPdf(signed, { ...(this.options.timeZone ? { timeZone: this.options.timeZone } : {}) }),
    });
    await this.archive.index.sql.run('UPDATE tele_deliveries SET destination = ? WHERE id = ?', [sent.to, delivery.id]);
    return sent;
  }

  /**
   * Sends a study's current report (its CR-IMG and KOS in the XDM archive, and `pdf` when
   * there is one) from the site's mailbox to one destination. `key` names the message in
   * mssante_messages: a report delivery's id, or minus a site report delivery's (site-reports.ts).
   */
  async sendStudyReport(o: { key: number; destination: string; siteCode: string; StudyInstanceUID: string; pdf: () => Promise<Buffer | undefined> }): Promise<{ to: string; details: Record<string, unknown> }> {
    const sql = this.archive.index.sql;
    await migrateMssante(sql);
    const delivery = { id: o.key, destination: o.destination };
    const site = this.siteOf(o.siteCode);
    if (!site) throw new DeliveryRefused('the requesting site has no MSSanté mailbox configured any more', 'failed');
    const documents = await this.studyDocuments(o.StudyInstanceUID);
    const cda = documents.find((d) => d.kind === 'CR-IMG');
    const identity = cda?.patient.identity;
    const ins = identity ? shareableINS(identity) : undefined;
    const toPatient = delivery.destination === 'patient';
    let to: string;
    if (toPatient) {
      if (!ins) throw new DeliveryRefused("the patient's INS is not qualified: nothing goes to the patient's mailbox", 'failed');
      to = `${insValue(ins)}@${PATIENT_DOMAIN}`;
    } else if (delivery.destination.startsWith('rpps:')) {
      const rpps = delivery.destination.slice(5);
      const found = await this.lookUpRpps(rpps);
      if (!found) throw new DeliveryRefused(`no MSSanté address for RPPS ${rpps} in the directory`, 'failed');
      to = found;
    } else {
      to = delivery.destination;
    }
    if (!isMailAddress(to)) throw new DeliveryRefused(`${to} is not a mail address`, 'failed');

    // One Message-ID a delivery: a retry is the same message, and its MDN finds it whichever attempt went through.
    const domain = site.address.split('@')[1]!;
    await sql.run(`INSERT INTO mssante_messages (delivery_id, message_id, recipient) VALUES (?, ?, ?) ON CONFLICT (delivery_id) DO UPDATE SET recipient = excluded.recipient`,
      [delivery.id, `<atrium.${delivery.id}.${randomUUID()}@${domain}>`, to]);
    const messageId = (await sql.get<{ message_id: string }>('SELECT message_id FROM mssante_messages WHERE delivery_id = ?', [delivery.id]))!.message_id;

    const pdf = await o.pdf();
    const attachments: Array<{ filename: string; content: Buffer; contentType: string }> = [];
    const headers: Record<string, string | string[]> = { 'Disposition-Notification-To': site.address, 'X-MSS-NIL': this.config.productReference };
    let title = cda?.title ?? CR_IMG_SUBJECT;
    if (cda && ins) {
      const siteRow = this.archive.sites.get(o.siteCode)!;
      const media = await xdmMedia({
        documents, ins, sourceId: await this.archive.index.installationUidRoot(), recipients: [to], product: `Atrium (${this.config.productReference})`,
        facility: {
          name: siteRow.name, finess: siteRow.finess,
          facilityType: { code: 'SA01', scheme: '1.2.250.1.71.4.2.4', display: 'Etablissement public de santé' },
          practiceSetting: { code: 'ETABLISSEMENT', scheme: '1.2.250.1.213.1.1.4.9', display: 'Etablissement de santé' },
        },
      });
      attachments.push({ filename: 'IHE_XDM.ZIP', content: media.zip, contentType: 'application/zip' });
      headers['X-MSS-CODECDA'] = media.cdaCodes;
      // The CDA inside names the patient by a qualified INS.
      headers['X-MSS-INS'] = 'O';
      title = cda.title;
    }
    if (pdf) attachments.push({ filename: 'compte-rendu.pdf', content: pdf, contentType: 'application/pdf' });
    if (toPatient) headers['X-MSS-MES'] = 'FIN';
    try {
      await submit(this.config, mailboxCredentials(this.config, site), {
        from: site.address, to, subject: `XDM/1.0/DDM+${title}`, messageId, headers, attachments,
        text: `${CR_IMG_SUBJECT}${cda ? ' : le document structuré (CDA) et le manifeste des images sont dans IHE_XDM.ZIP' : ''}${pdf ? '; le compte rendu lisible est joint en PDF' : ''}.\r\n`,
      });
    } catch (e) {
      // The patient's address is their INS: it stays out of errors, which are logged and shown.
      const who = toPatient ? "the patient's mailbox" : to;
      const why = toPatient ? (e as Error).message.split(to).join(who) : (e as Error).message;
      if (e instanceof SubmissionRefused && e.permanent) throw new DeliveryRefused(`${who}: ${why}`, 'bounced');
      throw new Error(why);
    }
    return { to, details: { messageId, xdm: cda !== undefined } };
  }

  /** Reads every configured mailbox's answers once; answers how many were recorded. */
  async readAnswers(): Promise<number> {
    await migrateMssante(this.archive.index.sql);
    let recorded = 0;
    let failure: unknown;
    for (const site of this.config.sites) {
      // One mailbox unreachable does not keep the others' answers unread.
      try {
        await readAnswers(this.config, mailboxCredentials(this.config, site), async (raw) => {
          const answer = await parseAnswer(raw);
          if (answer && await this.record(answer)) recorded++;
        });
      } catch (e) {
        failure = e;
        this.logger.warn({ site: site.site, err: (e as Error).message }, 'reading an MSSanté mailbox failed; it is read again next time');
      }
    }
    if (failure !== undefined && recorded === 0) throw failure;
    return recorded;
  }

  /** An answer recorded against its delivery (an MDN or bounce about another message is ignored). */
  private async record(a: MailAnswer): Promise<boolean> {
    const sql = this.archive.index.sql;
    if (!a.originalMessageId) return false;
    const row = await sql.get<{ delivery_id: number }>('SELECT delivery_id FROM mssante_messages WHERE message_id = ?', [a.originalMessageId]);
    if (!row) return false;
    const id = Number(row.delivery_id);
    const at = new Date().toISOString();
    if (a.kind === 'mdn') {
      const status = a.error ? 'error' : 'processed';
      await sql.run('UPDATE mssante_messages SET answer = ?, answer_code = ?, answer_label = ?, answered_at = ? WHERE delivery_id = ?',
        [status, a.error?.code ?? null, a.error?.label ?? a.disposition, at, id]);
      if (a.error) await sql.run(`UPDATE ${deliveriesTable(id)} SET last_error = ? WHERE id = ?`, [`MDN ${a.error.code}: ${a.error.label}`, Math.abs(id)]);
    } else {
      if (a.action !== 'failed') return false;
      const why = [a.status, a.diagnostic].filter((x) => x).join(' ');
      await sql.run('UPDATE mssante_messages SET answer = ?, answer_code = ?, answer_label = ?, answered_at = ? WHERE delivery_id = ?', ['bounced', a.status ?? null, a.diagnostic ?? null, at, id]);
      await sql.run(`UPDATE ${deliveriesTable(id)} SET status = 'bounced', last_error = ? WHERE id = ?`, [`bounced: ${why}`, Math.abs(id)]);
    }
    await this.audit.record({
      action: 'report-send', outcome: a.kind === 'mdn' && !a.error ? 'success' : 'failure', actor: 'atrium', actorKind: 'system', via: 'api', patients: [],
      details: { delivery: id, channel: 'mssante', answer: a.kind === 'mdn' ? (a.error ? 'error' : 'processed') : 'bounced', ...(a.kind === 'mdn' && a.error ? { code: a.error.code } : {}) },
    });
    this.logger.info({ delivery: id, answer: a.kind }, 'MSSanté answer recorded');
    return true;
  }
}
