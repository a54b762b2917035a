import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ResearchKeyError, ResearchKeys, researchKeyFile } from './keys.ts';

describe('the research mapping key', () => {
  it('is made on first use, readable by its owner only, and read back the same', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'atrium-research-key-'));
    const file = researchKeyFile(dir, {});
    assert.equal(file, path.join(dir, 'secrets', 'research-mapping.key'));
    const first = await ResearchKeys.open(file);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const sealed = first.seal({ PatientID: 'P-1' }, 'ctx');
    const again = await ResearchKeys.open(file);
    assert.deepEqual(again.open(sealed, 'ctx'), { PatientID: 'P-1' });
    assert.equal(researchKeyFile(dir, { ATRIUM_RESEARCH_KEY_FILE: '/elsewhere/key' }), '/elsewhere/key');
  });

  it('seals with AES-GCM: no clear text, a fresh nonce each time, and nothing opens with another context, another key or a changed byte', async () => {
    const keys = ResearchKeys.fromKey(Buffer.alloc(32, 7));
    const a = keys.seal('Dupont^Jean', 'research-subject:1:RP1-A');
    const b = keys.seal('Dupont^Jean', 'research-subject:1:RP1-A');
    assert.notEqual(a, b);
    assert.doesNotMatch(a, /Dupont/);
    assert.equal(keys.open(a, 'research-subject:1:RP1-A'), 'Dupont^Jean');
    assert.throws(() => keys.open(a, 'research-subject:1:RP1-B'), ResearchKeyError);
    assert.throws(() => ResearchKeys.fromKey(Buffer.alloc(32, 8)).open(a, 'research-subject:1:RP1-A'), ResearchKeyError);
    const parts = a.split('.');
    const body = Buffer.from(parts[3]!, 'base64url');
    body[0] ^= 1;
    assert.throws(() => keys.open([...parts.slice(0, 3), body.toString('base64url')].join('.'), 'research-subject:1:RP1-A'), ResearchKeyError);
    assert.throws(() => keys.open('v2.x.y.z', 'ctx'), ResearchKeyError);
    // Digests: the same for the same input, different per label.
    assert.deepEqual(keys.digest('uid:1', '1.2.3'), keys.digest('uid:1', '1.2.3'));
    assert.notDeepEqual(keys.digest('uid:1', '1.2.3'), keys.digest('uid:2', '1.2.3'));
  });

  it('refuses a key file that is not 32 bytes of hex', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'atrium-research-key-'));
    const file = path.join(dir, 'bad.key');
    writeFileSync(file, 'not a key\n');
    await assert.rejects(ResearchKeys.open(file), ResearchKeyError);
    assert.equal(readFileSync(file, 'utf8'), 'not a key\n', 'left as it was');
  });
});
