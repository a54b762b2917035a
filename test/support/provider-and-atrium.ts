import type { AtriumConfig } from '../../src/config/config.ts';
import { startAtrium, type RunningAtrium } from './atrium.ts';
import type { TestDatabase } from './databases.ts';
import { freePort } from './dcmtk.ts';
import { atriumOidcConfig, startIdentityProvider, type TestAccount, type TestIdentityProvider } from './oidc-provider.ts';

/**
 * Atrium on a port known in advance (the provider must know its callback) with the test
 * Pro Santé Connect beside it: what the login, role and portal tests stand on. Sessions
 * over plain HTTP (loopback), login attempts not limited.
 */
export async function startAtriumWithProvider(options: {
  engine: TestDatabase;
  accounts: TestAccount[];
  /** Resource indicators of JWT access tokens the provider issues (see startIdentityProvider). */
  resources?: Record<string, string>;
  configure?: (config: AtriumConfig, idp: TestIdentityProvider) => void;
}): Promise<{ atrium: RunningAtrium; idp: TestIdentityProvider; base: string; close: () => Promise<void> }> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const idp = await startIdentityProvider({ redirectUri: `${base}/auth/callback`, resources: options.resources ?? {}, accounts: options.accounts });
  const db = await options.engine.open();
  const atrium = await startAtrium({
    index: db.config,
    configure: (c) => {
      c.http.port = port;
      c.auth.oidc = atriumOidcConfig(idp, base);
      options.configure?.(c, idp);
    },
  });
  return {
    atrium, idp, base,
    async close() {
      await atrium.close();
      await idp.close();
      await db.cleanup();
    },
  };
}
