/**
 * The Pro Santé Connect access token of a session opened by an OpenID Connect login, kept on
 * the server for the calls Atrium makes on the professional's behalf (the DRIMbox consumer
 * fetching images from another territory's source). It never goes to the browser: the
 * browser holds only its session cookie. At rest it is sealed (AES-256-GCM) with a key that
 * every node derives from the OpenID Connect client secret, bound to its session's digest, so
 * that a copy of the index opens nothing and a sealed token moved to another session does not
 * open. It goes with the session: ended at logout, purged once expired.
 *
 * This module owns the `session_access_tokens` table (its own migrations).
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';
import { applyMigrations, type Migration } from '../index/migrations.ts';
import type { SqlDatabase } from '../index/sql.ts';

const migrations: readonly Migration[] = [{
  version: 1,
  name: 'the sealed access token of a session opened by Pro Santé Connect',
  sql: `
CREATE TABLE session_access_tokens (
  session_sha256 {text} PRIMARY KEY,
  sealed TEXT NOT NULL,
  expires_at {text} NOT NULL
);
CREATE INDEX session_access_tokens_expiry ON session_access_tokens (expires_at);
`,
}];

const migrated = new WeakMap<SqlDatabase, Promise<unknown>>();

function migrate(sql: SqlDatabase): Promise<unknown> {
  let done = migrated.get(sql);
  if (!done) {
    done = applyMigrations(sql, migrations, 'session_token_migrations');
    done.catch(() => migrated.delete(sql));
    migrated.set(sql, done);
  }
  return done;
}

const digestOf = (cookieValue: string) => createHash('sha256').update(cookieValue).digest('hex');

export class SessionAccessTokens {
  private readonly key: Buffer;

  constructor(private readonly sql: SqlDatabase, secret: string) {
    this.key = Buffer.from(hkdfSync('sha256', secret, 'atrium', 'session access token', 32));
  }

  /** Keeps the token of the session the cookie opens, until `expiresAt` (the token's own end). */
  async keep(cookieValue: string, token: string, expiresAt: Date, now = new Date()): Promise<void> {
    await migrate(this.sql);
    const session = digestOf(cookieValue);
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    cipher.setAAD(Buffer.from(session));
    const sealed = Buffer.concat([iv, cipher.update(token, 'utf8'), cipher.final(), cipher.getAuthTag()]).toString('base64');
    await this.sql.run('DELETE FROM session_access_tokens WHERE expires_at < ?', [now.toISOString()]);
    await this.sql.run(
      `INSERT INTO session_access_tokens (session_sha256, sealed, expires_at) VALUES (?, ?, ?)
       ON CONFLICT (session_sha256) DO UPDATE SET sealed = excluded.sealed, expires_at = excluded.expires_at`,
      [session, sealed, expiresAt.toISOString()]);
  }

  /** The session's token while it lasts; undefined when there is none, it expired, or it does not open. */
  async tokenOf(cookieValue: string, now = new Date()): Promise<string | undefined> {
    await migrate(this.sql);
    const session = digestOf(cookieValue);
    const row = await this.sql.get<{ sealed: string; expires_at: string }>('SELECT sealed, expires_at FROM session_access_tokens WHERE session_sha256 = ?', [session]);
    if (!row || Date.parse(row.expires_at) <= now.getTime()) return undefined;
    const bytes = Buffer.from(row.sealed, 'base64');
    if (bytes.length < 29) return undefined;
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, bytes.subarray(0, 12));
      decipher.setAAD(Buffer.from(session));
      decipher.setAuthTag(bytes.subarray(bytes.length - 16));
      return Buffer.concat([decipher.update(bytes.subarray(12, bytes.length - 16)), decipher.final()]).toString('utf8');
    } catch {
      return undefined;
    }
  }

  /** Forgets the session's token (logout). */
  async forget(cookieValue: string): Promise<void> {
    await migrate(this.sql);
    await this.sql.run('DELETE FROM session_access_tokens WHERE session_sha256 = ?', [digestOf(cookieValue)]);
  }
}
