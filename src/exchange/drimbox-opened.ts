/**
 * The KOS manifests professionals opened through the DRIMbox consumer
 * (src/exchange/drimbox-consumer.ts), kept in the index for an hour: what the WADO-RS proxy may
 * fetch for that professional and that study, on whichever node the viewer's next request
 * lands. One row per professional and study (opening it again replaces it); expired rows are
 * purged when a manifest is kept. The Pro Santé Connect token is not here: it stays sealed
 * with its session (src/access/session-tokens.ts).
 *
 * This module owns the `drimbox_opened_manifests` table (its own migrations).
 */
import { applyMigrations, type Migration } from '../index/migrations.ts';
import type { SqlDatabase } from '../index/sql.ts';
import type { Site } from '../index/records.ts';
import { parseINS } from '../patients/ins.ts';
import type { LocalPatient, RemoteStudy } from './drimbox-consumer.ts';

const migrations: readonly Migration[] = [{
  version: 1,
  name: 'KOS manifests opened through the DRIMbox consumer, for its proxy on every node',
  sql: `
CREATE TABLE drimbox_opened_manifests (
  principal_id {text} NOT NULL,
  study_instance_uid {text} NOT NULL,
  kos {text} NOT NULL,
  remote_json TEXT NOT NULL,
  opened_at TEXT NOT NULL,
  expires_at {text} NOT NULL,
  PRIMARY KEY (principal_id, study_instance_uid)
);
CREATE INDEX drimbox_opened_manifests_expiry ON drimbox_opened_manifests (expires_at);
`,
}];

const migrated = new WeakMap<SqlDatabase, Promise<unknown>>();

function migrate(sql: SqlDatabase): Promise<unknown> {
  let done = migrated.get(sql);
  if (!done) {
    done = applyMigrations(sql, migrations, 'drimbox_opened_migrations');
    done.catch(() => migrated.delete(sql));
    migrated.set(sql, done);
  }
  return done;
}

/** A RemoteStudy as the row keeps it: the site by its code, the INS by its value and OID, sets as lists. */
interface StoredRemote {
  kos: string;
  StudyInstanceUID: string;
  patient: Omit<LocalPatient, 'site' | 'ins'> & { site: string; ins: { value: string; oid: string } };
  series: Array<[string, { url: string; instances: string[] }]>;
  study: RemoteStudy['study'];
  openedAt: number;
}

export class OpenedManifests {
  constructor(private readonly sql: SqlDatabase, private readonly sites: ReadonlyMap<string, Site>) {}

  /** Keeps the manifest the professional opened, until `expiresAt`; the expired rows of everyone go. */
  async keep(principalId: string, remote: RemoteStudy, expiresAt: Date, now = new Date()): Promise<void> {
    await migrate(this.sql);
    const { site, ins, ...patient } = remote.patient;
    const stored: StoredRemote = {
      kos: remote.kos, StudyInstanceUID: remote.StudyInstanceUID,
      patient: { ...patient, site: site.code, ins: { value: ins.matricule + ins.key, oid: ins.oid } },
      series: [...remote.series].map(([uid, s]) => [uid, { url: s.url, instances: [...s.instances] }]),
      study: remote.study, openedAt: remote.openedAt,
    };
    await this.sql.run('DELETE FROM drimbox_opened_manifests WHERE expires_at < ?', [now.toISOString()]);
    await this.sql.run(
      `INSERT INTO drimbox_opened_manifests (principal_id, study_instance_uid, kos, remote_json, opened_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (principal_id, study_instance_uid) DO UPDATE SET kos = excluded.kos, remote_json = excluded.remote_json, opened_at = excluded.opened_at, expires_at = excluded.expires_at`,
      [principalId, remote.StudyInstanceUID, remote.kos, JSON.stringify(stored), new Date(remote.openedAt).toISOString(), expiresAt.toISOString()]);
  }

  /** The manifest the professional opened for this study, while it lasts; undefined otherwise. */
  async find(principalId: string, StudyInstanceUID: string, now = new Date()): Promise<RemoteStudy | undefined> {
    await migrate(this.sql);
    const row = await this.sql.get<{ remote_json: string; expires_at: string }>(
      'SELECT remote_json, expires_at FROM drimbox_opened_manifests WHERE principal_id = ? AND study_instance_uid = ?', [principalId, StudyInstanceUID]);
    if (!row || Date.parse(row.expires_at) <= now.getTime()) return undefined;
    const stored = JSON.parse(row.remote_json) as StoredRemote;
    const site = this.sites.get(stored.patient.site);
    // A site no longer configured: its manifest opens nothing.
    if (!site) return undefined;
    const { ins, ...patient } = stored.patient;
    return {
      kos: stored.kos, StudyInstanceUID: stored.StudyInstanceUID,
      patient: { ...patient, site, ins: parseINS(ins.value, ins.oid) },
      series: new Map(stored.series.map(([uid, s]) => [uid, { url: s.url, instances: new Set(s.instances) }])),
      study: stored.study, openedAt: stored.openedAt,
    };
  }
}
