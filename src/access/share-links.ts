/**
 * Share links replace the CD: a link to one exam or to a patient's exams, for a patient or
 * a professional outside the care relationship, expiring and revocable, optionally behind a
 * PIN. The link's secret is 32 random bytes; only its SHA-256 is stored. Five wrong PINs
 * (over the link's life) lock it for good (whoever shared it makes a new one): the lock lives in the index,
 * so that no number of Atrium nodes multiplies the attempts.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { SqlDatabase } from '../index/sql.ts';
import { appendEvent } from '../events/outbox.ts';
import { hashPassword, verifyPasswordHash } from './users.ts';

export const MAX_PIN_FAILURES = 5;
/** A link lives at most this long (a CD does not expire, but a link must). */
export const MAX_SHARE_LINK_DAYS = 90;

export type ShareLinkRefusal = 'unknown' | 'expired' | 'revoked' | 'locked' | 'pin-required' | 'wrong-pin';

export class ShareLinkError extends Error {
  constructor(readonly code: ShareLinkRefusal | 'invalid' | 'not-found', message: string, readonly linkId?: number) {
    super(message);
  }
}

export interface ShareLink {
  id: number;
  StudyInstanceUID?: string;
  patientId?: number;
  hasPin: boolean;
  createdBy: string;
  createdAt: string;
  expiresAt: string;
  revokedAt?: string;
  lockedAt?: string;
}

interface Row {
  id: number; token_sha256: string; pin_hash: string | null; study_instance_uid: string | null; patient_id: number | null;
  created_by: string; created_at: string; expires_at: string; revoked_at: string | null; revoked_by: string | null;
  failed_pins: number; locked_at: string | null;
}

function linkOf(r: Row): ShareLink {
  return {
    id: Number(r.id), hasPin: r.pin_hash !== null, createdBy: r.created_by, createdAt: r.created_at, expiresAt: r.expires_at,
    ...(r.study_instance_uid !== null ? { StudyInstanceUID: r.study_instance_uid } : {}),
    ...(r.patient_id !== null ? { patientId: Number(r.patient_id) } : {}),
    ...(r.revoked_at !== null ? { revokedAt: r.revoked_at } : {}),
    ...(r.locked_at !== null ? { lockedAt: r.locked_at } : {}),
  };
}

const tokenDigest = (token: string) => createHash('sha256').update(token).digest('hex');
/** What a link opens, as its events name it (identifiers only). */
const target = (r: Row) => (r.study_instance_uid !== null ? { StudyInstanceUID: r.study_instance_uid } : { patientId: Number(r.patient_id) });
export class ShareLinks {
  constructor(private readonly sql: SqlDatabase) {}

  /**
   * Creates a link; the token is returned once and never stored. `patientIds`: for a patient,
   * the records it opens (AccessPolicy.recordsToShare), the named one first.
   */
  async create(l: { StudyInstanceUID?: string; patientId?: number; patientIds?: number[]; createdBy: string; expiresAt: Date; pin?: string }): Promise<{ link: ShareLink; token: string }> {
    if ((l.StudyInstanceUID === undefined) === (l.patientId === undefined)) throw new ShareLinkError('invalid', 'a link shares either one study or one patient\'s exams');
    if (l.patientIds !== undefined && l.patientIds[0] !== l.patientId) throw new ShareLinkError('invalid', 'the records a link opens start with the one it names');
    if (l.pin !== undefined && !/^[0-9]{4,8}$/.test(l.pin)) throw new ShareLinkError('invalid', 'a PIN is 4 to 8 digits');
    const now = Date.now();
    if (l.expiresAt.getTime() <= now) throw new ShareLinkError('invalid', 'the link would already be expired');
    if (l.expiresAt.getTime() > now + MAX_SHARE_LINK_DAYS * 86_400_000) throw new ShareLinkError('invalid', `a link lives at most ${MAX_SHARE_LINK_DAYS} days`);
    const token = randomBytes(32).toString('base64url');
    const pinHash = l.pin === undefined ? null : await hashPassword(l.pin);
    const at = new Date(now).toISOString();
    const row = await this.sql.transaction(async (tx) => {
      const inserted = await tx.get<Row>(
        `INSERT INTO share_links (token_sha256, pin_hash, study_instance_uid, patient_id, patient_ids, created_by, created_at, expires_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
        [tokenDigest(token), pinHash, l.StudyInstanceUID ?? null, l.patientId ?? null,
          l.patientIds === undefined ? null : JSON.stringify(l.patientIds), l.createdBy, at, l.expiresAt.toISOString()],
      );
      // An exam shared, for metering (src/billing/metering.ts).
      await appendEvent(tx, 'share.created', { linkId: Number(inserted!.id), ...target(inserted!) }, at);
      return inserted!;
    });
    return { link: linkOf(row), token };
  }

  /**
   * The link a token opens, checked: known, not revoked, not expired, not locked, and the
   * PIN when it has one. Each PIN attempt takes one of the link's five before the PIN is
   * compared, in one statement (an UPDATE that only succeeds below the limit), so that no
   * number of parallel guesses, nor of Atrium nodes, gets more than five compared. A right
   * PIN gives its own attempt back; the wrong ones stay counted, and the fifth locks the link.
   */
  async open(token: string, pin: string | undefined, now = new Date()): Promise<ShareLink> {
    const row = await this.sql.get<Row>('SELECT * FROM share_links WHERE token_sha256 = ?', [tokenDigest(token)]);
    if (!row) throw new ShareLinkError('unknown', 'this link is not valid');
    const id = Number(row.id);
    if (row.revoked_at !== null) throw new ShareLinkError('revoked', 'this link was revoked', id);
    if (row.expires_at <= now.toISOString()) throw new ShareLinkError('expired', 'this link has expired', id);
    if (row.locked_at !== null) throw new ShareLinkError('locked', 'this link is locked after too many wrong PINs: ask for a new one', id);
    if (row.pin_hash !== null) {
      if (pin === undefined || pin === '') throw new ShareLinkError('pin-required', 'this link needs its PIN', id);
      const taken = await this.sql.get<{ failed_pins: number }>(
        'UPDATE share_links SET failed_pins = failed_pins + 1 WHERE id = ? AND failed_pins < ? AND locked_at IS NULL RETURNING failed_pins',
        [id, MAX_PIN_FAILURES],
      );
      if (!taken) throw new ShareLinkError('locked', 'this link is locked after too many PIN attempts: ask for a new one', id);
      if (!(await verifyPasswordHash(pin, row.pin_hash))) {
        // The attempt stays counted; the link locks once five are spent.
        const counted = await this.sql.get<{ failed_pins: number; locked_at: string | null }>(
          `UPDATE share_links SET locked_at = CASE WHEN locked_at IS NULL AND failed_pins >= ? THEN ? ELSE locked_at END
           WHERE id = ? RETURNING failed_pins, locked_at`,
          [MAX_PIN_FAILURES, now.toISOString(), id],
        );
        const left = MAX_PIN_FAILURES - Number(counted?.failed_pins ?? MAX_PIN_FAILURES);
        if (left <= 0 || (counted?.locked_at ?? null) !== null) throw new ShareLinkError('locked', 'wrong PIN: this link is now locked, ask for a new one', id);
        throw new ShareLinkError('wrong-pin', `wrong PIN (${left} attempt${left > 1 ? 's' : ''} left)`, id);
      }
      await this.sql.run('UPDATE share_links SET failed_pins = failed_pins - 1 WHERE id = ? AND failed_pins > 0', [id]);
    }
    // A share link opened, for metering (src/billing/metering.ts).
    await appendEvent(this.sql, 'share.opened', { linkId: id, ...target(row) }, now.toISOString());
    return linkOf(row);
  }

  /** Still usable: a session opened on a link ends when the link is revoked or expires. */
  async isLive(id: number, now = new Date()): Promise<boolean> {
    const row = await this.sql.get<{ id: number }>(
      'SELECT id FROM share_links WHERE id = ? AND revoked_at IS NULL AND locked_at IS NULL AND expires_at > ?', [id, now.toISOString()],
    );
    return row !== undefined;
  }

  async get(id: number): Promise<ShareLink | undefined> {
    const row = await this.sql.get<Row>('SELECT * FROM share_links WHERE id = ?', [id]);
    return row && linkOf(row);
  }

  async revoke(id: number, by: string): Promise<ShareLink> {
    const row = await this.sql.get<Row>('UPDATE share_links SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL RETURNING *', [new Date().toISOString(), by, id]);
    if (!row) throw new ShareLinkError('not-found', `share link ${id} does not exist or is already revoked`);
    return linkOf(row);
  }

  async createdBy(creator: string): Promise<ShareLink[]> {
    return (await this.sql.all<Row>('SELECT * FROM share_links WHERE created_by = ? ORDER BY id DESC', [creator])).map(linkOf);
  }
}
