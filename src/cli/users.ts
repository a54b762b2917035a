import { userInfo } from 'node:os';
import type { Archive } from '../archive/archive.ts';
import { AuditTrail } from '../access/audit.ts';
import { isRole, type Role } from '../access/principal.ts';
import { UserDirectory, UserError, type NewUser, type User } from '../access/users.ts';

/** Who ran an administration command, for the audit trail. */
export interface Administrator {
  actor: string;
  via: 'cli' | 'api';
}

/** The operator at this terminal. */
export function cliAdministrator(): Administrator {
  return { actor: `cli:${userInfo().username}`, via: 'cli' };
}

/** Provisions a user (a professional to be matched by RPPS at their first Pro Santé Connect login, or a local account), recorded as user-admin. */
export async function addUser(archive: Archive, user: NewUser, by: Administrator): Promise<User> {
  const directory = new UserDirectory(archive.index.sql, archive.sites, archive.siteById);
  const created = await directory.createUser(user);
  await new AuditTrail(archive.index.sql).record({
    action: 'user-admin', outcome: 'success', actor: by.actor, actorKind: 'system', via: by.via,
    details: {
      operation: 'add', login: created.login, roles: created.roles, sites: user.sites,
      ...(created.rpps !== undefined ? { rpps: created.rpps } : {}), localPassword: created.hasPassword,
    },
  });
  return created;
}

/** What an administrator sees of a user: never the password hash. */
export function userSummary(archive: Archive, u: User) {
  return {
    login: u.login, name: u.displayName, roles: u.roles,
    sites: u.siteIds.map((id) => archive.siteById.get(id)?.code ?? String(id)),
    ...(u.rpps !== undefined ? { rpps: u.rpps } : {}),
    oidcBound: u.subject !== undefined, localPassword: u.hasPassword,
    ...(u.lockedUntil !== undefined ? { lockedUntil: u.lockedUntil } : {}),
    ...(u.disabledAt !== undefined ? { disabledAt: u.disabledAt } : {}),
  };
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  // One trailing newline is the terminal's, not the password's.
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/** `atrium user add|list`. */
export async function runUserCommand(archive: Archive, positionals: string[], values: {
  name?: string; role?: string[]; site?: string[]; rpps?: string; 'password-stdin'?: boolean; patient?: string;
}): Promise<number> {
  const sub = positionals[0];
  if (sub === 'list') {
    const directory = new UserDirectory(archive.index.sql, archive.sites, archive.siteById);
    const users = await directory.listUsers();
    process.stdout.write(JSON.stringify({ users: users.map((u) => userSummary(archive, u)) }, null, 2) + '\n');
    return 0;
  }
  if (sub === 'add' && positionals[1]) {
    if (!values.name) throw new UserError('--name "Display Name" is required');
    const roles = values.role ?? [];
    for (const r of roles) if (!isRole(r)) throw new UserError(`--role ${r} is not a role`);
    // A patient account names its record as SITE:PatientID (the site's own issuer) or SITE:PatientID:ISSUER.
    let patientId: number | undefined;
    if (values.patient !== undefined) {
      const [code, PatientID, issuer] = values.patient.split(':');
      const site = code ? archive.sites.get(code) : undefined;
      if (!site || !PatientID) throw new UserError('--patient takes SITE:PatientID[:IssuerOfPatientID]');
      patientId = await archive.index.patientRecordId(site.id, issuer ?? site.issuerOfPatientID, PatientID);
      if (patientId === undefined) throw new UserError(`patient ${PatientID} of ${code} is not in the archive`);
    }
    const user = await addUser(archive, {
      login: positionals[1], displayName: values.name, roles: roles as Role[], sites: values.site ?? [],
      ...(patientId !== undefined ? { patientId } : {}),
      ...(values.rpps !== undefined ? { rpps: values.rpps } : {}),
      ...(values['password-stdin'] ? { password: await readStdin() } : {}),
    }, cliAdministrator());
    process.stdout.write(JSON.stringify(userSummary(archive, user), null, 2) + '\n');
    return 0;
  }
  throw new UserError('atrium user add <login> --name "..." --role ROLE [--role ROLE] --site CODE [--rpps N] [--patient SITE:PatientID] [--password-stdin] | atrium user list');
}
