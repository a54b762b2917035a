/**
 * The DICOM peers Atrium knows: the configuration file's (read at start, as `atrium peer add`
 * writes them) and those an administrator added through the API (`POST /api/admin/peers`),
 * kept in the index so that every node of a region sees them at once, without a restart.
 * Everything that asks "who is this AE title" (DIMSE association acceptance, C-MOVE
 * destinations, forwarding, rejection notes, the forwarding and administration APIs) reads
 * this directory, never `config.peers` alone.
 *
 * Each node keeps the list in memory and reads the table again when its copy is older than
 * `refreshMs`; an AE title it does not know is looked up in the table at once (a peer another
 * node has just added is accepted by the next association, not a refresh later). A removal or
 * a change reaches the other nodes within `refreshMs`. A peer of the configuration file wins
 * over a row of the same AE title (the API refuses to add one, but a file may gain it later).
 *
 * This module owns the `dicom_peers` table (its own migrations).
 */
import { applyMigrations, type Migration } from '../index/migrations.ts';
import type { SqlDatabase } from '../index/sql.ts';
import type { PeerConfig } from './config.ts';

const migrations: readonly Migration[] = [{
  version: 1,
  name: 'DICOM peers added through the administration API',
  sql: `
CREATE TABLE dicom_peers (
  ae_title {text} PRIMARY KEY,
  site {text} NOT NULL,
  peer_json TEXT NOT NULL,
  added_by TEXT NOT NULL,
  added_at TEXT NOT NULL
);
`,
}];

/** A peer and where it comes from: the configuration file (read at start) or the index (the API). */
export type PeerOrigin = 'file' | 'api';

interface PeerRow { ae_title: string; peer_json: string }

export class PeerDirectory {
  private readonly file: ReadonlyMap<string, PeerConfig>;
  private added = new Map<string, PeerConfig>();
  private loadedAt = 0;
  private loading: Promise<void> | undefined;
  /** Counts this node's own adds and removes: a read of the table begun before one of them is read again. */
  private changes = 0;

  private constructor(private readonly sql: SqlDatabase, filePeers: readonly PeerConfig[], private readonly refreshMs: number) {
    this.file = new Map(filePeers.map((p) => [p.aeTitle, p]));
  }

  /** The directory of a node: the file's peers, and the table's, migrated and read once now. */
  static async open(sql: SqlDatabase, filePeers: readonly PeerConfig[], options: { refreshMs?: number } = {}): Promise<PeerDirectory> {
    await applyMigrations(sql, migrations, 'peer_migrations');
    const directory = new PeerDirectory(sql, filePeers, options.refreshMs ?? 2000);
    await directory.refresh();
    return directory;
  }

  /** Every peer as this node knows it now (the file's first); `fresh()` first for a current list. */
  list(): PeerConfig[] {
    return [...this.file.values(), ...[...this.added.values()].filter((p) => !this.file.has(p.aeTitle))];
  }

  /** A peer as this node knows it now, without reading the table. */
  get(aeTitle: string): PeerConfig | undefined {
    return this.file.get(aeTitle) ?? this.added.get(aeTitle);
  }

  originOf(aeTitle: string): PeerOrigin | undefined {
    return this.file.has(aeTitle) ? 'file' : this.added.has(aeTitle) ? 'api' : undefined;
  }

  /** Whether `find(aeTitle)` must read the table (the copy is old, or the AE title unknown). */
  needsLookup(aeTitle: string): boolean {
    return this.file.has(aeTitle) ? false : this.stale() || !this.added.has(aeTitle);
  }

  /** The list, read again from the table if this node's copy is older than refreshMs. */
  async fresh(): Promise<PeerConfig[]> {
    if (this.stale()) await this.refresh();
    return this.list();
  }

  /** The peer of this AE title as the platform knows it now: one added on another node a moment ago included. */
  async find(aeTitle: string): Promise<PeerConfig | undefined> {
    const filePeer = this.file.get(aeTitle);
    if (filePeer) return filePeer;
    if (this.stale()) await this.refresh();
    if (!this.added.has(aeTitle)) {
      const changes = this.changes;
      const row = await this.sql.get<PeerRow>('SELECT ae_title, peer_json FROM dicom_peers WHERE ae_title = ?', [aeTitle]);
      if (row && changes === this.changes) this.added.set(row.ae_title, JSON.parse(row.peer_json) as PeerConfig);
    }
    return this.added.get(aeTitle);
  }

  /** Reads the table again (one read at a time; callers meanwhile wait for it). */
  refresh(): Promise<void> {
    this.loading ??= (async () => {
      try {
        // A read that began before this node added or removed a peer would put the old list
        // back (a removed peer accepted again until the next refresh): such a read is redone.
        for (;;) {
          const started = Date.now();
          const changes = this.changes;
          const rows = await this.sql.all<PeerRow>('SELECT ae_title, peer_json FROM dicom_peers');
          if (changes !== this.changes) continue;
          this.added = new Map(rows.map((r) => [r.ae_title, JSON.parse(r.peer_json) as PeerConfig]));
          this.loadedAt = started;
          return;
        }
      } finally {
        this.loading = undefined;
      }
    })();
    return this.loading;
  }

  /**
   * Adds a peer for every node, at once. Refused (PeerExists) when the AE title is already
   * known, in the file or the table. The caller checks the peer (site, AE title) and records
   * who did it in the audit trail.
   */
  async add(peer: PeerConfig, by: string, now = new Date()): Promise<void> {
    if (this.file.has(peer.aeTitle)) throw new PeerExists(`peer ${peer.aeTitle} is already configured (in the configuration file)`);
    const r = await this.sql.run(
      'INSERT INTO dicom_peers (ae_title, site, peer_json, added_by, added_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (ae_title) DO NOTHING',
      [peer.aeTitle, peer.site, JSON.stringify(peer), by, now.toISOString()]);
    if (r.changes === 0) throw new PeerExists(`peer ${peer.aeTitle} is already configured`);
    this.changes++;
    this.added.set(peer.aeTitle, peer);
  }

  /**
   * Changes a peer added through the API (address, site, what it may do), for every node (at
   * once on this one, within refreshMs on the others); false when there is no such row. The
   * caller checks the peer and records the change in the audit trail.
   */
  async update(peer: PeerConfig): Promise<boolean> {
    const r = await this.sql.run('UPDATE dicom_peers SET site = ?, peer_json = ? WHERE ae_title = ?', [peer.site, JSON.stringify(peer), peer.aeTitle]);
    if (r.changes === 0) return false;
    this.changes++;
    this.added.set(peer.aeTitle, peer);
    return true;
  }

  /** Removes a peer added through the API, for every node (within refreshMs on the others); false when there was none. */
  async remove(aeTitle: string): Promise<boolean> {
    const r = await this.sql.run('DELETE FROM dicom_peers WHERE ae_title = ?', [aeTitle]);
    this.changes++;
    this.added.delete(aeTitle);
    return r.changes > 0;
  }

  private stale(): boolean {
    return Date.now() - this.loadedAt > this.refreshMs;
  }
}

export class PeerExists extends Error {}
