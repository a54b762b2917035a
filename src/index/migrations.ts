import { randomUUID } from 'node:crypto';
import { foldPersonName } from '../dicom/person-name.ts';
import type { SqlDatabase } from './sql.ts';

/**
 * Versioned schema changes. The SQL text is shared by both engines; the few words
 * that differ are written as tokens:
 *   {id}    an auto-generated integer primary key
 *   {text}  a string column compared byte for byte (memcmp order), so that a
 *           prefix range or LIKE 'abc%' can use a plain B-tree index on PostgreSQL too
 *   {nulls-last}  after DESC in an index, so that it serves ORDER BY ... DESC NULLS LAST
 *           (SQLite sorts NULL lowest, so DESC already puts it last)
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
  /** Data to move once the SQL has run (in the same transaction). */
  up?: (tx: SqlDatabase) => Promise<void>;
}

const tokens = {
  sqlite: { '{id}': 'INTEGER PRIMARY KEY', '{text}': 'TEXT', '{nulls-last}': '' },
  postgres: { '{id}': 'BIGSERIAL PRIMARY KEY', '{text}': 'TEXT COLLATE "C"', '{nulls-last}': ' NULLS LAST' },
} as const;

export function portableSql(engine: SqlDatabase['engine'], sql: string): string {
  const map: Record<string, string> = tokens[engine];
  return sql.replace(/\{id\}|\{text\}|\{nulls-last\}/g, (token) => map[token]!);
}

/**
 * Applies the migrations not yet recorded in `table`, all in one transaction.
 * Other modules may keep their own tables with their own list and table name.
 */
export async function applyMigrations(
  db: SqlDatabase,
  migrations: readonly Migration[],
  table = 'schema_migrations',
): Promise<number[]> {
  if (!/^[a-z_][a-z0-9_]*$/.test(table)) throw new Error(`invalid migrations table name: ${table}`);
  return db.transaction(async (tx) => {
    if (tx.engine === 'postgres') {
      // Several nodes may start at once: the first migrates, the others wait and find nothing to do.
      await tx.get(`SELECT pg_advisory_xact_lock(hashtext(?))`, [`atrium:${table}`]);
    }
    await tx.exec(
      `CREATE TABLE IF NOT EXISTS ${table} (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`,
    );
    const done = new Set(
      (await tx.all<{ version: number }>(`SELECT version FROM ${table}`)).map((row) => Number(row.version)),
    );
    const applied: number[] = [];
    for (const migration of [...migrations].sort((a, b) => a.version - b.version)) {
      if (done.has(migration.version)) continue;
      await tx.exec(portableSql(tx.engine, migration.sql));
      await migration.up?.(tx);
      await tx.run(`INSERT INTO ${table} (version, name, applied_at) VALUES (?, ?, ?)`, [
        migration.version,
        migration.name,
        new Date().toISOString(),
      ]);
      applied.push(migration.version);
    }
    return applied;
  });
}

/**
 * Columns are named after the DICOM keywords they hold. Foreign keys are
 * `<table>_id`, except that patients.patient_id is the DICOM PatientID and
 * studies.patient_id points to patients.id.
 * Multi-valued study attributes are "\"-delimited with a leading and trailing "\"
 * ("\CT\MR\"), so that one value is found with a plain substring test.
 */
export const indexMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'sites, patients, studies, series, instances, history, outbox',
    sql: `
CREATE TABLE sites (
  id {id},
  code {text} NOT NULL UNIQUE,
  name TEXT NOT NULL,
  finess {text} NOT NULL,
  issuer_of_patient_id {text} NOT NULL
);

CREATE TABLE patients (
  id {id},
  site_id BIGINT NOT NULL REFERENCES sites (id),
  issuer {text} NOT NULL,
  patient_id {text} NOT NULL,
  patient_name {text},
  patient_name_folded {text},
  birth_date {text},
  sex {text},
  updated_at TEXT NOT NULL,
  UNIQUE (site_id, issuer, patient_id)
);
CREATE INDEX patients_patient_id ON patients (patient_id);
CREATE INDEX patients_name_folded ON patients (patient_name_folded);

CREATE TABLE studies (
  id {id},
  study_instance_uid {text} NOT NULL UNIQUE,
  patient_id BIGINT NOT NULL REFERENCES patients (id),
  site_id BIGINT NOT NULL REFERENCES sites (id),
  study_date {text},
  study_time {text},
  accession_number {text},
  study_id {text},
  description {text},
  referring_physician_name {text},
  referring_physician_name_folded {text},
  institution_name {text},
  modalities_in_study {text} NOT NULL DEFAULT '\\',
  sop_classes_in_study {text} NOT NULL DEFAULT '\\',
  number_of_series INTEGER NOT NULL DEFAULT 0,
  number_of_instances INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX studies_patient ON studies (patient_id);
CREATE INDEX studies_date ON studies (study_date DESC{nulls-last}, study_time DESC{nulls-last}, id);
CREATE INDEX studies_accession ON studies (accession_number);
CREATE INDEX studies_site_date ON studies (site_id, study_date DESC{nulls-last}, study_time DESC{nulls-last}, id);

CREATE TABLE series (
  id {id},
  series_instance_uid {text} NOT NULL UNIQUE,
  study_id BIGINT NOT NULL REFERENCES studies (id),
  modality {text},
  series_number INTEGER,
  description {text},
  body_part {text},
  series_date {text},
  series_time {text},
  pps_start_date {text},
  pps_start_time {text},
  number_of_instances INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX series_study ON series (study_id, series_number);
CREATE INDEX series_modality ON series (modality, study_id);

CREATE TABLE instances (
  id {id},
  sop_instance_uid {text} NOT NULL UNIQUE,
  series_id BIGINT NOT NULL REFERENCES series (id),
  sop_class_uid {text} NOT NULL,
  instance_number INTEGER,
  transfer_syntax_uid {text} NOT NULL,
  number_of_frames INTEGER,
  pixel_rows INTEGER,
  pixel_columns INTEGER,
  content_date {text},
  content_time {text},
  blob_key {text} NOT NULL,
  size BIGINT NOT NULL,
  sha256 {text} NOT NULL,
  layout_json TEXT NOT NULL,
  metadata_json TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX instances_series ON instances (series_id, instance_number);

CREATE TABLE instance_history (
  id {id},
  sop_instance_uid {text} NOT NULL,
  blob_key {text} NOT NULL,
  size BIGINT NOT NULL,
  sha256 {text} NOT NULL,
  reason {text} NOT NULL,
  created_at TEXT NOT NULL
);
CREATE INDEX instance_history_sop ON instance_history (sop_instance_uid);

CREATE TABLE outbox (
  id {id},
  type {text} NOT NULL,
  payload_json TEXT NOT NULL,
  created_at TEXT NOT NULL,
  claimed_at TEXT,
  done_at TEXT
);
CREATE INDEX outbox_pending ON outbox (id) WHERE done_at IS NULL;
`,
  },
  {
    version: 2,
    name: 'instances by blob key',
    // verify --repair finds the rows of a missing blob by its key.
    sql: 'CREATE INDEX instances_blob_key ON instances (blob_key);',
  },
  {
    version: 3,
    name: 'patient name words, for fuzzy matching by any name component',
    sql: `
CREATE TABLE patient_name_words (
  word {text} NOT NULL,
  patient_id BIGINT NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
  PRIMARY KEY (word, patient_id)
);
CREATE INDEX patient_name_words_patient ON patient_name_words (patient_id);
`,
    up: async (tx) => {
      const patients = await tx.all<{ id: number; patient_name: string }>(
        'SELECT id, patient_name FROM patients WHERE patient_name IS NOT NULL',
      );
      for (const p of patients) await writePatientNameWords(tx, p.id, p.patient_name);
    },
  },
  {
    version: 4,
    name: 'forwarding queue: one row per instance and destination peer',
    // state: pending, in-progress, done, failed. claim_id names the worker holding an
    // in-progress row, so that a row requeued meanwhile is not marked done by it.
    sql: `
CREATE TABLE forward_queue (
  id {id},
  sop_instance_uid {text} NOT NULL,
  study_instance_uid {text} NOT NULL,
  destination {text} NOT NULL,
  reason {text} NOT NULL,
  state {text} NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at {text} NOT NULL,
  last_error TEXT,
  claim_id {text},
  claimed_at {text},
  created_at {text} NOT NULL,
  updated_at {text} NOT NULL,
  done_at {text},
  UNIQUE (sop_instance_uid, destination)
);
CREATE INDEX forward_queue_due ON forward_queue (destination, next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX forward_queue_claimed ON forward_queue (claimed_at) WHERE state = 'in-progress';
CREATE INDEX forward_queue_state ON forward_queue (destination, state);
`,
  },
  {
    version: 5,
    name: 'scheduled procedures: orders received (HL7 ORM/OMI), served as the modality worklist',
    // One row per requested procedure and its (single) scheduled step, per site and
    // accession number. Patient attributes are copied from the order: the worklist shows
    // what the order said, whatever the patient record became.
    sql: `
CREATE TABLE scheduled_procedures (
  id {id},
  site_id INTEGER NOT NULL REFERENCES sites(id),
  patient_id {text} NOT NULL,
  issuer {text} NOT NULL,
  patient_name TEXT,
  patient_name_folded {text},
  birth_date {text},
  sex {text},
  accession_number {text} NOT NULL,
  study_instance_uid {text} NOT NULL,
  requested_procedure_id {text},
  requested_procedure_description TEXT,
  referring_physician_name TEXT,
  referring_physician_name_folded {text},
  placer_order_number {text},
  filler_order_number {text},
  sps_id {text},
  sps_description TEXT,
  station_ae_title {text},
  station_name {text},
  modality {text},
  start_date {text},
  start_time {text},
  performing_physician_name TEXT,
  performing_physician_name_folded {text},
  status {text} NOT NULL,
  created_at {text} NOT NULL,
  updated_at {text} NOT NULL,
  UNIQUE (site_id, accession_number)
);
CREATE INDEX scheduled_procedures_when ON scheduled_procedures (start_date, start_time);
CREATE INDEX scheduled_procedures_patient ON scheduled_procedures (patient_id, issuer);
CREATE INDEX scheduled_procedures_accession ON scheduled_procedures (accession_number);
`,
  },
  {
    version: 6,
    name: 'identities: INS and traits per patient record, persons linking records across sites, reviews; outbox cursors',
    // A person is the set of patient records (one per site, issuer and PatientID) known to be
    // one human: records carrying the same qualified INS with agreeing traits, or linked by a
    // person after review. identity_reviews holds what a human must decide: candidate links
    // from demographics, conflicting traits under one INS, an INS that disagrees with the
    // record's qualified one. outbox_cursors lets several consumers each read every event.
    sql: `
CREATE TABLE persons (
  id {id},
  created_at {text} NOT NULL
);
CREATE TABLE patient_identities (
  patient_id BIGINT PRIMARY KEY REFERENCES patients (id),
  ins {text},
  ins_oid {text},
  status {text} NOT NULL,
  source {text} NOT NULL,
  birth_name TEXT,
  first_names TEXT,
  sex {text},
  birth_date {text},
  birth_place {text},
  person_id BIGINT REFERENCES persons (id),
  updated_at {text} NOT NULL
);
CREATE INDEX patient_identities_ins ON patient_identities (ins);
CREATE INDEX patient_identities_person ON patient_identities (person_id);
CREATE TABLE identity_reviews (
  id {id},
  kind {text} NOT NULL,
  patient_id BIGINT NOT NULL REFERENCES patients (id),
  other_patient_id BIGINT REFERENCES patients (id),
  details TEXT NOT NULL,
  state {text} NOT NULL,
  created_at {text} NOT NULL,
  decided_at {text}
);
CREATE INDEX identity_reviews_open ON identity_reviews (kind, patient_id) WHERE state = 'open';
CREATE TABLE outbox_cursors (
  consumer {text} PRIMARY KEY,
  last_id BIGINT NOT NULL,
  updated_at {text} NOT NULL
);
`,
  },
  {
    version: 7,
    name: 'patients merged into another record (HL7 A40): later objects follow the merge',
    sql: `ALTER TABLE patients ADD COLUMN merged_into BIGINT REFERENCES patients (id);`,
  },
  {
    version: 8,
    name: 'corrections (IOCM ideas): studies moved to another patient, objects rejected; undoable',
    // studies.moved_from_patient_id: objects of a moved study still arriving under the patient
    // it was moved from join it rather than being refused as an identity conflict.
    sql: `
ALTER TABLE studies ADD COLUMN moved_from_patient_id BIGINT REFERENCES patients (id);
CREATE TABLE corrections (
  id {id},
  kind {text} NOT NULL,
  study_instance_uid {text},
  sop_instance_uid {text},
  from_patient_id BIGINT REFERENCES patients (id),
  to_patient_id BIGINT REFERENCES patients (id),
  blob_key {text},
  reason TEXT NOT NULL,
  requested_by {text} NOT NULL,
  created_at {text} NOT NULL,
  undone_at {text},
  undone_by {text}
);
CREATE INDEX corrections_study ON corrections (study_instance_uid);
CREATE INDEX corrections_sop ON corrections (sop_instance_uid);
`,
  },
  {
    version: 9,
    name: 'audit trail: append-only, hash-chained events and the patient records each touched',
    sql: `
CREATE TABLE audit_events (
  id {id},
  at {text} NOT NULL,
  action {text} NOT NULL,
  outcome {text} NOT NULL,
  actor {text} NOT NULL,
  actor_kind {text} NOT NULL,
  site {text},
  source {text},
  via {text} NOT NULL,
  reason TEXT,
  study_instance_uid {text},
  patients TEXT,
  details TEXT,
  prev_hash {text} NOT NULL,
  hash {text} NOT NULL
);
CREATE INDEX audit_events_study ON audit_events (study_instance_uid);
CREATE TABLE audit_event_patients (
  event_id BIGINT NOT NULL REFERENCES audit_events (id),
  patient_ref {text} NOT NULL
);
CREATE INDEX audit_event_patients_ref ON audit_event_patients (patient_ref, event_id);
`,
    // Append-only in the database too: updates and deletes are refused (the chain would tell anyway).
    up: async (tx) => {
      if (tx.engine === 'sqlite') {
        for (const table of ['audit_events', 'audit_event_patients']) {
          await tx.exec(`CREATE TRIGGER ${table}_no_update BEFORE UPDATE ON ${table} BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER ${table}_no_delete BEFORE DELETE ON ${table} BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;`);
        }
      } else {
        await tx.exec(`CREATE OR REPLACE FUNCTION atrium_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $$;`);
        for (const table of ['audit_events', 'audit_event_patients']) {
          await tx.exec(`CREATE TRIGGER ${table}_append_only BEFORE UPDATE OR DELETE ON ${table} FOR EACH ROW EXECUTE FUNCTION atrium_audit_append_only();`);
        }
      }
    },
  },
  {
    version: 10,
    name: 'access: users and their sites, sessions, grants (shares, emergency access, assignments), share links; referring physician id of studies',
    // users.subject is "<issuer>|<sub>" once a user logged in through OpenID Connect; local
    // accounts have a password_hash (scrypt). roles is a JSON list. A session or a share link
    // is stored by the SHA-256 of its secret, never the secret itself. access_grants give a
    // user a reason to see a study or a patient's exams (patient_id: every record linked to
    // the same person) until expires_at or revoked_at.
    sql: `
ALTER TABLE studies ADD COLUMN referring_physician_id {text};
CREATE INDEX studies_referring_physician_id ON studies (referring_physician_id);
CREATE TABLE users (
  id {id},
  login {text} NOT NULL UNIQUE,
  display_name TEXT NOT NULL,
  rpps {text} UNIQUE,
  subject {text} UNIQUE,
  password_hash TEXT,
  roles {text} NOT NULL,
  patient_id BIGINT REFERENCES patients (id),
  failed_logins INTEGER NOT NULL DEFAULT 0,
  locked_until {text},
  disabled_at {text},
  created_at {text} NOT NULL,
  updated_at {text} NOT NULL
);
CREATE TABLE user_sites (
  user_id BIGINT NOT NULL REFERENCES users (id),
  site_id BIGINT NOT NULL REFERENCES sites (id),
  PRIMARY KEY (user_id, site_id)
);
CREATE TABLE share_links (
  id {id},
  token_sha256 {text} NOT NULL UNIQUE,
  pin_hash TEXT,
  study_instance_uid {text},
  patient_id BIGINT REFERENCES patients (id),
  created_by {text} NOT NULL,
  created_at {text} NOT NULL,
  expires_at {text} NOT NULL,
  revoked_at {text},
  revoked_by {text},
  failed_pins INTEGER NOT NULL DEFAULT 0,
  locked_at {text}
);
CREATE TABLE sessions (
  id_sha256 {text} PRIMARY KEY,
  user_id BIGINT REFERENCES users (id),
  share_link_id BIGINT REFERENCES share_links (id),
  csrf_token {text} NOT NULL,
  source {text},
  created_at {text} NOT NULL,
  last_seen_at {text} NOT NULL,
  expires_at {text} NOT NULL,
  revoked_at {text}
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE TABLE access_grants (
  id {id},
  kind {text} NOT NULL,
  user_id BIGINT NOT NULL REFERENCES users (id),
  study_instance_uid {text},
  patient_id BIGINT REFERENCES patients (id),
  reason TEXT,
  granted_by {text} NOT NULL,
  created_at {text} NOT NULL,
  expires_at {text},
  revoked_at {text},
  revoked_by {text},
  reviewed_at {text},
  reviewed_by {text}
);
CREATE INDEX access_grants_user ON access_grants (user_id, kind);
CREATE INDEX access_grants_patient ON access_grants (patient_id);
`,
  },
  {
    version: 11,
    name: 'studies by date carry their site and patient: an access scope filters the walk without reading each study',
    // A search in date order with a site's or a patient's scope (access/policy.ts) checks
    // site_id and patient_id on the index entry; before, every study walked was read from the
    // table (a ModalitiesInStudy search matching nothing on 100,000 studies: 136 ms, now 9 ms).
    // The scope never drives a search, so the (site, date) index only cost writes.
    sql: `
DROP INDEX studies_date;
DROP INDEX studies_site_date;
CREATE INDEX studies_date ON studies (study_date DESC{nulls-last}, study_time DESC{nulls-last}, id, site_id, patient_id);
`,
  },
  {
    version: 12,
    name: 'teleradiology: requests, on-call rota, reports and their addenda, report deliveries, second readings, report templates',
    // A request is open until its final report (status), and a worklist is a walk of open
    // requests in deadline order: a partial index of the open ones serves it (reported
    // requests pile up for years, open ones stay a few thousand), filters on site, modality,
    // body part and urgency are checked on the index entry. A reading is claimed by
    // one radiologist until claim_expires_at. Reports are never edited once final: addenda
    // follow. Deliveries are written in the signing transaction and sent by a worker.
    sql: `
CREATE TABLE tele_requests (
  id {id},
  requesting_site_id BIGINT NOT NULL REFERENCES sites (id),
  patient_id BIGINT NOT NULL REFERENCES patients (id),
  study_instance_uid {text},
  accession_number {text},
  urgency {text} NOT NULL,
  modality {text} NOT NULL,
  body_part {text} NOT NULL,
  specialty {text} NOT NULL,
  clinical_context TEXT NOT NULL,
  clinical_question TEXT NOT NULL,
  requesting_physician TEXT NOT NULL,
  requesting_physician_rpps {text},
  proposed_protocol TEXT NOT NULL,
  protocol TEXT,
  protocol_decision {text},
  protocol_reason TEXT,
  protocol_by {text},
  protocol_at {text},
  status {text} NOT NULL,
  returned_reason TEXT,
  assigned_user_id BIGINT REFERENCES users (id),
  assignment_grant_id BIGINT REFERENCES access_grants (id),
  assigned_at {text},
  claimed_by BIGINT REFERENCES users (id),
  claim_expires_at {text},
  images_arrived_at {text},
  deadline_at {text} NOT NULL,
  escalated_at {text},
  reported_at {text},
  created_by {text} NOT NULL,
  created_at {text} NOT NULL,
  updated_at {text} NOT NULL
);
CREATE INDEX tele_requests_open ON tele_requests (deadline_at, id, requesting_site_id, urgency, modality, body_part, specialty)
  WHERE status IN ('awaiting-protocol', 'open');
CREATE INDEX tele_requests_status ON tele_requests (status, deadline_at, id);
CREATE INDEX tele_requests_assigned ON tele_requests (assigned_user_id, status, deadline_at);
CREATE INDEX tele_requests_study ON tele_requests (study_instance_uid);
CREATE INDEX tele_requests_accession ON tele_requests (requesting_site_id, accession_number);
CREATE TABLE tele_oncall (
  id {id},
  user_id BIGINT NOT NULL REFERENCES users (id),
  specialty {text} NOT NULL,
  starts_at {text} NOT NULL,
  ends_at {text} NOT NULL,
  created_by {text} NOT NULL,
  created_at {text} NOT NULL
);
CREATE INDEX tele_oncall_specialty ON tele_oncall (specialty, starts_at, ends_at);
CREATE TABLE tele_reports (
  id {id},
  request_id BIGINT NOT NULL UNIQUE REFERENCES tele_requests (id),
  status {text} NOT NULL,
  template {text},
  fields_json TEXT NOT NULL,
  findings TEXT NOT NULL,
  conclusion TEXT NOT NULL,
  author_user_id BIGINT NOT NULL REFERENCES users (id),
  reading_site_id BIGINT REFERENCES sites (id),
  version INTEGER NOT NULL,
  created_at {text} NOT NULL,
  updated_at {text} NOT NULL,
  signed_at {text},
  signed_by {text}
);
CREATE TABLE tele_report_addenda (
  id {id},
  report_id BIGINT NOT NULL REFERENCES tele_reports (id),
  text TEXT NOT NULL,
  author_user_id BIGINT NOT NULL REFERENCES users (id),
  signed_by {text} NOT NULL,
  signed_at {text} NOT NULL
);
CREATE INDEX tele_report_addenda_report ON tele_report_addenda (report_id, id);
CREATE TABLE tele_deliveries (
  id {id},
  report_id BIGINT NOT NULL REFERENCES tele_reports (id),
  channel {text} NOT NULL,
  destination {text} NOT NULL,
  result_status {text} NOT NULL,
  payload TEXT,
  status {text} NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at {text} NOT NULL,
  last_error TEXT,
  created_at {text} NOT NULL,
  sent_at {text}
);
CREATE INDEX tele_deliveries_pending ON tele_deliveries (status, next_attempt_at);
CREATE TABLE tele_second_readings (
  id {id},
  request_id BIGINT NOT NULL REFERENCES tele_requests (id),
  specialty {text} NOT NULL,
  question TEXT NOT NULL,
  asked_by {text} NOT NULL,
  asked_by_user_id BIGINT REFERENCES users (id),
  expert_user_id BIGINT NOT NULL REFERENCES users (id),
  grant_id BIGINT REFERENCES access_grants (id),
  status {text} NOT NULL,
  findings TEXT,
  conclusion TEXT,
  agreement {text},
  answer_site_id BIGINT REFERENCES sites (id),
  created_at {text} NOT NULL,
  answered_at {text}
);
CREATE INDEX tele_second_readings_expert ON tele_second_readings (expert_user_id, status, created_at);
CREATE INDEX tele_second_readings_request ON tele_second_readings (request_id);
CREATE INDEX tele_reports_signed ON tele_reports (signed_at);
CREATE TABLE tele_report_templates (
  code {text} PRIMARY KEY,
  name TEXT NOT NULL,
  modality {text},
  body_part {text},
  fields_json TEXT NOT NULL,
  findings TEXT NOT NULL,
  updated_by {text} NOT NULL,
  updated_at {text} NOT NULL
);
`,
  },
  {
    version: 13,
    name: 'installation: this archive\'s own UID root, for the UIDs it makes up (teleradiology workitems)',
    // 2.25 and a random UUID as a decimal (PS3.5 B.2): no two installations share it, and the
    // UIDs made under it stay the same for the life of the archive.
    sql: `CREATE TABLE installation (id INTEGER PRIMARY KEY, uid_root {text} NOT NULL);`,
    up: async (tx) => {
      await tx.run('INSERT INTO installation (id, uid_root) VALUES (1, ?)', [`2.25.${BigInt(`0x${randomUUID().replaceAll('-', '')}`).toString(10)}`]);
    },
  },
  {
    version: 14,
    name: 'teleradiology alerts: stroke assignments and escalations to send on the alert channel',
    // Written in the transaction that assigns or escalates, so that none is lost; sent by
    // workflow/tele-alerts.ts, retried with doubling delays.
    sql: `
CREATE TABLE tele_alerts (
  id {id},
  request_id BIGINT NOT NULL REFERENCES tele_requests (id),
  kind {text} NOT NULL,
  payload TEXT NOT NULL,
  status {text} NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at {text} NOT NULL,
  last_error TEXT,
  created_at {text} NOT NULL,
  sent_at {text}
);
CREATE INDEX tele_alerts_pending ON tele_alerts (status, next_attempt_at);
`,
  },  {
    version: 15,
    name: 'sessions: the ID token of an OpenID Connect login, the hint of the logout at the provider',
    // RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): logging out of Atrium also
    // ends the Pro Santé Connect session, so that the next person at a shared workstation is
    // asked who they are. Purged with the session a day after it ends.
    sql: `ALTER TABLE sessions ADD COLUMN id_token TEXT;`,
  },
  {
    version: 16,
    name: 'cross-site integrity: for whom an identity review was decided, the patient records a share opens',
    // A link between two sites' records widens access only when qualified INS back it or the
    // territory decided it: decided_for says which ('territory' or 'sites'; null before this).
    // A share of a patient opens the records listed when it was made (a JSON array of
    // patients.id): the named one and those linked by qualified INS that the sharer saw.
    sql: `
ALTER TABLE identity_reviews ADD COLUMN decided_for {text};
ALTER TABLE access_grants ADD COLUMN patient_ids TEXT;
ALTER TABLE share_links ADD COLUMN patient_ids TEXT;
`,
  },
  {
    version: 17,
    name: 'outbox: events ordered by their transaction, consumer positions (txid, id)',
    // See src/events/outbox.ts: on PostgreSQL an event id can commit after a higher one, so
    // consumers read by (writing transaction, id) below the snapshot's xmin. Existing events
    // get txid 0, so existing positions (0, last_id) go on where they were. The DDL differs
    // by engine (PostgreSQL's default is the writing transaction's id), hence up().
    sql: '',
    up: async (tx) => {
      if (tx.engine === 'postgres') {
        await tx.exec(`
ALTER TABLE outbox ADD COLUMN txid BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ALTER COLUMN txid SET DEFAULT (pg_current_xact_id()::text::bigint);
ALTER TABLE outbox_cursors ADD COLUMN last_txid BIGINT NOT NULL DEFAULT 0;
CREATE INDEX outbox_txid_id ON outbox (txid, id);
`);
      } else {
        await tx.exec(`
ALTER TABLE outbox ADD COLUMN txid INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox_cursors ADD COLUMN last_txid INTEGER NOT NULL DEFAULT 0;
`);
      }
      // Routing claimed events and marked them done; it now has a position like every
      // consumer: just before the first event it had not done (after the last one if none).
      await tx.run(
        `INSERT INTO outbox_cursors (consumer, last_id, last_txid, updated_at)
         VALUES ('routing', COALESCE((SELECT MIN(id) - 1 FROM outbox WHERE done_at IS NULL), (SELECT MAX(id) FROM outbox), 0), 0, ?)
         ON CONFLICT (consumer) DO NOTHING`,
        [new Date().toISOString()],
      );
    },
  },

  {
    version: 18,
    name: 'study documents for the DMP (CR-IMG, KOS manifest), owned by src/exchange/study-documents.ts',
    // content: the CDA XML, or the KOS Part 10 object in base64 (both engines store TEXT alike).
    sql: `
CREATE TABLE study_documents (
  id {id},
  kind {text} NOT NULL,
  study_instance_uid {text} NOT NULL,
  patient_id BIGINT NOT NULL,
  type_code {text} NOT NULL,
  type_code_system {text} NOT NULL,
  class_code {text} NOT NULL,
  mime_type {text} NOT NULL,
  unique_id {text} NOT NULL UNIQUE,
  set_id {text} NOT NULL,
  version INTEGER NOT NULL,
  current INTEGER NOT NULL,
  replaces_id BIGINT,
  report_id BIGINT,
  fingerprint TEXT NOT NULL,
  content TEXT NOT NULL,
  meta_json TEXT NOT NULL,
  publication_status {text} NOT NULL,
  publication_detail TEXT,
  published_at TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX study_documents_study ON study_documents (study_instance_uid, kind, current);
CREATE INDEX study_documents_publication ON study_documents (publication_status, current, id);
CREATE TABLE study_documents_due (
  study_instance_uid {text} PRIMARY KEY,
  reason TEXT NOT NULL,
  due_at TEXT NOT NULL,
  leased_until TEXT,
  last_error TEXT
);
`,
  },

  {
    version: 19,
    name: 'studies: statistics on the site scope\'s expression (+site_id), for the PostgreSQL planner',
    // access/policy.ts writes a site scope as "+s.site_id IN (...)" so that no planner drives a
    // search by it. PostgreSQL then had no statistics for the expression (0.5% by default) and,
    // for a page of a site's recent studies past the first, sorted the whole table instead of
    // walking studies_date (100,000 studies: 390 ms against 1.5 ms; bench/large-index.ts). With
    // this object ANALYZE measures the expression. SQLite walks studies_date already: nothing to do.
    sql: '',
    up: async (tx) => {
      if (tx.engine === 'postgres') await tx.exec('CREATE STATISTICS studies_site_scope ON (+site_id) FROM studies;');
    },
  },
  {
    version: 20,
    name: 'studies by patient carry their date, time and site: a search by patient name pages in the index',
    // A broad name prefix (bench/large-index.ts, "DUP*": 3,000 patient records, 7,500 studies
    // at 1,000,000) read every matching study row at random places in the table and sorted
    // them for one page. With these columns on the entry, archive-index.ts orders the matches
    // and checks the site scope on the index alone (index-only on PostgreSQL), and reads the
    // rows of the page only; one patient's studies also come in date order without a sort.
    sql: `
DROP INDEX studies_patient;
CREATE INDEX studies_patient ON studies (patient_id, study_date DESC{nulls-last}, study_time DESC{nulls-last}, id, site_id);
`,
  },

];

/** The words of a folded person name: its components, and the parts of compound names ("JEAN-PIERRE"). */
export function personNameWords(name: string): string[] {
  return [...new Set(foldPersonName(name).split(/[\^= -]+/).filter((w) => w !== ''))];
}

export async function writePatientNameWords(tx: SqlDatabase, patientId: number, name: string | null): Promise<void> {
  await tx.run('DELETE FROM patient_name_words WHERE patient_id = ?', [patientId]);
  for (const word of name === null ? [] : personNameWords(name)) {
    await tx.run('INSERT INTO patient_name_words (word, patient_id) VALUES (?, ?) ON CONFLICT DO NOTHING', [word, patientId]);
  }
}
