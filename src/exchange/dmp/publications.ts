/**
 * The DMP publication queue: the one module that owns the `dmp_publications` and
 * `dmp_oppositions` tables (its own migrations, table `dmp_migrations`).
 *
 * - DmpPublicationQueue, an outbox consumer, turns `document.final` into a publication
 *   (replacing the DMP entry of the document it supersedes), and `document.withdrawn` or a
 *   study losing its last instance into an unpublication, in the transaction that moves its
 *   position: none is lost or doubled.
 * - DmpPublisher sends what is due, with a lease per row (several nodes may run it): the
 *   patient's INS only when their identity is qualified (otherwise nothing is sent: state
 *   `no-ins`); the DMP's existence test first (a patient without a DMP: `no-dmp`; one who
 *   opposed it: `opposed`, recorded in dmp_oppositions); then ITI-41, or ITI-57 to Deleted.
 *   A refusal is kept with its code (`refused`); an unreachable or busy DMP is retried with
 *   doubling delays until dmp.retry.maxAttempts (`failed`). Every attempt is audited.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { AuditTrail, patientRef } from '../../access/audit.ts';
import type { Archive } from '../../archive/archive.ts';
import type { DmpConfig, DmpSiteConfig } from '../../config/config.ts';
import { OutboxConsumer } from '../../events/consumer.ts';
import { appendEvent, Outbox, type OutboxEvent } from '../../events/outbox.ts';
import { applyMigrations, type Migration } from '../../index/migrations.ts';
import type { SqlDatabase } from '../../index/sql.ts';
import type { ArchiveIndex } from '../../index/archive-index.ts';
import { PollingLoop } from '../../lib/polling-loop.ts';
import { LeasedQueue } from '../../index/leased-queue.ts';
import { insValue, parseINS, shareableINS, type INS } from '../../patients/ins.ts';
import { DmpClient, DmpRefusal, type DmpCaller } from './client.ts';
import { documentEvents, type DmpAuthor, type DmpDocumentSource, type DocumentFinalEvent, type DocumentWithdrawnEvent } from './document.ts';
import { documentCodes, type Facility } from './metadata.ts';
import type { AuthenticationMode } from './vihf.ts';
import type { Signer } from './xades.ts';

export const dmpMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'DMP publications (queue and record) and oppositions the DMP reported',
    sql: `
CREATE TABLE dmp_publications (
  id {id},
  action {text} NOT NULL,
  document_id {text} NOT NULL,
  site_id BIGINT NOT NULL,
  study_instance_uid {text} NOT NULL,
  replaces_document_id {text},
  mode {text} NOT NULL,
  state {text} NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at {text} NOT NULL,
  last_error_code {text},
  last_error TEXT,
  kind {text},
  entry_uuid {text},
  unique_id {text},
  submission_set_uid {text},
  ins {text},
  ins_oid {text},
  author_json TEXT,
  created_at {text} NOT NULL,
  updated_at {text} NOT NULL,
  done_at {text}
);
CREATE INDEX dmp_publications_due ON dmp_publications (state, next_attempt_at);
CREATE INDEX dmp_publications_document ON dmp_publications (document_id);
CREATE INDEX dmp_publications_study ON dmp_publications (study_instance_uid);
CREATE INDEX dmp_publications_site ON dmp_publications (site_id, id);
CREATE TABLE dmp_oppositions (
  ins {text} NOT NULL,
  ins_oid {text} NOT NULL,
  reported_at {text} NOT NULL,
  publication_id BIGINT,
  PRIMARY KEY (ins, ins_oid)
);
`,
  },
];

const migrated = new WeakMap<SqlDatabase, Promise<unknown>>();

/** Creates the module's tables once per database handle (every node runs it; the first migrates). */
export async function migrateDmp(sql: SqlDatabase): Promise<void> {
  let done = migrated.get(sql);
  if (!done) {
    done = applyMigrations(sql, dmpMigrations, 'dmp_migrations');
    migrated.set(sql, done);
    done.catch(() => migrated.delete(sql));
  }
  await done;
}

/**
 * States: pending (due at next_attempt_at); published, unpublished (done); replaced (its
 * entry superseded by an RPLC); withdrawn (withdrawn before it was sent); refused (the DMP
 * said no, with its code); failed (retries exhausted, or nothing can mend it); no-ins (the
 * identity is not qualified: nothing sent); no-dmp (the patient has no open DMP); opposed.
 */
export type PublicationState = 'pending' | 'published' | 'unpublished' | 'replaced' | 'withdrawn' | 'refused' | 'failed' | 'no-ins' | 'no-dmp' | 'opposed';

export interface Publication {
  id: number;
  action: 'publish' | 'unpublish';
  documentId: string;
  kind?: string;
  site: string;
  StudyInstanceUID: string;
  replacesDocumentId?: string;
  state: PublicationState;
  attempts: number;
  nextAttemptAt?: string;
  error?: { code: string; message: string };
  entryUUID?: string;
  createdAt: string;
  updatedAt: string;
  doneAt?: string;
}

interface Row {
  id: number; action: 'publish' | 'unpublish'; document_id: string; site_id: number; study_instance_uid: string; replaces_document_id: string | null;
  mode: AuthenticationMode; state: PublicationState; attempts: number; next_attempt_at: string; last_error_code: string | null; last_error: string | null;
  kind: string | null; entry_uuid: string | null; unique_id: string | null; submission_set_uid: string | null; ins: string | null; ins_oid: string | null;
  author_json: string | null; created_at: string; updated_at: string; done_at: string | null;
}

/** The publications of the caller's sites (all with undefined), newest first, optionally of one study. */
export async function listPublications(sql: SqlDatabase, siteCodeOf: (id: number) => string | undefined, filter: { sites: readonly number[] | undefined; StudyInstanceUID?: string; limit?: number }): Promise<Publication[]> {
  await migrateDmp(sql);
  const where: string[] = [];
  const params: unknown[] = [];
  if (filter.sites !== undefined) {
    if (filter.sites.length === 0) return [];
    where.push(`site_id IN (${filter.sites.map(() => '?').join(', ')})`);
    params.push(...filter.sites);
  }
  if (filter.StudyInstanceUID !== undefined) {
    where.push('study_instance_uid = ?');
    params.push(filter.StudyInstanceUID);
  }
  const rows = await sql.all<Row>(`SELECT * FROM dmp_publications${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`, [...params, filter.limit ?? 500]);
  return rows.map((r) => ({
    id: Number(r.id), action: r.action, documentId: r.document_id, site: siteCodeOf(Number(r.site_id)) ?? String(r.site_id), StudyInstanceUID: r.study_instance_uid,
    state: r.state, attempts: Number(r.attempts), createdAt: r.created_at, updatedAt: r.updated_at,
    ...(r.kind !== null ? { kind: r.kind } : {}),
    ...(r.replaces_document_id !== null ? { replacesDocumentId: r.replaces_document_id } : {}),
    ...(r.state === 'pending' ? { nextAttemptAt: r.next_attempt_at } : {}),
    ...(r.last_error_code !== null ? { error: { code: r.last_error_code, message: r.last_error ?? '' } } : {}),
    ...(r.entry_uuid !== null ? { entryUUID: r.entry_uuid } : {}),
    ...(r.done_at !== null ? { doneAt: r.done_at } : {}),
  }));
}

/** How many publications are in each state (metrics). Throws while the table does not exist yet (the module not run). */
export async function publicationCounts(sql: SqlDatabase): Promise<Array<{ state: string; count: number }>> {
  const rows = await sql.all<{ state: string; n: number | string }>('SELECT state, COUNT(*) AS n FROM dmp_publications GROUP BY state');
  return rows.map((r) => ({ state: r.state, count: Number(r.n) }));
}

/** When the oldest publication not sent yet was created (metrics); throws like publicationCounts. */
export async function oldestPendingPublication(sql: SqlDatabase): Promise<string | undefined> {
  const row = await sql.get<{ at: string | null }>(`SELECT MIN(created_at) AS at FROM dmp_publications WHERE state = 'pending'`);
  return row?.at ?? undefined;
}

const consumerName = 'dmp-publications';

/** dmp_publications' claim and lease (src/index/leased-queue.ts). */
const publications = new LeasedQueue({ table: 'dmp_publications', state: 'state' });

/** Outbox events into publications, in the transaction that moves the consumer's position. */
export class DmpPublicationQueue extends OutboxConsumer {
  private readonly sql: SqlDatabase;

  constructor(private readonly index: ArchiveIndex, logger: Logger, pollMs = 500) {
    super(new Outbox(index.sql), consumerName, logger, 100, pollMs);
    this.sql = index.sql;
  }

  override start(): void {
    migrateDmp(this.sql).then(() => super.start(), (e: unknown) => this.logger.error({ err: e }, 'DMP publication tables could not be created'));
  }

  override async drain(): Promise<number> {
    await migrateDmp(this.sql);
    return super.drain();
  }

  protected async apply(tx: SqlDatabase, events: OutboxEvent[]): Promise<void> {
    for (const e of events) {
      const at = e.createdAt;
      if (e.type === documentEvents.final) {
        const p = e.payload as DocumentFinalEvent;
        const exists = await tx.get(`SELECT id FROM dmp_publications WHERE document_id = ? AND action = 'publish'`, [p.documentId]);
        if (exists) continue;
        await tx.run(
          `INSERT INTO dmp_publications (action, document_id, site_id, study_instance_uid, replaces_document_id, mode, state, attempts, next_attempt_at, created_at, updated_at)
           VALUES ('publish', ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)`,
          [p.documentId, p.siteId, p.StudyInstanceUID, p.replaces ?? null, p.mode === 'INDIRECTE_RENFORCEE' ? p.mode : 'INDIRECTE', at, at, at]);
      } else if (e.type === documentEvents.withdrawn) {
        await this.withdraw(tx, (e.payload as DocumentWithdrawnEvent).documentId, at);
      } else if (e.type === 'instance.deleted') {
        const { StudyInstanceUID } = e.payload as { StudyInstanceUID: string };
        // The index deletes a study's row with its last instance (archive-index refreshStudy).
        if (await this.index.studyPatient(StudyInstanceUID, tx)) continue;
        const docs = await tx.all<{ document_id: string }>(
          `SELECT document_id FROM dmp_publications WHERE study_instance_uid = ? AND action = 'publish' AND state IN ('pending', 'published')`, [StudyInstanceUID]);
        for (const d of docs) await this.withdraw(tx, d.document_id, at);
      }
    }
  }

  /** A document withdrawn: a publication not yet sent is cancelled, a published one unpublished. */
  private async withdraw(tx: SqlDatabase, documentId: string, at: string): Promise<void> {
    const publication = await tx.get<Row>(`SELECT * FROM dmp_publications WHERE document_id = ? AND action = 'publish'`, [documentId]);
    if (!publication) return;
    if (publication.state === 'pending') {
      await tx.run(`UPDATE dmp_publications SET state = 'withdrawn', updated_at = ?, done_at = ? WHERE id = ?`, [at, at, publication.id]);
      return;
    }
    if (publication.state !== 'published') return;
    const already = await tx.get(`SELECT id FROM dmp_publications WHERE document_id = ? AND action = 'unpublish'`, [documentId]);
    if (already) return;
    await tx.run(
      `INSERT INTO dmp_publications (action, document_id, site_id, study_instance_uid, mode, state, attempts, next_attempt_at, kind, created_at, updated_at)
       VALUES ('unpublish', ?, ?, ?, 'INDIRECTE', 'pending', 0, ?, ?, ?, ?)`,
      [documentId, publication.site_id, publication.study_instance_uid, at, publication.kind, at, at]);
  }
}

/** Not yet: the document it replaces is still on its way; tried again later, not counted as an attempt. */
class Waiting extends Error {}

/** What no retry mends: the row ends in `state` with this code at once. */
class Settled extends Error {
  constructor(readonly state: PublicationState, readonly code: string, message: string) {
    super(message);
  }
}

interface SiteCredentials {
  config: DmpSiteConfig;
  signer: Signer;
}

/** The site's certificate and key, read once; the key's passphrase from the environment. */
export function loadSiteCredentials(site: DmpSiteConfig, env: Record<string, string | undefined> = process.env): SiteCredentials {
  const certificate = readFileSync(site.certFile, 'utf8');
  new X509Certificate(certificate); // fails at start on a file that is not a certificate
  const passphrase = site.keyPassphraseEnv ? env[site.keyPassphraseEnv] : undefined;
  const key = createPrivateKey({ key: readFileSync(site.keyFile), ...(passphrase !== undefined ? { passphrase } : {}) });
  return { config: site, signer: { certificate, key: key.export({ type: 'pkcs8', format: 'pem' }) } };
}

export class DmpPublisher {
  private readonly audit: AuditTrail;
  private readonly client: DmpClient;
  private readonly credentials = new Map<string, SiteCredentials>();
  private loop: PollingLoop | undefined;

  constructor(private readonly archive: Archive, private readonly config: DmpConfig, private readonly documents: DmpDocumentSource, private readonly logger: Logger,
    env: Record<string, string | undefined> = process.env) {
    if (!config.endpoint || !config.caFile) throw new Error('DMP publication needs dmp.endpoint and dmp.caFile');
    this.audit = new AuditTrail(archive.index.sql);
    this.client = new DmpClient({ endpoint: config.endpoint, ca: readFileSync(config.caFile, 'utf8'), timeoutMs: config.timeoutMs, software: config.software, vihfIssuer: config.vihfIssuer });
    for (const site of config.sites) this.credentials.set(site.site, loadSiteCredentials(site, env));
  }

  start(): void {
    this.loop = new PollingLoop(() => this.publishDue(), this.config.pollMs, (e) => this.logger.error({ err: e }, 'DMP publication failed; it retries'));
    migrateDmp(this.archive.index.sql).then(() => this.loop?.start(), (e: unknown) => this.logger.error({ err: e }, 'DMP publication tables could not be created'));
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
  }

  /** One pass: every publication due now is attempted once, oldest first. Answers how many ended (sent or settled). */
  async publishDue(now = new Date()): Promise<number> {
    const sql = this.archive.index.sql;
    await migrateDmp(sql);
    const due = await publications.due<Row>(sql, '*', now, { orderBy: 'id', limit: 50 });
    let ended = 0;
    for (const row of due) {
      const lease = await publications.take(sql, row.id, { state: 'pending', next: row.next_attempt_at }, new Date(Date.now() + this.config.timeoutMs * 4));
      if (lease === undefined) continue; // another node has it
      if (await this.attempt(row, lease)) ended++;
    }
    return ended;
  }

  /** One attempt under `lease`; its outcome is written only while the lease is still this node's. */
  private async attempt(row: Row, lease: string): Promise<boolean> {
    const sql = this.archive.index.sql;
    const attempts = Number(row.attempts) + 1;
    const site = this.archive.siteById.get(Number(row.site_id));
    const base = { to: 'dmp', publication: Number(row.id), action: row.action, document: row.document_id, attempt: attempts };
    const event = { actor: 'atrium', actorKind: 'system' as const, via: 'api' as const, StudyInstanceUID: row.study_instance_uid, ...(site ? { site: site.code } : {}) };
    let patients: string[] = [];
    try {
      const done = row.action === 'publish' ? await this.publish(row, (p) => { patients = p; }) : await this.unpublish(row);
      const at = new Date().toISOString();
      const written = await sql.transaction(async (tx) => {
        const w = await publications.settle(tx, row.id, lease,
          `state = ?, attempts = ?, last_error_code = NULL, last_error = NULL, entry_uuid = COALESCE(?, entry_uuid), unique_id = COALESCE(?, unique_id),
             submission_set_uid = COALESCE(?, submission_set_uid), kind = COALESCE(?, kind), ins = COALESCE(?, ins), ins_oid = COALESCE(?, ins_oid), author_json = COALESCE(?, author_json),
             updated_at = ?, done_at = ?`,
          [done.state, attempts, done.entryUUID ?? null, done.uniqueId ?? null, done.submissionSetUid ?? null, done.kind ?? null, done.ins?.matricule !== undefined ? done.ins.matricule + done.ins.key : null,
            done.ins?.oid ?? null, done.author ? JSON.stringify(done.author) : null, at, at]);
        // A DMP publication, for metering (src/billing/metering.ts).
        if (w && done.state === 'published') {
          await appendEvent(tx, 'dmp.published', { publication: Number(row.id), siteId: Number(row.site_id), StudyInstanceUID: row.study_instance_uid, documentId: row.document_id }, at);
        }
        return w;
      });
      // A lease lost meanwhile (this attempt outlived it): another node's outcome stands.
      if (!written) return false;
      await done.after?.();
      await this.documents.publicationChanged?.(row.document_id, done.state, done.entryUUID ? { entryUUID: done.entryUUID } : {});
      await this.audit.record({ action: 'export', outcome: done.state === 'published' || done.state === 'unpublished' ? 'success' : 'refused', ...event, patients, details: { ...base, state: done.state } });
      this.logger.info({ publication: Number(row.id), action: row.action, state: done.state }, 'DMP publication ended');
      return true;
    } catch (e) {
      if (e instanceof Waiting) {
        await publications.settle(sql, row.id, lease, `last_error_code = 'waiting', last_error = ?, next_attempt_at = ?, updated_at = ?`,
          [e.message, new Date(Date.now() + this.config.retry.baseDelayMs).toISOString(), new Date().toISOString()]);
        return false;
      }
      const settled = e instanceof Settled ? e : e instanceof DmpRefusal && !e.transient ? new Settled('refused', e.code, e.message) : undefined;
      const code = settled?.code ?? (e instanceof DmpRefusal ? e.code : (e as Error).name === 'DmpUnavailable' ? 'unavailable' : 'error');
      const message = (e as Error).message;
      const gaveUp = !settled && attempts >= this.config.retry.maxAttempts;
      const state: PublicationState = settled?.state ?? (gaveUp ? 'failed' : 'pending');
      const delay = Math.min(this.config.retry.baseDelayMs * 2 ** (attempts - 1), this.config.retry.maxDelayMs);
      const at = new Date().toISOString();
      await publications.settle(sql, row.id, lease, 'state = ?, attempts = ?, last_error_code = ?, last_error = ?, next_attempt_at = ?, updated_at = ?, done_at = ?',
        [state, attempts, code, message, new Date(Date.now() + delay).toISOString(), at, state === 'pending' ? null : at]);
      if (state !== 'pending') await this.documents.publicationChanged?.(row.document_id, state, { error: `${code}: ${message}` });
      await this.audit.record({ action: 'export', outcome: settled && settled.state !== 'refused' && settled.state !== 'failed' ? 'refused' : 'failure', ...event, patients, details: { ...base, state, code, why: message } });
      this.logger.warn({ publication: Number(row.id), action: row.action, attempt: attempts, code, state }, state === 'pending' ? 'DMP publication failed; it will be retried' : 'DMP publication ended without being sent');
      return state !== 'pending';
    }
  }

  private callerFor(siteCode: string, author: DmpAuthor, mode: AuthenticationMode): { caller: DmpCaller; facility: Facility } {
    const credentials = this.credentials.get(siteCode);
    if (!credentials) throw new Settled('failed', 'not-configured', `site ${siteCode} has no DMP certificate (dmp.sites)`);
    const site = this.archive.sites.get(siteCode)!;
    const structureId = credentials.config.structureId ?? `1${site.finess}`;
    return {
      caller: {
        signer: credentials.signer, structure: { id: structureId, name: site.name }, sector: credentials.config.sector, mode,
        subject: { id: author.id, name: [author.given, author.family].filter(Boolean).join(' '), role: author.role ?? { code: '10', scheme: '1.2.250.1.213.1.1.5.5', display: 'Médecin' } },
      },
      facility: { name: site.name, finess: site.finess, facilityType: credentials.config.sector, practiceSetting: credentials.config.practiceSetting },
    };
  }

  private async publish(row: Row, touched: (patients: string[]) => void): Promise<Done> {
    const doc = await this.documents.documentFor(row.document_id);
    if (!doc) throw new Settled('failed', 'document-gone', 'the document is no longer available');
    const site = this.archive.siteById.get(doc.siteId);
    if (!site) throw new Settled('failed', 'not-configured', `site ${doc.siteId} is not configured`);
    touched([patientRef(site.code, doc.patient.IssuerOfPatientID, doc.patient.PatientID)]);
    // THE SHARING RULE (src/patients/ins.ts): only a qualified identity's INS leaves the site.
    const ins = doc.patient.identity ? shareableINS(doc.patient.identity) : undefined;
    if (!ins) throw new Settled('no-ins', 'no-qualified-ins', 'the patient has no qualified INS: nothing was sent to the DMP');
    const { caller, facility } = this.callerFor(site.code, doc.author, row.mode);
    let replaces: Row | undefined;
    if (row.replaces_document_id !== null) {
      replaces = await this.archive.index.sql.get<Row>(`SELECT * FROM dmp_publications WHERE document_id = ? AND action = 'publish'`, [row.replaces_document_id]);
      // The previous document still on its way: this one waits for it, so that it replaces it.
      if (replaces?.state === 'pending') throw new Waiting(`waiting for the publication of document ${row.replaces_document_id}, which this one replaces`);
      if (replaces?.state !== 'published') replaces = undefined;
    }
    const existence = await this.client.testExistence(caller, ins);
    if (existence.opposition) {
      await this.archive.index.sql.run(
        `INSERT INTO dmp_oppositions (ins, ins_oid, reported_at, publication_id) VALUES (?, ?, ?, ?)
         ON CONFLICT (ins, ins_oid) DO UPDATE SET reported_at = excluded.reported_at, publication_id = excluded.publication_id`,
        [ins.matricule + ins.key, ins.oid, new Date().toISOString(), row.id]);
      throw new Settled('opposed', 'patient-opposition', 'the patient opposed access to their DMP: nothing was sent');
    }
    if (!existence.exists || existence.closed) throw new Settled('no-dmp', existence.closed ? 'dmp-closed' : 'dmp-absent', existence.closed ? 'the patient\'s DMP is closed' : 'the patient has no DMP');
    if (replaces && (replaces.ins !== insValue(ins) || replaces.ins_oid !== ins.oid)) {
      // The new version is filed under another patient (a study moved): RPLC cannot cross
      // patients, so the old entry leaves its patient's DMP and the new one is published afresh.
      await this.deleteEntry(replaces, row, 'INDIRECTE');
      await this.archive.index.sql.run(`UPDATE dmp_publications SET state = 'unpublished', updated_at = ? WHERE id = ? AND state = 'published'`, [new Date().toISOString(), replaces.id]);
      replaces = undefined;
    }
    const root = await this.archive.index.installationUidRoot();
    const sourceId = this.config.sourceId ?? root;
    const published = await this.client.provideAndRegister(caller, {
      document: doc, ins, facility, sourceId,
      submissionSetUniqueId: `${root}.16.${row.id}.${Number(row.attempts) + 1}.1`, signatureUniqueId: `${root}.16.${row.id}.${Number(row.attempts) + 1}.2`,
      ...(replaces?.entry_uuid ? { replaces: replaces.entry_uuid } : {}),
    });
    const previous = replaces;
    return {
      state: 'published', entryUUID: published.entryUUID, uniqueId: published.uniqueId, submissionSetUid: published.submissionSetUniqueId, kind: doc.kind, ins, author: doc.author,
      ...(previous ? { after: async () => {
        await this.archive.index.sql.run(`UPDATE dmp_publications SET state = 'replaced', updated_at = ? WHERE id = ? AND state = 'published'`, [new Date().toISOString(), previous.id]);
      } } : {}),
    };
  }

  private async unpublish(row: Row): Promise<Done> {
    const sql = this.archive.index.sql;
    const published = await sql.get<Row>(`SELECT * FROM dmp_publications WHERE document_id = ? AND action = 'publish'`, [row.document_id]);
    if (!published || published.state !== 'published') throw new Settled('failed', 'not-published', 'the document has no DMP entry to unpublish');
    await this.deleteEntry(published, row, 'INDIRECTE');
    return {
      state: 'unpublished', entryUUID: published.entry_uuid ?? undefined,
      after: async () => {
        await sql.run(`UPDATE dmp_publications SET state = 'unpublished', updated_at = ? WHERE id = ? AND state = 'published'`, [new Date().toISOString(), published.id]);
      },
    };
  }

  /** ITI-57: a published entry to Deleted, in its own patient's DMP, as the site that published it. */
  private async deleteEntry(published: Row, by: Row, mode: AuthenticationMode): Promise<void> {
    if (!published.entry_uuid || !published.ins || !published.ins_oid) throw new Settled('failed', 'not-published', 'the document has no DMP entry to unpublish');
    const site = this.archive.siteById.get(Number(published.site_id))!;
    const author = JSON.parse(published.author_json ?? '{}') as DmpAuthor;
    const { caller, facility } = this.callerFor(site.code, author, mode);
    let ins: INS;
    try {
      ins = parseINS(published.ins, published.ins_oid);
    } catch (e) {
      throw new Settled('failed', 'bad-ins', (e as Error).message);
    }
    const root = await this.archive.index.installationUidRoot();
    await this.client.updateStatus(caller, {
      ins, facility, author, sourceId: this.config.sourceId ?? root, submissionSetUniqueId: `${root}.16.${by.id}.${Number(by.attempts) + 1}.3`,
      entryUUID: published.entry_uuid, contentType: (published.kind === 'KOS' ? documentCodes.KOS : documentCodes['CR-IMG']).typeCode,
    });
  }
}

interface Done {
  state: PublicationState;
  entryUUID?: string;
  uniqueId?: string;
  submissionSetUid?: string;
  kind?: string;
  ins?: INS;
  author?: DmpAuthor;
  /** What follows once the outcome is written (the previous entry marked replaced...). */
  after?: () => Promise<void>;
}
