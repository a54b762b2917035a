import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PollingLoop } from './polling-loop.ts';

describe('PollingLoop', () => {
  it('runs one pass at a time, goes on after a failed pass, and stop() waits for the pass under way', async () => {
    let passes = 0;
    let inPass = 0;
    let overlapped = false;
    let finishedLast = false;
    const errors: unknown[] = [];
    const loop = new PollingLoop(async () => {
      passes++;
      inPass++;
      if (inPass > 1) overlapped = true;
      await new Promise((r) => setTimeout(r, 15));
      inPass--;
      if (passes === 2) throw new Error('a failed pass');
      finishedLast = true;
    }, 1, (e) => errors.push(e));
    loop.start();
    // Stopped while a pass is under way (seen synchronously just before stop()).
    while (passes < 4 || inPass !== 1) await new Promise((r) => setTimeout(r, 1));
    finishedLast = false;
    await loop.stop();
    const after = passes;
    assert.equal(finishedLast, true, 'the pass under way finished before stop() returned');
    assert.equal(overlapped, false);
    assert.equal(errors.length, 1);
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(passes, after, 'no pass after stop()');
  });
});
