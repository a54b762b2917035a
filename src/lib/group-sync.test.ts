import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { GroupSync } from './group-sync.ts';

describe('GroupSync', () => {
  it('lets callers that arrive during a sync share the next one, and never answers before a sync that started after the call', async () => {
    const started: number[] = [];
    let writes = 0;
    let release: (() => void) | undefined;
    const group = new GroupSync(() => {
      started.push(writes);
      return new Promise<void>((resolve) => (release = resolve));
    });
    writes = 1;
    const first = group.afterWrite();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(started, [1]);
    // Three writes while the first sync runs: none may be answered by it.
    writes = 4;
    let answered = 0;
    const later = [group.afterWrite(), group.afterWrite(), group.afterWrite()].map((p) => p.then(() => answered++));
    release!();
    await first;
    await new Promise((r) => setImmediate(r));
    assert.equal(answered, 0, 'the sync that was running when they wrote does not cover them');
    assert.deepEqual(started, [1, 4], 'one more sync for the three of them');
    release!();
    await Promise.all(later);
    assert.equal(answered, 3);
    assert.deepEqual(started, [1, 4]);
  });

  it('rejects the callers of a failed sync, and syncs again for the next caller', async () => {
    let fail = true;
    const group = new GroupSync(async () => {
      if (fail) throw new Error('EIO');
    });
    await assert.rejects(group.afterWrite(), /EIO/);
    fail = false;
    await group.afterWrite();
  });
});
