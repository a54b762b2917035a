/**
 * Modality worklist (PS3.4 K) queried by DCMTK's findscu -W: the orders of the caller's
 * site still to be performed, matched with the C-FIND rules.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { dcmtk, haveDcmtk } from './support/dcmtk.ts';
import { ScheduledProcedures, type ScheduledProcedure } from '../src/patients/scheduled-procedures.ts';
import { OrderMatching } from '../src/workflow/order-matching.ts';
import { openReviews } from '../src/patients/identities.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';

for (const db of testDatabases()) {
  describe(`modality worklist with findscu -W (${db.name})`, { skip: !haveDcmtk && 'DCMTK is not installed' }, () => {
    let atrium: RunningAtrium;
    let cleanup: () => Promise<void>;
    const port = () => String(atrium.dimse!.port);

    before(async () => {
      const opened = await db.open();
      cleanup = opened.cleanup;
      atrium = await startAtrium({
        index: opened.config,
        dimse: true,
        configure: (c) => {
          c.peers = [
            { aeTitle: 'CT_NORD', site: 'CHU-NORD', may: { store: true, query: true, retrieve: false } },
            { aeTitle: 'CT_SUD', site: 'CLIN-SUD', may: { store: true, query: true, retrieve: false } },
            { aeTitle: 'STORE_ONLY', site: 'CHU-NORD', may: { store: true, query: false, retrieve: false } },
          ];
        },
      });
      const nord = atrium.archive.sites.get('CHU-NORD')!.id;
      const sud = atrium.archive.sites.get('CLIN-SUD')!.id;
      const procedures = new ScheduledProcedures(atrium.archive.index.sql);
      const order = (o: Partial<ScheduledProcedure> & { AccessionNumber: string }): ScheduledProcedure => ({
        siteId: nord, PatientID: 'P1', IssuerOfPatientID: 'CHUNORD', PatientName: 'DUPONT^Hélène', PatientBirthDate: '19700101', PatientSex: 'F',
        StudyInstanceUID: `1.2.250.99.${o.AccessionNumber.replace(/\D/g, '')}`, Modality: 'CT', ScheduledStationAETitle: 'CT_NORD',
        ScheduledProcedureStepStartDate: '20261123', ScheduledProcedureStepStartTime: '093000', ScheduledProcedureStepID: `SPS${o.AccessionNumber}`,
        RequestedProcedureDescription: 'Scanner thoracique', status: 'SCHEDULED', ...o,
      });
      await procedures.upsert(order({ AccessionNumber: 'A1001' }));
      await procedures.upsert(order({ AccessionNumber: 'A1002', PatientID: 'P2', PatientName: 'MARTIN^Paul', ScheduledProcedureStepStartTime: '140000' }));
      await procedures.upsert(order({ AccessionNumber: 'A1003', Modality: 'MR' }));
      await procedures.upsert(order({ AccessionNumber: 'A1004', status: 'CANCELED' }));
      await procedures.upsert(order({ AccessionNumber: 'A1005', ScheduledProcedureStepStartDate: '20261124' }));
      await procedures.upsert(order({ AccessionNumber: 'S2001', siteId: sud, IssuerOfPatientID: 'CLINSUD' }));
      // An order sent again replaces what the first message said.
      await procedures.upsert(order({ AccessionNumber: 'A1002', PatientID: 'P2', PatientName: 'MARTIN^Paul', ScheduledProcedureStepStartTime: '150000' }));
    });

    after(async () => {
      await atrium?.close();
      await cleanup?.();
    });

    const query = (calling: string, ...keys: string[]) => dcmtk('findscu', ['-W', '-v', '-aet', calling, '-aec', 'ATRIUM',
      '-k', 'PatientName', '-k', 'PatientID', '-k', 'AccessionNumber', '-k', 'StudyInstanceUID', '-k', 'RequestedProcedureDescription',
      '-k', 'ScheduledProcedureStepSequence[0].ScheduledStationAETitle', '-k', 'ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime',
      ...keys.flatMap((k) => ['-k', k]), '127.0.0.1', port()]);
    const accessions = (output: string) => [...output.matchAll(/\(0008,0050\) SH \[([^\]]*)\]/g)].map((m) => m[1]!.trim()).sort();

    it("answers today's CT orders of the caller's site, not cancelled ones, other modalities, other days or other sites", async () => {
      const r = await query('CT_NORD', 'ScheduledProcedureStepSequence[0].Modality=CT', 'ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=20261123');
      assert.equal(r.code, 0, r.output);
      assert.deepEqual(accessions(r.output), ['A1001', 'A1002']);
      assert.match(r.output, /\(0040,0001\) AE \[CT_NORD/);
      assert.match(r.output, /\(0040,0003\) TM \[150000\]/, 'the order as last sent');
      assert.match(r.output, /Scanner thoracique/);
      const sud = await query('CT_SUD');
      assert.deepEqual(accessions(sud.output), ['S2001']);
    });

    it('matches names without regard to case or accents, and date ranges', async () => {
      const r = await query('CT_NORD', 'PatientName=dupont*', 'ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=20261123-20261124');
      assert.deepEqual(accessions(r.output), ['A1001', 'A1003', 'A1005']);
      assert.match(r.output, /\(0008,0005\) CS \[ISO_IR 100\]/);
    });

    it('takes an order off the worklist when its images arrive, and flags images that name another patient than their order', async () => {
      const work = mkdtempSync(path.join(tmpdir(), 'atrium-mwl-'));
      try {
        const image = (accession: string, PatientID: string) => {
          const o = syntheticInstance({ PatientID, Rows: 4, Columns: 4, extra: [{ tag: 0x00080050, vr: 'SH', value: Buffer.from(accession.padEnd(accession.length + (accession.length % 2), ' '), 'latin1') }] });
          const file = path.join(work, `${o.uids.sop}.dcm`);
          writeFileSync(file, o.file);
          return file;
        };
        const r = await dcmtk('storescu', ['-aet', 'CT_NORD', '-aec', 'ATRIUM', '127.0.0.1', port(), image('A1001', 'P1'), image('A1002', 'SOMEONE-ELSE')]);
        assert.equal(r.code, 0, r.output);
        await new OrderMatching(atrium.archive, pino({ level: 'silent' })).drain();
        const list = await query('CT_NORD', 'ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=20261123');
        assert.deepEqual(accessions(list.output), ['A1002', 'A1003'], 'A1001 is being performed');
        const reviews = await openReviews(atrium.archive.index.sql);
        assert.ok(reviews.some((rv) => rv.kind === 'order-mismatch' && rv.details.includes('A1002')), JSON.stringify(reviews));
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    });

    it('refuses the worklist to a peer that may not query', async () => {
      const r = await query('STORE_ONLY');
      assert.notEqual(r.code, 0);
      assert.match(r.output, /No presentation context|no acceptable presentation contexts|Abstract Syntax Not Supported|Rejected/i, r.output);
    });
  });
}
