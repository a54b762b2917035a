/**
 * A share link's PIN against a brute force sent all at once: the five attempts are taken in
 * the index before any PIN is compared, so parallel guesses get no more than five compared,
 * on each index engine.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { ShareLinks } from '../src/access/share-links.ts';

for (const engine of testDatabases()) {
  describe(`share link PIN (${engine.name})`, () => {
    let atrium: RunningAtrium;
    let cleanup: () => Promise<void>;
    let base: string;
    const exam = syntheticInstance({ PatientID: 'PIN-1', Rows: 4, Columns: 4 });

    before(async () => {
      const db = await engine.open();
      cleanup = db.cleanup;
      atrium = await startAtrium({ index: db.config });
      base = atrium.dicomweb.replace(/\/dicom-web$/, '');
      const stored = await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, [exam.file]);
      assert.equal(stored.status, 200, await stored.text());
    });
    after(async () => {
      await atrium?.close();
      await cleanup?.();
    });

    const open = (token: string, pin: string) => fetch(`${base}/share/open`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token, pin }),
    });

    it('compares at most five of ten wrong PINs sent at once, locks the link, and refuses the right PIN afterwards', async () => {
      const { link, token } = await new ShareLinks(atrium.archive.index.sql).create({
        StudyInstanceUID: exam.uids.study, createdBy: 'test', expiresAt: new Date(Date.now() + 3_600_000), pin: '271828',
      });
      const guesses = Array.from({ length: 10 }, (_, i) => String(100000 + i));
      const answers = await Promise.all(guesses.map(async (pin) => {
        const r = await open(token, pin);
        return { status: r.status, detail: ((await r.json()) as { detail: string }).detail };
      }));
      // A compared PIN answers 401 (attempts left) or 423 "wrong PIN: ... now locked"; the others 423 uncompared.
      const compared = answers.filter((a) => a.status === 401 || /^wrong PIN/.test(a.detail));
      assert.ok(compared.length <= 5, JSON.stringify(answers));
      for (const a of answers) assert.ok(a.status === 401 || a.status === 423 || a.status === 429, JSON.stringify(a));
      const row = await atrium.archive.index.sql.get<{ failed_pins: number; locked_at: string | null }>('SELECT failed_pins, locked_at FROM share_links WHERE id = ?', [link.id]);
      assert.ok(row!.locked_at !== null, 'the link is locked');
      assert.equal(Number(row!.failed_pins), 5);
      const right = await open(token, '271828');
      assert.equal(right.status, 423, await right.clone().text());
    });

    it('opens with the right PIN after a few wrong ones, and gives the right attempt back', async () => {
      const { token } = await new ShareLinks(atrium.archive.index.sql).create({
        StudyInstanceUID: exam.uids.study, createdBy: 'test', expiresAt: new Date(Date.now() + 3_600_000), pin: '3141',
      });
      assert.equal((await open(token, '0000')).status, 401);
      assert.equal((await open(token, '3141')).status, 200);
      assert.equal((await open(token, '3141')).status, 200);
      const left = await open(token, '1111');
      assert.equal(left.status, 401);
      assert.match(((await left.json()) as { detail: string }).detail, /3 attempts left/);
    });
  });
}
