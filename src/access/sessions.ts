/**
 * Server-side sessions of the portal. Atrium nodes hold no state, so a session lives in the
 * index: any node answers any request. The browser holds a random secret; the index holds
 * only its SHA-256, so a copy of the database opens no session.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { SqlDatabase } from '../index/sql.ts';

export interface Session {
  /** SHA-256 (hex) of the cookie value. */
  idSha256: string;
  userId?: number;
  shareLinkId?: number;
  /** Sent back in X-CSRF-Token on every state-changing request of this session. */
  csrfToken: string;
  source?: string;
  createdAt: string;
  lastSeenAt: string;
  /** The absolute end of the session (its lifetime from login). */
  expiresAt: string;
}

export type SessionOwner = { userId: number } | { shareLinkId: number };

export interface SessionPolicy {
  /** A session unused this long ends. */
  idleMs: number;
  /** A session ends this long after it began, however used. */
  absoluteMs: number;
}

interface SessionRow {
  id_sha256: string;
  user_id: number | string | null;
  share_link_id: number | string | null;
  csrf_token: string;
  source: string | null;
  created_at: string;
  last_seen_at: string;
  expires_at: string;
  revoked_at: string | null;
}

function digestOf(cookieValue: string): string {
  return createHash('sha256').update(cookieValue).digest('hex');
}

export class SessionStore {
  constructor(private readonly sql: SqlDatabase, private readonly policy: SessionPolicy) {}

  /** A new session; the returned cookie value is never stored. */
  async createSession(owner: SessionOwner, source?: string, now = new Date(), idToken?: string): Promise<{ cookieValue: string; session: Session }> {
    const cookieValue = randomBytes(32).toString('base64url');
    const session: Session = {
      idSha256: digestOf(cookieValue),
      ...('userId' in owner ? { userId: owner.userId } : { shareLinkId: owner.shareLinkId }),
      csrfToken: randomBytes(32).toString('base64url'),
      ...(source !== undefined ? { source } : {}),
      createdAt: now.toISOString(),
      lastSeenAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + this.policy.absoluteMs).toISOString(),
    };
    await this.sql.run(
      `INSERT INTO sessions (id_sha256, user_id, share_link_id, csrf_token, source, created_at, last_seen_at, expires_at, id_token)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [session.idSha256, session.userId ?? null, session.shareLinkId ?? null, session.csrfToken, source ?? null,
        session.createdAt, session.lastSeenAt, session.expiresAt, idToken ?? null],
    );
    return { cookieValue, session };
  }

  /**
   * The live session a cookie opens, or undefined (unknown, revoked, idle too long, past its
   * lifetime). Its last use is recorded, at most once per minute of the idle timeout's quarter,
   * so that reading a session is not a write on every request.
   */
  async sessionOf(cookieValue: string, now = new Date()): Promise<Session | undefined> {
    if (!/^[A-Za-z0-9_-]{43}$/.test(cookieValue)) return undefined;
    const row = await this.sql.get<SessionRow>('SELECT * FROM sessions WHERE id_sha256 = ?', [digestOf(cookieValue)]);
    if (!row || row.revoked_at !== null) return undefined;
    const at = now.getTime();
    if (at >= Date.parse(row.expires_at)) return undefined;
    const lastSeen = Date.parse(row.last_seen_at);
    if (at - lastSeen >= this.policy.idleMs) return undefined;
    let lastSeenAt = row.last_seen_at;
    if (at - lastSeen >= Math.min(60_000, this.policy.idleMs / 4)) {
      lastSeenAt = now.toISOString();
      await this.sql.run('UPDATE sessions SET last_seen_at = ? WHERE id_sha256 = ? AND last_seen_at < ?', [lastSeenAt, row.id_sha256, lastSeenAt]);
    }
    return {
      idSha256: row.id_sha256,
      ...(row.user_id !== null ? { userId: Number(row.user_id) } : {}),
      ...(row.share_link_id !== null ? { shareLinkId: Number(row.share_link_id) } : {}),
      csrfToken: row.csrf_token,
      ...(row.source !== null ? { source: row.source } : {}),
      createdAt: row.created_at, lastSeenAt, expiresAt: row.expires_at,
    };
  }

  /** Ends a session (logout); true when a live session was ended. */
  async revokeSession(cookieValue: string, now = new Date()): Promise<boolean> {
    const r = await this.sql.run('UPDATE sessions SET revoked_at = ?, id_token = NULL WHERE id_sha256 = ? AND revoked_at IS NULL', [now.toISOString(), digestOf(cookieValue)]);
    return r.changes > 0;
  }

  /** The ID token of the OpenID Connect login that opened the session, if it was one. */
  async idTokenOf(cookieValue: string): Promise<string | undefined> {
    const row = await this.sql.get<{ id_token: string | null }>('SELECT id_token FROM sessions WHERE id_sha256 = ?', [digestOf(cookieValue)]);
    return row?.id_token ?? undefined;
  }

  /** Ends every session of a user (account disabled, password changed). */
  async revokeSessionsOfUser(userId: number, now = new Date()): Promise<number> {
    const r = await this.sql.run('UPDATE sessions SET revoked_at = ?, id_token = NULL WHERE user_id = ? AND revoked_at IS NULL', [now.toISOString(), userId]);
    return r.changes;
  }

  /** Removes sessions ended more than a day ago (they are not audit records: logins and logouts are). */
  async purgeEndedSessions(now = new Date()): Promise<number> {
    const before = new Date(now.getTime() - 86_400_000).toISOString();
    const idleBefore = new Date(now.getTime() - this.policy.idleMs - 86_400_000).toISOString();
    const r = await this.sql.run(
      'DELETE FROM sessions WHERE expires_at < ? OR revoked_at < ? OR last_seen_at < ?',
      [before, before, idleBefore],
    );
    return r.changes;
  }
}
