import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { openSqlDatabase, type SqlDatabase } from '../index/sql.ts';
import type { PeerConfig } from './config.ts';
import { PeerDirectory } from './peer-directory.ts';

/** The index, with reads of the whole peers table held until the test lets them go. */
function withHeldListReads(sql: SqlDatabase) {
  const held: (() => void)[] = [];
  const db = new Proxy(sql, {
    get(target, name, receiver) {
      if (name === 'all') {
        return async <T>(text: string, params?: readonly unknown[]) => {
          const rows = await target.all<T>(text, params);
          if (/FROM dicom_peers$/.test(text.trim())) await new Promise<void>((resolve) => held.push(resolve));
          return rows;
        };
      }
      const value = Reflect.get(target, name, receiver) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { db, release: () => held.splice(0).forEach((r) => r()), heldCount: () => held.length };
}

const peer = (aeTitle: string): PeerConfig => ({ aeTitle, site: 'CHU-NORD', host: '10.0.0.1', port: 104, may: { store: true, query: false, retrieve: false } } as unknown as PeerConfig);

describe('PeerDirectory', () => {
  it('does not bring back a peer removed while a read of the table begun before was under way (nor forget one added)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'atrium-peers-'));
    const sql = await openSqlDatabase({ engine: 'sqlite', path: join(dir, 'index.db') } as Parameters<typeof openSqlDatabase>[0]);
    try {
      const { db, release, heldCount } = withHeldListReads(sql);
      const opening = PeerDirectory.open(db, [], { refreshMs: 0 });
      while (heldCount() === 0) await new Promise((r) => setImmediate(r));
      release();
      const peers = await opening;
      await peers.add(peer('CT_OLD'), 'admin');

      // A refresh reads the table (CT_OLD in it) and is held; meanwhile CT_OLD is removed and CT_NEW added.
      const refreshing = peers.refresh();
      while (heldCount() === 0) await new Promise((r) => setImmediate(r));
      assert.equal(await peers.remove('CT_OLD'), true);
      await peers.add(peer('CT_NEW'), 'admin');
      // The stale read is redone; let every read through until the refresh ends.
      const releasing = setInterval(release, 1);
      try {
        await refreshing;
      } finally {
        clearInterval(releasing);
      }
      assert.equal(peers.get('CT_OLD'), undefined, 'the removed peer is not known again');
      assert.equal(peers.get('CT_NEW')?.aeTitle, 'CT_NEW', 'the added peer is kept');
    } finally {
      await sql.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
