import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
// @ts-expect-error: a plain .mjs module of the entry point, without type declarations
import { isSupportedNode, supportedNodeRange } from '../bin/node-version.mjs';

describe('the Node.js versions checked at start', () => {
  it('takes 20.19 and later 20s, 22.12 and later, and refuses older ones (the portal build needs them; zlib.crc32 came with 20.15 and 22.2)', () => {
    for (const v of ['20.19.0', 'v20.20.2', '22.12.0', '24.1.0']) assert.equal(isSupportedNode(v), true, v);
    for (const v of ['18.20.0', '20.14.0', '20.18.3', '21.7.3', '22.1.0', '22.11.0']) assert.equal(isSupportedNode(v), false, v);
  });

  it('states the same range as package.json engines', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { engines: { node: string } };
    assert.equal(pkg.engines.node, supportedNodeRange);
  });
});
