import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { openArchiveIndex } from '../index/archive-index.ts';
import type { SqlDatabase } from '../index/sql.ts';
import { testDatabases } from '../../test/support/databases.ts';
import { AuditTrail } from './audit.ts';

/** The same database, counting every statement sent (inside its transactions too). */
function counting(db: SqlDatabase, count: { statements: number }): SqlDatabase {
  return {
    engine: db.engine,
    all: (sql, params) => { count.statements++; return db.all(sql, params); },
    get: (sql, params) => { count.statements++; return db.get(sql, params); },
    run: (sql, params) => { count.statements++; return db.run(sql, params); },
    exec: (sql) => { count.statements++; return db.exec(sql); },
    transaction: (fn, options) => db.transaction((tx) => fn(counting(tx, count)), options),
    flush: () => db.flush(),
    close: () => db.close(),
  };
}

// A search answer touches a page of patients, a C-FIND (no limit) thousands: their rows of
// audit_event_patients go in a few statements, not one round trip each under the chain's lock.
for (const database of testDatabases()) {
  describe(`audit trail: the patients of one event (${database.name})`, () => {
    it('writes 1,200 patient references in a handful of statements, all found and verified', async () => {
      const { config, cleanup } = await database.open();
      const index = await openArchiveIndex(config);
      try {
        const patients = Array.from({ length: 1200 }, (_, i) => `BENCH|BENCH|P${String(i).padStart(5, '0')}`);
        const count = { statements: 0 };
        await new AuditTrail(counting(index.sql, count)).record({
          action: 'query', outcome: 'success', actor: 'bench', actorKind: 'api-client', via: 'dicomweb', patients, details: { results: 1200 },
        });
        assert.ok(count.statements <= 8, `${count.statements} statements for one event of 1,200 patients`);
        const trail = new AuditTrail(index.sql);
        const verification = await trail.verify();
        assert.equal(verification.ok, true, JSON.stringify(verification));
        assert.equal(verification.records, 1);
        for (const ref of [patients[0]!, patients[499]!, patients[500]!, patients[1199]!]) {
          const found = await trail.forPatient(ref);
          assert.equal(found.length, 1, ref);
          assert.equal(found[0]!.patients?.length, 1200);
        }
        const rows = await index.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM audit_event_patients');
        assert.equal(Number(rows!.n), 1200);
      } finally {
        await index.close();
        await cleanup();
      }
    });
  });
}
