/**
 * The people who use Atrium: professionals (provisioned by an administrator, matched to their
 * Pro Santé Connect identity by RPPS) and patients. Never created by a login: an unknown
 * professional is refused, not enrolled.
 */
import { randomBytes, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import type { SqlDatabase } from '../index/sql.ts';
import type { Site } from '../index/records.ts';
import { isRole, type AuthenticatedBy, type Principal, type Role } from './principal.ts';

export interface User {
  id: number;
  login: string;
  displayName: string;
  roles: Role[];
  /** Index ids of the sites the user belongs to. */
  siteIds: number[];
  /** RPPS number (11 digits) of a professional. */
  rpps?: string;
  /** "<issuer>|<sub>" once the user logged in through OpenID Connect. */
  subject?: string;
  /** A patient user's own patient record (patients.id). */
  patientId?: number;
  hasPassword: boolean;
  failedLogins: number;
  lockedUntil?: string;
  disabledAt?: string;
  createdAt: string;
  updatedAt: string;
}

export interface NewUser {
  login: string;
  displayName: string;
  roles: Role[];
  /** Site codes. */
  sites: string[];
  rpps?: string;
  patientId?: number;
  /** A local account's password; professionals who log in with Pro Santé Connect have none. */
  password?: string;
}

export type UserChanges = Partial<Omit<NewUser, 'login'>> & { disabled?: boolean };

/** Why a login was refused; recorded in the audit trail and mapped to an HTTP status in one place. */
export type LoginFailure =
  | 'unknown-user' | 'bad-password' | 'locked' | 'disabled' | 'no-password'
  | 'bad-token' | 'expired-token' | 'wrong-audience' | 'wrong-issuer' | 'bad-state' | 'wrong-acr'
  | 'not-a-user' | 'provider-error' | 'rate-limited' | 'expired-session';

export class AuthenticationError extends Error {
  constructor(readonly reason: LoginFailure, message: string, readonly attempted?: string) {
    super(message);
    this.name = 'AuthenticationError';
  }
}

/** Stable codes of the refusals a user interface tells apart (the problem document's `code`; its `detail` stays the message). */
export type UserErrorCode = 'username-taken' | 'rpps-taken' | 'password-too-short' | 'password-too-long';

export class UserError extends Error {
  constructor(message: string, readonly code?: UserErrorCode) {
    super(message);
    this.name = 'UserError';
  }
}

/** Consecutive failed passwords that lock an account, and for how long. */
export const maxFailedLogins = 5;
export const lockoutMs = 15 * 60_000;

// scrypt N=2^15, r=8, p=1 needs 32 MiB (128·N·r), Node's default ceiling: raise it.
const scryptParams = { N: 2 ** 15, r: 8, p: 1 };
const scryptMaxmem = 64 * 1024 * 1024;
const keyLength = 32;

function scrypt(password: string, salt: Buffer, length: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scryptCallback(password.normalize('NFC'), salt, length, options, (e, key) => (e ? reject(e) : resolve(key)));
  });
}

/** "scrypt$N$r$p$<salt base64>$<key base64>": the parameters travel with the hash so they can be raised later. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, keyLength, { ...scryptParams, maxmem: scryptMaxmem });
  return ['scrypt', scryptParams.N, scryptParams.r, scryptParams.p, salt.toString('base64'), key.toString('base64')].join('$');
}

export async function verifyPasswordHash(password: string, encoded: string): Promise<boolean> {
  const parts = encoded.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  const salt = Buffer.from(parts[4]!, 'base64');
  const expected = Buffer.from(parts[5]!, 'base64');
  if (!Number.isSafeInteger(N) || !Number.isSafeInteger(r) || !Number.isSafeInteger(p) || expected.length === 0) return false;
  const key = await scrypt(password, salt, expected.length, { N, r, p, maxmem: Math.max(scryptMaxmem, 256 * N * r) });
  return timingSafeEqual(key, expected);
}

// Compared against when the login is unknown, so that an unknown login takes as long as a wrong password.
let decoy: Promise<string> | undefined;
const decoyHash = () => (decoy ??= hashPassword(randomBytes(16).toString('hex')));

export function isValidRpps(rpps: string): boolean {
  return /^\d{11}$/.test(rpps);
}

interface UserRow {
  id: number | string;
  login: string;
  display_name: string;
  rpps: string | null;
  subject: string | null;
  password_hash: string | null;
  roles: string;
  patient_id: number | string | null;
  failed_logins: number | string;
  locked_until: string | null;
  disabled_at: string | null;
  created_at: string;
  updated_at: string;
}

export class UserDirectory {
  constructor(
    private readonly sql: SqlDatabase,
    private readonly sites: ReadonlyMap<string, Site>,
    private readonly siteById: ReadonlyMap<number, Site>,
  ) {}

  async createUser(u: NewUser): Promise<User> {
    const login = u.login.trim();
    if (!/^[A-Za-z0-9._@-]{1,64}$/.test(login)) throw new UserError('a login is 1-64 letters, digits, ".", "_", "@" or "-"');
    const siteIds = this.siteIdsOf(u.sites);
    this.checkRoles(u.roles, siteIds, u.patientId);
    if (u.rpps !== undefined && !isValidRpps(u.rpps)) throw new UserError('an RPPS number is 11 digits');
    const passwordHash = u.password !== undefined ? await hashPassword(checkedPassword(u.password)) : null;
    const now = new Date().toISOString();
    const id = await this.sql.transaction(async (tx) => {
      if (await tx.get('SELECT id FROM users WHERE login = ?', [login])) throw new UserError(`login ${login} is taken`, 'username-taken');
      if (u.rpps !== undefined && (await tx.get('SELECT id FROM users WHERE rpps = ?', [u.rpps]))) throw new UserError(`RPPS ${u.rpps} already belongs to a user`, 'rpps-taken');
      const row = await tx.get<{ id: number | string }>(
        `INSERT INTO users (login, display_name, rpps, password_hash, roles, patient_id, failed_logins, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?) RETURNING id`,
        [login, u.displayName, u.rpps ?? null, passwordHash, JSON.stringify(u.roles), u.patientId ?? null, now, now],
      );
      const userId = Number(row!.id);
      for (const siteId of siteIds) await tx.run('INSERT INTO user_sites (user_id, site_id) VALUES (?, ?)', [userId, siteId]);
      return userId;
    });
    return (await this.findById(id))!;
  }

  async updateUser(login: string, changes: UserChanges): Promise<User> {
    const user = await this.findByLogin(login);
    if (!user) throw new UserError(`no user ${login}`);
    const siteIds = changes.sites !== undefined ? this.siteIdsOf(changes.sites) : user.siteIds;
    const roles = changes.roles ?? user.roles;
    const patientId = changes.patientId ?? user.patientId;
    this.checkRoles(roles, siteIds, patientId);
    if (changes.rpps !== undefined && !isValidRpps(changes.rpps)) throw new UserError('an RPPS number is 11 digits');
    const passwordHash = changes.password !== undefined ? await hashPassword(checkedPassword(changes.password)) : undefined;
    const now = new Date().toISOString();
    await this.sql.transaction(async (tx) => {
      await tx.run(
        `UPDATE users SET display_name = ?, roles = ?, rpps = ?, patient_id = ?, password_hash = COALESCE(?, password_hash),
           disabled_at = ?, updated_at = ? WHERE id = ?`,
        [changes.displayName ?? user.displayName, JSON.stringify(roles), changes.rpps ?? user.rpps ?? null, patientId ?? null,
          passwordHash ?? null, changes.disabled === undefined ? user.disabledAt ?? null : changes.disabled ? user.disabledAt ?? now : null,
          now, user.id],
      );
      if (changes.sites !== undefined) {
        await tx.run('DELETE FROM user_sites WHERE user_id = ?', [user.id]);
        for (const siteId of siteIds) await tx.run('INSERT INTO user_sites (user_id, site_id) VALUES (?, ?)', [user.id, siteId]);
      }
    });
    return (await this.findById(user.id))!;
  }

  async listUsers(): Promise<User[]> {
    const rows = await this.sql.all<UserRow>('SELECT * FROM users ORDER BY login');
    return Promise.all(rows.map((r) => this.userOf(r)));
  }

  /** How many users there are, disabled ones included. */
  async userCount(): Promise<number> {
    const row = await this.sql.get<{ n: number | string }>('SELECT COUNT(*) AS n FROM users');
    return Number(row?.n ?? 0);
  }

  findById(id: number): Promise<User | undefined> {
    return this.findOne('SELECT * FROM users WHERE id = ?', id);
  }

  findByLogin(login: string): Promise<User | undefined> {
    return this.findOne('SELECT * FROM users WHERE login = ?', login);
  }

  findBySubject(subject: string): Promise<User | undefined> {
    return this.findOne('SELECT * FROM users WHERE subject = ?', subject);
  }

  findByRpps(rpps: string): Promise<User | undefined> {
    return this.findOne('SELECT * FROM users WHERE rpps = ?', rpps);
  }

  /**
   * The user an OpenID Connect identity belongs to: the one already bound to its subject, else
   * the professional provisioned with its RPPS (the subject is then bound to them, once).
   */
  async userOfOidcIdentity(identity: { subject: string; rpps?: string }): Promise<User> {
    const bound = await this.findBySubject(identity.subject);
    if (bound) return bound;
    const provisioned = identity.rpps !== undefined ? await this.findByRpps(identity.rpps) : undefined;
    if (!provisioned) throw new AuthenticationError('not-a-user', 'not a user of this platform: ask an administrator to provision your account (RPPS)', identity.rpps ?? identity.subject);
    if (provisioned.subject !== undefined) {
      // The RPPS is bound to another identity at the provider: do not let a second one take it over.
      throw new AuthenticationError('not-a-user', 'this RPPS is already bound to another identity', provisioned.login);
    }
    const changes = await this.sql.run('UPDATE users SET subject = ?, updated_at = ? WHERE id = ? AND subject IS NULL', [identity.subject, new Date().toISOString(), provisioned.id]);
    if (changes.changes !== 1) throw new AuthenticationError('not-a-user', 'this RPPS is already bound to another identity', provisioned.login);
    return (await this.findById(provisioned.id))!;
  }

  /**
   * A local account's login: the password is checked unless the account is locked or disabled;
   * 5 consecutive failures lock it for 15 minutes, a success clears the count.
   */
  async authenticateLocal(login: string, password: string, now = new Date()): Promise<User> {
    const row = await this.sql.get<UserRow>('SELECT * FROM users WHERE login = ?', [login]);
    if (!row) {
      await verifyPasswordHash(password, await decoyHash());
      throw new AuthenticationError('unknown-user', 'unknown login or wrong password', login);
    }
    if (row.disabled_at !== null) throw new AuthenticationError('disabled', 'this account is disabled', login);
    if (row.locked_until !== null && row.locked_until > now.toISOString()) {
      throw new AuthenticationError('locked', `this account is locked after ${maxFailedLogins} failed logins until ${row.locked_until}`, login);
    }
    if (row.password_hash === null) {
      await verifyPasswordHash(password, await decoyHash());
      throw new AuthenticationError('no-password', 'this account logs in with Pro Santé Connect, not a password', login);
    }
    if (await verifyPasswordHash(password, row.password_hash)) {
      await this.sql.run('UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?', [row.id]);
      return this.userOf({ ...row, failed_logins: 0, locked_until: null });
    }
    // An expired lock starts a new count; the increment is one statement, so concurrent guesses all count.
    const expiredLock = row.locked_until !== null;
    const counted = await this.sql.get<{ failed_logins: number | string }>(
      `UPDATE users SET failed_logins = ${expiredLock ? '1' : 'failed_logins + 1'}, locked_until = NULL WHERE id = ? RETURNING failed_logins`,
      [row.id],
    );
    const failures = Number(counted!.failed_logins);
    if (failures >= maxFailedLogins) {
      const until = new Date(now.getTime() + lockoutMs).toISOString();
      await this.sql.run('UPDATE users SET locked_until = ? WHERE id = ?', [until, row.id]);
      throw new AuthenticationError('bad-password', `wrong password: this account is now locked until ${until}`, login);
    }
    throw new AuthenticationError('bad-password', 'unknown login or wrong password', login);
  }

  /** The caller a user becomes once authenticated. */
  principalOf(user: User, authenticatedBy: AuthenticatedBy): Principal {
    return {
      kind: 'user', id: user.login, name: user.displayName, roles: [...user.roles],
      sites: user.siteIds.map((id) => this.siteById.get(id)).filter((s): s is Site => s !== undefined),
      userId: user.id,
      ...(user.rpps !== undefined ? { rpps: user.rpps } : {}),
      ...(user.patientId !== undefined ? { patientId: user.patientId } : {}),
      authenticatedBy,
    };
  }

  private async findOne(sql: string, value: unknown): Promise<User | undefined> {
    const row = await this.sql.get<UserRow>(sql, [value]);
    return row ? this.userOf(row) : undefined;
  }

  private async userOf(r: UserRow): Promise<User> {
    const id = Number(r.id);
    const sites = await this.sql.all<{ site_id: number | string }>('SELECT site_id FROM user_sites WHERE user_id = ? ORDER BY site_id', [id]);
    const roles = (JSON.parse(r.roles) as string[]).filter(isRole);
    return {
      id, login: r.login, displayName: r.display_name, roles,
      siteIds: sites.map((s) => Number(s.site_id)),
      ...(r.rpps !== null ? { rpps: r.rpps } : {}),
      ...(r.subject !== null ? { subject: r.subject } : {}),
      ...(r.patient_id !== null ? { patientId: Number(r.patient_id) } : {}),
      hasPassword: r.password_hash !== null,
      failedLogins: Number(r.failed_logins),
      ...(r.locked_until !== null ? { lockedUntil: r.locked_until } : {}),
      ...(r.disabled_at !== null ? { disabledAt: r.disabled_at } : {}),
      createdAt: r.created_at, updatedAt: r.updated_at,
    };
  }

  private siteIdsOf(codes: string[]): number[] {
    return [...new Set(codes)].map((code) => {
      const site = this.sites.get(code);
      if (!site) throw new UserError(`${code} is not a configured site`);
      return site.id;
    });
  }

  private checkRoles(roles: Role[], siteIds: number[], patientId: number | undefined): void {
    if (roles.length === 0) throw new UserError('a user has at least one role');
    for (const r of roles) if (!isRole(r)) throw new UserError(`${String(r)} is not a role`);
    if (roles.includes('patient')) {
      if (roles.length > 1) throw new UserError('a patient account has no professional role');
      if (patientId === undefined) throw new UserError('a patient account names its patient record');
    } else if (siteIds.length === 0 && !roles.includes('territory-admin') && !roles.every((r) => r === 'referring-physician')) {
      // A referring physician in private practice belongs to no site of the territory: they see the exams they referred.
      throw new UserError('a professional belongs to at least one site');
    }
  }
}

function checkedPassword(password: string): string {
  if (password.length < 12) throw new UserError('a password has at least 12 characters', 'password-too-short');
  if (password.length > 1024) throw new UserError('a password has at most 1024 characters', 'password-too-long');
  return password;
}
