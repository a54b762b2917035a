/**
 * A broad patient name prefix, paged (issue 14): QIDO-RS answers the studies of every
 * matching record newest first (date, then time, then the order they were indexed), the
 * pages of limit/offset put end to end give the whole answer, and only what the caller's
 * sites allow is found; the portal's /api/patients pages the records by PatientID and counts
 * their studies. The index chooses a page on index entries before it reads rows
 * (src/index/archive-index.ts): these are the answers that must not change.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { addUser } from '../src/cli/users.ts';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { CookieJar, request } from './support/browser-session.ts';
import { testDatabases } from './support/databases.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance, type SyntheticOptions } from './support/synthetic.ts';

const password = 'un mot de passe assez long pour les tests';
const tag = { PatientID: '00100020', PatientName: '00100010', StudyDate: '00080020', StudyInstanceUID: '0020000D' };
type Json = Record<string, { Value?: unknown[] }>;

for (const engine of testDatabases()) {
  describe(`a broad patient name prefix, paged (${engine.name})`, () => {
    let atrium: RunningAtrium;
    let base: string;
    let cleanup: () => Promise<void>;
    const jar = new CookieJar();
    /** The studies of CHU-NORD named Dup..., newest first, as the index must give them. */
    const expected: string[] = [];

    const stow = async (site: string, o: SyntheticOptions) => {
      const obj = syntheticInstance({ Rows: 4, Columns: 4, ...o });
      const r = await stowFiles(`${base}/dicom-web`, atrium.tokens[site], [obj.file]);
      assert.equal(r.status, 200, await r.text());
      return obj.uids.study;
    };
    const qido = async (query: string): Promise<Json[]> => {
      const r = await request(jar, `${base}/dicom-web/studies?${query}`, { headers: { accept: 'application/dicom+json' } });
      assert.ok(r.status === 200 || r.status === 204, `${query}: ${r.status}`);
      const text = await r.text();
      return text.trim() === '' ? [] : (JSON.parse(text) as Json[]);
    };
    const uidsOf = (rows: Json[]) => rows.map((r) => String(r[tag.StudyInstanceUID]?.Value?.[0]));

    before(async () => {
      const db = await engine.open();
      cleanup = db.cleanup;
      atrium = await startAtrium({ index: db.config });
      base = atrium.dicomweb.replace(/\/dicom-web$/, '');
      // Nine studies at CHU-NORD under five records named Dup... (dates out of order, two on
      // the same day), one under another name, one of a Dup... at CLIN-SUD.
      const nord: Array<[string, string, string]> = [
        ['N-1', 'Dupont^Anne', '20190505'], ['N-2', 'Dupré^Bernard', '20240101'], ['N-1', 'Dupont^Anne', '20230303'],
        ['N-3', 'DUPUIS^Claire', '20240101'], ['N-4', 'Dupond^Denis', '20150707'], ['N-2', 'Dupré^Bernard', '20200202'],
        ['N-5', 'Dupin^Émile', '20251212'], ['N-3', 'DUPUIS^Claire', '20240101'], ['N-4', 'Dupond^Denis', '20210909'],
      ];
      const made: Array<{ uid: string; date: string; n: number }> = [];
      for (const [n, [PatientID, PatientName, StudyDate]] of nord.entries()) {
        made.push({ uid: await stow('CHU-NORD', { PatientID, PatientName, StudyDate }), date: StudyDate, n });
      }
      await stow('CHU-NORD', { PatientID: 'N-9', PatientName: 'Martin^Dupuy', StudyDate: '20260101' });
      await stow('CLIN-SUD', { PatientID: 'S-1', PatientName: 'Dupuy^Sud', StudyDate: '20260606' });
      // Newest first; on the same day (no StudyTime), in the order they were indexed.
      expected.push(...made.sort((a, b) => (a.date === b.date ? a.n - b.n : a.date < b.date ? 1 : -1)).map((m) => m.uid));
      await addUser(atrium.archive, { login: 'rad.nord', displayName: 'Dr Nord', roles: ['radiologist'], sites: ['CHU-NORD'], password }, { actor: 'test', via: 'cli' });
      const r = await request(jar, `${base}/auth/local`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ login: 'rad.nord', password }) });
      assert.equal(r.status, 200, await r.text());
    });

    after(async () => {
      await atrium?.close();
      await cleanup?.();
    });

    it('QIDO-RS: the studies of every matching record of the caller\'s site, newest first', async () => {
      const all = await qido('PatientName=DUP*&limit=100');
      assert.deepEqual(uidsOf(all), expected);
      const dates = all.map((r) => String(r[tag.StudyDate]?.Value?.[0]));
      assert.deepEqual(dates, [...dates].sort().reverse());
      assert.ok(all.every((r) => /^N-[1-5]$/.test(String(r[tag.PatientID]?.Value?.[0]))), 'only CHU-NORD\'s Dup... records');
      // Accents and case folded: "Dupré" is found by "dupre*".
      assert.deepEqual(uidsOf(await qido('PatientName=dupre*&limit=100')), uidsOf(all).filter((_, i) => all[i]![tag.PatientID]?.Value?.[0] === 'N-2'));
    });

    it('QIDO-RS: pages of limit/offset put end to end are the whole answer, in the same order', async () => {
      for (const limit of [1, 2, 4]) {
        const pages: string[] = [];
        for (let offset = 0; offset < expected.length + limit; offset += limit) pages.push(...uidsOf(await qido(`PatientName=DUP*&limit=${limit}&offset=${offset}`)));
        assert.deepEqual(pages, expected, `limit ${limit}`);
      }
      assert.deepEqual(await qido(`PatientName=DUP*&limit=5&offset=${expected.length}`), []);
    });

    it('QIDO-RS: fuzzymatching finds a name component too; other keys narrow the pages', async () => {
      // "Martin^Dupuy": DUPUY begins its given name.
      const fuzzy = uidsOf(await qido('PatientName=dup&fuzzymatching=true&limit=100'));
      assert.equal(fuzzy.length, expected.length + 1);
      assert.deepEqual(fuzzy.filter((u) => expected.includes(u)), expected);
      const year = uidsOf(await qido('PatientName=DUP*&StudyDate=20240101-20241231&limit=2'));
      assert.equal(year.length, 2);
      assert.deepEqual(year, expected.slice(1, 3));
    });

    it('/api/patients: the matching records by PatientID, a page at a time, with their studies counted', async () => {
      const page = async (query: string) => {
        const r = await request(jar, `${base}/api/patients?${query}`);
        assert.equal(r.status, 200);
        return (await r.json()) as { patients: Array<{ PatientID: string; site: string; NumberOfPatientRelatedStudies: number }>; next?: number };
      };
      const whole = await page('name=dup');
      assert.deepEqual(whole.patients.map((p) => `${p.site}/${p.PatientID}/${p.NumberOfPatientRelatedStudies}`),
        ['CHU-NORD/N-1/2', 'CHU-NORD/N-2/2', 'CHU-NORD/N-3/2', 'CHU-NORD/N-4/2', 'CHU-NORD/N-5/1', 'CHU-NORD/N-9/1']);
      const paged: string[] = [];
      for (let offset: number | undefined = 0; offset !== undefined;) {
        const p = await page(`name=dup&limit=4&offset=${offset}`);
        paged.push(...p.patients.map((x) => x.PatientID));
        offset = p.next;
      }
      assert.deepEqual(paged, ['N-1', 'N-2', 'N-3', 'N-4', 'N-5', 'N-9']);
    });
  });
}
