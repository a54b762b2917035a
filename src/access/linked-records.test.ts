import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { openArchiveIndex, type ArchiveIndex } from '../index/archive-index.ts';
import { testDatabases } from '../../test/support/databases.ts';
import { linkedRecords } from './linked-records.ts';

for (const db of testDatabases()) {
  describe(`links access follows (${db.name})`, () => {
    let index: ArchiveIndex;
    let cleanup: () => Promise<void>;
    const now = new Date().toISOString();
    // One person of four records: 0 and 1 share a qualified INS, 1 and 2 were linked by the
    // territory's decision, 2 and 3 by a site administrator's.
    const records: number[] = [];

    before(async () => {
      const opened = await db.open();
      cleanup = opened.cleanup;
      index = await openArchiveIndex(opened.config);
      const person = Number((await index.sql.get<{ id: number }>('INSERT INTO persons (created_at) VALUES (?) RETURNING id', [now]))!.id);
      for (const [i, code] of ['A', 'B', 'C', 'D'].entries()) {
        const site = await index.createSite({ code, name: code, finess: '000000000', issuerOfPatientID: `ISS-${code}` });
        const row = await index.sql.get<{ id: number }>('INSERT INTO patients (site_id, issuer, patient_id, updated_at) VALUES (?, ?, ?, ?) RETURNING id', [site.id, site.issuerOfPatientID, `P${i}`, now]);
        records.push(Number(row!.id));
        const qualified = i < 2;
        await index.sql.run('INSERT INTO patient_identities (patient_id, ins, status, source, person_id, updated_at) VALUES (?, ?, ?, ?, ?, ?)',
          [records[i]!, qualified ? '280017512345612' : null, qualified ? 'qualified' : 'provisional', 'test', person, now]);
      }
      const decided = (a: number, b: number, decidedFor: string) => index.sql.run(
        `INSERT INTO identity_reviews (kind, patient_id, other_patient_id, details, state, created_at, decided_at, decided_for) VALUES ('link-candidate', ?, ?, 'test', 'accepted', ?, ?, ?)`,
        [records[a]!, records[b]!, now, now, decidedFor]);
      await decided(1, 2, 'territory');
      await decided(2, 3, 'sites');
    });

    after(async () => {
      await index?.close();
      await cleanup?.();
    });

    it('follows qualified INS and the territory\'s decisions, never a site administrator\'s link', async () => {
      assert.deepEqual(await linkedRecords(index.sql, [records[0]!], 'ins-or-territory'), [records[0], records[1], records[2]]);
      assert.deepEqual(await linkedRecords(index.sql, [records[3]!], 'ins-or-territory'), [records[3]]);
    });

    it('follows qualified INS alone when asked to, and lists the records given first', async () => {
      assert.deepEqual(await linkedRecords(index.sql, [records[1]!], 'qualified-ins'), [records[1], records[0]]);
      assert.deepEqual(await linkedRecords(index.sql, [records[2]!], 'qualified-ins'), [records[2]]);
    });
  });
}
