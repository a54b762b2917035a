import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { scopeCondition } from '../access/policy.ts';
import { testDatabases } from '../../test/support/databases.ts';
import { openArchiveIndex } from './archive-index.ts';
import type { SqlDatabase } from './sql.ts';

const studies = 60_000;

/**
 * Study rows straight in SQL (as bench/large-index.ts does, smaller): two patients a study
 * apart, 40% of the studies at the first site, dates over eleven years.
 */
async function fill(sql: SqlDatabase, sites: [number, number]): Promise<void> {
  const now = new Date().toISOString();
  const series = sql.engine === 'postgres'
    ? `SELECT g AS n FROM generate_series(1, ${studies}) AS g`
    : `WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < ${studies}) SELECT n FROM c`;
  const date = sql.engine === 'postgres'
    ? `to_char(date '2015-01-01' + ((n * 7919) % 4000), 'YYYYMMDD')`
    : `strftime('%Y%m%d', '2015-01-01', '+' || ((n * 7919) % 4000) || ' days')`;
  await sql.transaction(async (tx) => {
    await tx.run(`INSERT INTO patients (id, site_id, issuer, patient_id, patient_name, patient_name_folded, birth_date, sex, updated_at)
      SELECT n, CASE WHEN n % 5 < 2 THEN ${Number(sites[0])} ELSE ${Number(sites[1])} END, 'BENCH', 'P' || n, 'Dupré^Hélène', 'DUPRE^HELENE', '19600101', 'F', ? FROM (${series}) AS t`, [now]);
    await tx.run(`INSERT INTO studies (id, study_instance_uid, patient_id, site_id, study_date, study_time, created_at, updated_at)
      SELECT n, '2.25.' || n, n, CASE WHEN n % 5 < 2 THEN ${Number(sites[0])} ELSE ${Number(sites[1])} END, ${date}, '120000', ?, ? FROM (${series}) AS t`, [now, now]);
  });
  if (sql.engine === 'postgres') {
    await sql.exec(`SELECT setval(pg_get_serial_sequence('patients', 'id'), ${studies}); SELECT setval(pg_get_serial_sequence('studies', 'id'), ${studies})`);
    // What autovacuum does after such a load.
    await sql.exec('ANALYZE patients; ANALYZE studies');
  }
}

// A site's recent studies, a page past the first: the walk of studies_date in order, the site
// checked on the index entry, never the whole table sorted (PostgreSQL chose that while it had
// no statistics for the scope's "+site_id": bench/large-index.ts, 390 ms on 100,000 studies).
for (const database of testDatabases()) {
  describe(`a site's recent studies walk the date index (${database.name})`, () => {
    it('pages 1 and 10 of a site-scoped search by date read studies_date in order', async () => {
      const { config, cleanup } = await database.open();
      const index = await openArchiveIndex(config);
      try {
        const a = await index.createSite({ code: 'A', name: 'A', finess: '000000001', issuerOfPatientID: 'BENCH' });
        const b = await index.createSite({ code: 'B', name: 'B', finess: '000000002', issuerOfPatientID: 'OTHER' });
        await fill(index.sql, [a.id, b.id]);
        const restriction = scopeCondition({ all: false, siteIds: [a.id], studies: new Map(), patients: new Map() });
        for (const offset of [0, 450]) {
          const captured: Array<{ text: string; params: readonly unknown[] }> = [];
          const all = index.sql.all.bind(index.sql);
          index.sql.all = async <T>(text: string, params: readonly unknown[] = []) => { captured.push({ text, params }); return all<T>(text, params); };
          let rows;
          try {
            rows = await index.searchStudies({ level: 'study', matches: {}, fuzzymatching: false, limit: 50, offset, restriction });
          } finally {
            index.sql.all = all;
          }
          assert.equal(rows.length, 50);
          assert.ok(rows.every((r) => r.siteId === a.id));
          const q = captured[0]!;
          const plan = database.name === 'sqlite'
            ? (await all<{ detail: string }>(`EXPLAIN QUERY PLAN ${q.text}`, q.params)).map((r) => r.detail).join('\n')
            : (await all<{ 'QUERY PLAN': string }>(`EXPLAIN ${q.text}`, q.params)).map((r) => r['QUERY PLAN']).join('\n');
          assert.match(plan, /studies_date/, `offset ${offset}:\n${plan}`);
          assert.doesNotMatch(plan, /Seq Scan on studies|TEMP B-TREE FOR ORDER BY|Sort Key/, `offset ${offset}:\n${plan}`);
        }
      } finally {
        await index.close();
        await cleanup();
      }
    });
  });
}
