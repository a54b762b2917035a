import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Archive } from '../archive/archive.ts';
import { UserDirectory, UserError } from '../access/users.ts';
import { addUser } from './users.ts';

/** The login of the administrator made at first start (not "admin": deployments script that one). */
export const firstAdministratorLogin = 'administrator';

/** Where the password goes when no terminal reads stderr (a service, a pipe), in the data folder. */
export const firstAdministratorPasswordFile = 'administrator-password';

/**
 * On a platform without any user, makes a territory administrator with a local account, so
 * that a newcomer can log in to the portal right after `npm start`. Its generated password is
 * never given to the logger (whose lines go to files and collectors): it is written once to the
 * terminal when stderr is one, else (a service whose stderr is a journal, a pipe) to a file of
 * the data folder (0600), as the API token is; the log says which.
 */
export async function ensureFirstAdministrator(archive: Archive, dataDir: string, logger: Logger, terminal: ((text: string) => void) | undefined): Promise<void> {
  if ((await new UserDirectory(archive.index.sql, archive.sites, archive.siteById).userCount()) > 0) return;
  // 18 random bytes: 24 characters of base64url, well past the 12 a password needs.
  const password = randomBytes(18).toString('base64url');
  try {
    await addUser(archive, {
      login: firstAdministratorLogin, displayName: 'Administrator', roles: ['territory-admin'],
      sites: [...archive.sites.keys()], password,
    }, { actor: 'system:first-start', via: 'cli' });
  } catch (e) {
    // Another node of the same database made it first (its insert won the unique login; this
    // one's failed, as a UserError or the database's constraint): that node gave the password.
    const directory = new UserDirectory(archive.index.sql, archive.sites, archive.siteById);
    if (e instanceof UserError || (await directory.findByLogin(firstAdministratorLogin)) !== undefined) return;
    throw e;
  }
  if (terminal) {
    terminal([
      '',
      `  First start: Atrium made the administrator "${firstAdministratorLogin}" (territory-admin, local account).`,
      `  Its password, shown this once: ${password}`,
      '  Log in to the portal with it, then add users with `atrium user add` (docs/usage.md).',
      '',
      '',
    ].join('\n'));
    logger.info({ login: firstAdministratorLogin }, 'no user existed: made the first administrator; its password was written once to the terminal (stderr), never to the log');
    return;
  }
  const file = path.join(dataDir, firstAdministratorPasswordFile);
  writeFileSync(file, password + '\n', { mode: 0o600 });
  logger.info({ login: firstAdministratorLogin, passwordFile: file }, 'no user existed: made the first administrator; its password is in the password file (read it, then delete it)');
}
