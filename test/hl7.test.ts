/**
 * HL7 v2.5 over MLLP with a real TCP client: ADT creates and updates the sending site's
 * patients (with the INS of the French PAM profile), ORM^O01 and OMI^O23 create, update
 * and cancel scheduled procedures; every message gets AA, AE or AR, and a refused
 * message changes nothing. On SQLite and PostgreSQL.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { dcmtk, haveDcmtk } from './support/dcmtk.ts';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { MllpClient, sendHl7 } from './support/hl7.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { retrieveInstanceAsStored } from './support/dicomweb-client.ts';
import { parsePart10 } from '../src/dicom/part10-parser.ts';
import { stringValue, valueContextOf } from '../src/dicom/values.ts';
import { Tags } from '../src/dicom/dataset.ts';
import { findRegisteredPatient } from '../src/patients/patient-registry.ts';
import { ScheduledProcedures } from '../src/patients/scheduled-procedures.ts';

/** A valid INS-NIR (key 97 - NIR mod 97) and the same matricule with a wrong key. */
const validINS = '280017512345610';
const corsicanINS = '180012A12345620';
const wrongKeyINS = '280017512345611';
const insAuthority = 'ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO';

let controlCounter = 0;

function msh(type: string, options: { application?: string; facility?: string; encoding?: string; version?: string; charset?: string } = {}): string {
  controlCounter += 1;
  return `MSH|${options.encoding ?? '^~\\&'}|${options.application ?? 'RIS_NORD'}|${options.facility ?? 'CHU_NORD'}|ATRIUM|GHT|20260110093000||${type}|CTRL${controlCounter}|P|${options.version ?? '2.5'}|||||FRA|${options.charset ?? '8859/1'}`;
}

function pid(PatientID: string, options: { ins?: string; name?: string; birth?: string; sex?: string; status?: string } = {}): string {
  const ids = [`${PatientID}^^^CHUNORD^PI`, ...(options.ins ? [`${options.ins}^^^${insAuthority}^INS`] : [])].join('~');
  const name = options.name ?? 'DUPONT^HELENE^MARIE^^^^L~MARTIN^HELENE^^^^^D';
  return `PID|1||${ids}||${name}||${options.birth ?? '19800115'}|${options.sex ?? 'F'}${options.status ? `${'|'.repeat(24)}${options.status}` : ''}`;
}

const controlIdOf = (message: string) => /\|(CTRL\d+)\|/.exec(message)![1];

/** A segment from its fields by position: seg('OBR', { 1: '1', 18: 'ACC' }). */
function seg(id: string, fields: Record<number, string>): string {
  const n = Math.max(...Object.keys(fields).map(Number));
  return [id, ...Array.from({ length: n }, (_, i) => fields[i + 1] ?? '')].join('|');
}

function message(...segments: string[]): string {
  return segments.join('\r') + '\r';
}

for (const db of testDatabases()) {
  describe(`HL7 v2 over MLLP on ${db.name}`, () => {
    let atrium: RunningAtrium;
    let cleanup: () => Promise<void>;
    let port: number;
    let siteId: number;
    const key = (PatientID: string) => ({ siteId, IssuerOfPatientID: 'CHUNORD', PatientID });
    const patient = (PatientID: string) => findRegisteredPatient(atrium.archive.index.sql, key(PatientID));
    const orders = () => new ScheduledProcedures(atrium.archive.index.sql);
    const countPatients = async () => Number((await atrium.archive.index.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM patients'))!.n);

    before(async () => {
      const opened = await db.open();
      cleanup = opened.cleanup;
      atrium = await startAtrium({
        index: opened.config,
        hl7: true,
        configure: (c) => {
          c.hl7.senders = [{ application: 'RIS_NORD', facility: 'CHU_NORD', site: 'CHU-NORD', stationAETitle: 'CT_NORD' }];
          c.peers = [{ aeTitle: 'WS_NORD', site: 'CHU-NORD', may: { store: false, query: true, retrieve: true } }];
        },
        dimse: true,
      });
      port = atrium.hl7!.port;
      siteId = atrium.archive.sites.get('CHU-NORD')!.id;
    });

    after(async () => {
      await atrium?.close();
      await cleanup?.();
    });

    it('A04 creates the patient of the sending site with the birth name, birth date, sex and INS (AA, MSA-2 = MSH-10)', async () => {
      const m = message(msh('ADT^A04^ADT_A01'), 'EVN||20260110093000', pid('P1001', { ins: validINS, status: 'VALI' }), 'PV1|1|O');
      const ack = await sendHl7(port, m);
      assert.equal(ack.code, 'AA', ack.text);
      assert.equal(ack.controlId, controlIdOf(m));
      assert.equal(ack.errorCode, undefined);
      const msh9 = ack.text.split('\r')[0]!.split('|')[8];
      assert.equal(msh9, 'ACK^A04^ACK');
      const p = await patient('P1001');
      assert.ok(p, 'patient created');
      assert.equal(p.PatientName, 'DUPONT^HELENE^MARIE');
      assert.equal(p.PatientBirthDate, '19800115');
      assert.equal(p.PatientSex, 'F');
      assert.deepEqual(p.identity, { ins: validINS, oid: '1.2.250.1.213.1.4.8', status: 'validated' });
      const words = await atrium.archive.index.sql.all<{ word: string }>('SELECT word FROM patient_name_words WHERE patient_id = ? ORDER BY word', [p.id]);
      assert.deepEqual(words.map((w) => w.word), ['DUPONT', 'HELENE', 'MARIE']);
    });

    it('A08 updates the name (folded name and name words follow), in 8859/1', async () => {
      const m = message(msh('ADT^A08^ADT_A01'), pid('P1001', { name: 'DUPONT^HÉLÈNE^^^^^L' }));
      const ack = await sendHl7(port, Buffer.from(m, 'latin1'));
      assert.equal(ack.code, 'AA', ack.text);
      const p = await patient('P1001');
      assert.equal(p!.PatientName, 'DUPONT^HÉLÈNE');
      const row = await atrium.archive.index.sql.get<{ patient_name_folded: string }>('SELECT patient_name_folded FROM patients WHERE id = ?', [p!.id]);
      assert.equal(row!.patient_name_folded, 'DUPONT^HELENE');
      const words = await atrium.archive.index.sql.all<{ word: string }>('SELECT word FROM patient_name_words WHERE patient_id = ? ORDER BY word', [p!.id]);
      assert.deepEqual(words.map((w) => w.word), ['DUPONT', 'HELENE']);
    });

    it('reads UNICODE UTF-8 messages and accepts a Corsican INS (2A)', async () => {
      const m = message(msh('ADT^A28^ADT_A05', { charset: 'UNICODE UTF-8' }), pid('P1002', { name: 'ŒUVRE^ZOÉ^^^^^L', ins: corsicanINS, sex: 'M', birth: '19800101' }));
      const ack = await sendHl7(port, Buffer.from(m, 'utf8'));
      assert.equal(ack.code, 'AA', ack.text);
      const p = await patient('P1002');
      assert.equal(p!.PatientName, 'ŒUVRE^ZOÉ');
      assert.equal(p!.identity?.ins, corsicanINS);
    });

    it('answers AE (102 at PID-3) to an INS whose key is wrong, and changes nothing', async () => {
      const before = await patient('P1001');
      const update = message(msh('ADT^A08^ADT_A01'), pid('P1001', { name: 'AUTRE^NOM^^^^^L', ins: wrongKeyINS }));
      const ack = await sendHl7(port, update);
      assert.equal(ack.code, 'AE', ack.text);
      assert.equal(ack.errorCode, '102');
      assert.equal(ack.errorLocation, 'PID-3');
      assert.match(ack.errorMessage!, /key/);
      assert.deepEqual(await patient('P1001'), before);
      const n = await countPatients();
      const create = await sendHl7(port, message(msh('ADT^A04^ADT_A01'), pid('P1003', { ins: wrongKeyINS })));
      assert.equal(create.code, 'AE');
      assert.equal(await countPatients(), n);
      assert.equal(await patient('P1003'), undefined);
    });

    it('answers AR to an unknown sender, naming MSH-3 and MSH-4', async () => {
      const n = await countPatients();
      const ack = await sendHl7(port, message(msh('ADT^A04^ADT_A01', { application: 'HIS_X', facility: 'ELSEWHERE' }), pid('P1999')));
      assert.equal(ack.code, 'AR', ack.text);
      assert.match(ack.errorMessage!, /HIS_X.*ELSEWHERE.*not a configured HL7 sender/);
      assert.equal(ack.text.split('\r')[0]!.split('|')[4], 'HIS_X', 'the ACK goes back to the sending application');
      assert.equal(await countPatients(), n);
    });

    it('answers AR to truncated encoding characters (MSH-2), echoing MSH-10', async () => {
      const m = message(msh('ADT^A04^ADT_A01', { encoding: '^~' }), pid('P1998'));
      const ack = await sendHl7(port, m);
      assert.equal(ack.code, 'AR', ack.text);
      assert.equal(ack.controlId, controlIdOf(m));
      assert.equal(ack.errorLocation, 'MSH-2');
      assert.equal(await patient('P1998'), undefined);
    });

    it('answers AR to an unsupported version (203) and an unknown message type (200)', async () => {
      const old = await sendHl7(port, message(msh('ADT^A04^ADT_A01', { version: '2.1' }), pid('P1997')));
      assert.equal(old.code, 'AR');
      assert.equal(old.errorCode, '203');
      const siu = await sendHl7(port, message(msh('SIU^S12^SIU_S12'), pid('P1997')));
      assert.equal(siu.code, 'AR');
      assert.equal(siu.errorCode, '200');
      assert.equal(siu.errorLocation, 'MSH-9');
      const a03 = await sendHl7(port, message(msh('ADT^A03^ADT_A03'), pid('P1997')));
      assert.equal(a03.code, 'AR');
      assert.equal(a03.errorCode, '201');
    });

    it('answers AE 100 to a message without PID, and AE 101 when PID-3 has no identifier of the site', async () => {
      const noPid = await sendHl7(port, message(msh('ADT^A04^ADT_A01'), 'EVN||20260110093000', 'PV1|1|O'));
      assert.equal(noPid.code, 'AE');
      assert.equal(noPid.errorCode, '100');
      assert.match(noPid.errorMessage!, /PID segment is missing/);
      const foreign = await sendHl7(port, message(msh('ADT^A04^ADT_A01'), 'PID|1||777^^^OTHERHOSP^PI||X^Y||19700101|M'));
      assert.equal(foreign.code, 'AE');
      assert.equal(foreign.errorCode, '101');
      assert.equal(foreign.errorLocation, 'PID-3');
    });

    it('survives a frame without end block and noise between frames, and serves the next messages', async () => {
      const broken = net.connect({ port, host: '127.0.0.1' });
      await new Promise((r) => broken.once('connect', r));
      broken.write(Buffer.from(`\x0b${message(msh('ADT^A04^ADT_A01'), pid('P1996'))}`, 'latin1'));
      await new Promise((r) => setTimeout(r, 50));
      broken.end();
      await new Promise((r) => broken.once('close', r));
      const client = await MllpClient.connect(port);
      try {
        client.writeRaw(Buffer.from('garbage\r\n'));
        const ack = await client.send(message(msh('ADT^A04^ADT_A01'), pid('P1995')));
        assert.equal(ack.code, 'AA', ack.text);
        const again = await client.send(message(msh('ADT^A08^ADT_A01'), pid('P1995', { sex: 'M' })));
        assert.equal(again.code, 'AA');
      } finally {
        await client.close();
      }
      assert.equal(await patient('P1996'), undefined);
      assert.equal((await patient('P1995'))!.PatientSex, 'M');
    });

    it('ORM^O01 NW creates a scheduled procedure (ZDS StudyInstanceUID, OBR fields), SC updates it, CA cancels it', async () => {
      const nw = message(
        msh('ORM^O01^ORM_O01'),
        pid('P2001', { name: 'BERNARD^LUC^^^^^L' }),
        seg('PV1', { 1: '1', 2: 'O', 8: '12345^MEDECIN^TRAITANT' }),
        'ORC|NW|PLAC-1|FILL-1||SC',
        seg('OBR', { 1: '1', 2: 'PLAC-1', 3: 'FILL-1', 4: 'CTABD^Scanner abdomen^LOCAL', 7: '20260112083000', 18: 'ACC-2001', 24: 'CT', 27: '^^^20260112101500' }),
        'ZDS|1.2.250.1.999.1.2001^ATRIUM^Application^DICOM',
      );
      const ack = await sendHl7(port, nw);
      assert.equal(ack.code, 'AA', ack.text);
      assert.equal(ack.text.split('\r')[0]!.split('|')[8], 'ACK^O01^ACK');
      const o = await orders().findByAccession(siteId, 'ACC-2001');
      assert.ok(o);
      assert.equal(o.StudyInstanceUID, '1.2.250.1.999.1.2001');
      assert.equal(o.PatientID, 'P2001');
      assert.equal(o.IssuerOfPatientID, 'CHUNORD');
      assert.equal(o.PatientName, 'BERNARD^LUC');
      assert.equal(o.Modality, 'CT');
      assert.equal(o.RequestedProcedureDescription, 'Scanner abdomen');
      assert.equal(o.ScheduledProcedureStepStartDate, '20260112');
      assert.equal(o.ScheduledProcedureStepStartTime, '101500');
      assert.equal(o.ReferringPhysicianName, 'MEDECIN^TRAITANT');
      assert.equal(o.ScheduledStationAETitle, 'CT_NORD');
      assert.equal(o.PlacerOrderNumber, 'PLAC-1');
      assert.equal(o.status, 'SCHEDULED');
      assert.ok(await patient('P2001'), 'the order also registers the patient');

      const sc = await sendHl7(port, message(
        msh('ORM^O01^ORM_O01'), pid('P2001', { name: 'BERNARD^LUC^^^^^L' }),
        'ORC|XO|PLAC-1|FILL-1||SC',
        seg('OBR', { 1: '1', 2: 'PLAC-1', 3: 'FILL-1', 4: 'CTABD^Scanner abdomen injecté^LOCAL', 18: 'ACC-2001', 24: 'CT', 27: '^^^20260113090000' }),
      ));
      assert.equal(sc.code, 'AA', sc.text);
      const updated = await orders().findByAccession(siteId, 'ACC-2001');
      assert.equal(updated!.StudyInstanceUID, '1.2.250.1.999.1.2001', 'an update without ZDS keeps the StudyInstanceUID');
      assert.equal(updated!.ScheduledProcedureStepStartDate, '20260113');
      assert.equal(updated!.RequestedProcedureDescription, 'Scanner abdomen injecté');

      const ca = await sendHl7(port, message(msh('ORM^O01^ORM_O01'), pid('P2001'), 'ORC|CA|PLAC-1|FILL-1||CA', seg('OBR', { 1: '1', 2: 'PLAC-1', 3: 'FILL-1', 4: 'CTABD^Scanner abdomen^LOCAL', 18: 'ACC-2001' })));
      assert.equal(ca.code, 'AA', ca.text);
      assert.equal((await orders().findByAccession(siteId, 'ACC-2001'))!.status, 'CANCELED');
    });

    it('generates a StudyInstanceUID for an ORM^O01 without ZDS; cancelling an unknown order is AE 204', async () => {
      const ack = await sendHl7(port, message(msh('ORM^O01^ORM_O01'), pid('P2002'), 'ORC|NW|PLAC-2', seg('OBR', { 1: '1', 2: 'PLAC-2', 4: 'RXTHORAX^Radio thorax', 18: 'ACC-2002', 24: 'CR' })));
      assert.equal(ack.code, 'AA', ack.text);
      assert.match((await orders().findByAccession(siteId, 'ACC-2002'))!.StudyInstanceUID, /^2\.25\.\d+$/);
      const ca = await sendHl7(port, message(msh('ORM^O01^ORM_O01'), pid('P2002'), 'ORC|CA|PLAC-9', seg('OBR', { 1: '1', 2: 'PLAC-9', 4: 'RXTHORAX^Radio thorax', 18: 'ACC-9999' })));
      assert.equal(ca.code, 'AE');
      assert.equal(ca.errorCode, '204');
    });

    it('answers AE 101 naming OBR-4 or the accession number when missing, and leaves the patient uncreated', async () => {
      const noService = await sendHl7(port, message(msh('ORM^O01^ORM_O01'), pid('P2003'), 'ORC|NW|PLAC-3', seg('OBR', { 1: '1', 2: 'PLAC-3', 18: 'ACC-2003' })));
      assert.equal(noService.code, 'AE');
      assert.equal(noService.errorCode, '101');
      assert.match(noService.errorMessage!, /OBR-4/);
      const noAccession = await sendHl7(port, message(msh('ORM^O01^ORM_O01'), pid('P2003'), 'ORC|NW|PLAC-3', 'OBR|1|PLAC-3||RX^Radio'));
      assert.equal(noAccession.code, 'AE');
      assert.match(noAccession.errorMessage!, /accession/);
      assert.equal(await patient('P2003'), undefined, 'one transaction: the patient of a refused order is not created');
      assert.equal(await orders().findByAccession(siteId, 'ACC-2003'), undefined);
    });

    it('OMI^O23 with IPC creates the procedure with the given accession, StudyInstanceUID, step and modality', async () => {
      const ack = await sendHl7(port, message(
        msh('OMI^O23^OMI_O23'), pid('P2004', { ins: validINS, status: 'QUAL' }), 'PV1|1|O',
        'ORC|NW|PLAC-4|FILL-4||SC',
        'TQ1|1||||||20260115143000',
        seg('OBR', { 1: '1', 2: 'PLAC-4', 3: 'FILL-4', 4: 'IRMGENOU^IRM genou^LOCAL', 16: '^RADIOLOGUE^ANNE' }),
        'IPC|ACC-2004|RP-2004|1.2.250.1.999.2.2004|SPS-2004|MR||IRM 1||MR_NORD',
      ));
      assert.equal(ack.code, 'AA', ack.text);
      assert.equal(ack.text.split('\r')[0]!.split('|')[8], 'ACK^O23^ACK');
      const o = await orders().findByAccession(siteId, 'ACC-2004');
      assert.ok(o);
      assert.equal(o.StudyInstanceUID, '1.2.250.1.999.2.2004');
      assert.equal(o.RequestedProcedureID, 'RP-2004');
      assert.equal(o.ScheduledProcedureStepID, 'SPS-2004');
      assert.equal(o.Modality, 'MR');
      assert.equal(o.ScheduledStationName, 'IRM 1');
      assert.equal(o.ScheduledStationAETitle, 'MR_NORD');
      assert.equal(o.ScheduledProcedureStepStartDate, '20260115');
      assert.equal(o.ScheduledProcedureStepStartTime, '143000');
      assert.equal(o.ReferringPhysicianName, 'RADIOLOGUE^ANNE');
      assert.equal((await patient('P2004'))!.identity?.status, 'qualified');
    });

    it('A47 changes a PatientID of the site, nothing else; to an identifier in use it is AE 205', async () => {
      assert.equal((await sendHl7(port, message(msh('ADT^A28^ADT_A05'), pid('P3001', { name: 'LEROY^PAUL^^^^^L' })))).code, 'AA');
      // An order of the patient, which must follow the new identifier.
      assert.equal((await sendHl7(port, message(msh('ORM^O01^ORM_O01'), pid('P3001', { name: 'LEROY^PAUL^^^^^L' }), 'ORC|NW|PLAC-31|FILL-31||SC',
        seg('OBR', { 1: '1', 2: 'PLAC-31', 3: 'FILL-31', 4: 'RX^Radio^LOCAL', 18: 'ACC-3101', 24: 'CR' })))).code, 'AA');
      const before = await patient('P3001');
      const ack = await sendHl7(port, message(msh('ADT^A47^ADT_A30'), pid('P3001-NEW', { name: 'LEROY^PAUL^^^^^L' }), 'MRG|P3001^^^CHUNORD^PI'));
      assert.equal(ack.code, 'AA', ack.text);
      assert.equal(await patient('P3001'), undefined);
      const after = await patient('P3001-NEW');
      assert.deepEqual(after, before);
      assert.equal((await orders().findByAccession(siteId, 'ACC-3101'))!.PatientID, 'P3001-NEW', 'the order follows the identifier');
      const clash = await sendHl7(port, message(msh('ADT^A47^ADT_A30'), pid('P1001'), 'MRG|P3001-NEW^^^CHUNORD^PI'));
      assert.equal(clash.code, 'AE');
      assert.equal(clash.errorCode, '205');
      const unknown = await sendHl7(port, message(msh('ADT^A47^ADT_A30'), pid('P3002'), 'MRG|NOBODY^^^CHUNORD^PI'));
      assert.equal(unknown.code, 'AE');
      assert.equal(unknown.errorCode, '204');
    });

    it('A40 moves the merged patient\'s studies to the surviving patient and records the merge; an unknown patient is AE 204', async () => {
      assert.equal((await sendHl7(port, message(msh('ADT^A28^ADT_A05'), pid('P4001', { name: 'MOREAU^JEAN^^^^^L' })))).code, 'AA');
      const { file, uids } = syntheticInstance({ PatientID: 'P4002', PatientName: 'MOREAU^JEAN' });
      const stored = await atrium.archive.ingestor.ingestInstance(Readable.from([file]), { site: atrium.archive.sites.get('CHU-NORD')!, via: 'import' });
      assert.ok(stored);
      const merged = await patient('P4002');
      assert.ok(merged, 'the image created the duplicate record');
      const ack = await sendHl7(port, message(msh('ADT^A40^ADT_A39'), pid('P4001', { name: 'MOREAU^JEAN^^^^^L' }), 'MRG|P4002^^^CHUNORD^PI'));
      assert.equal(ack.code, 'AA', ack.text);
      const left = await atrium.archive.index.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM studies WHERE patient_id = ?', [merged.id]);
      assert.equal(Number(left!.n), 0, 'the merged record keeps no study');
      const surviving = await patient('P4001');
      const study = await atrium.archive.index.sql.get<{ patient_id: number }>('SELECT patient_id FROM studies WHERE study_instance_uid = ?', [uids.study]);
      assert.equal(Number(study!.patient_id), surviving!.id);
      const change = await atrium.archive.index.sql.get<{ kind: string; studies_moved: number }>(
        'SELECT kind, studies_moved FROM patient_identity_changes WHERE previous_patient_id = ?', ['P4002']);
      assert.deepEqual({ ...change, studies_moved: Number(change!.studies_moved) }, { kind: 'merge', studies_moved: 1 });
      // The merge as QIDO-RS and C-FIND show it: the study is the surviving patient's.
      const qido = async (PatientID: string) => {
        const res = await fetch(`${atrium.dicomweb}/studies?PatientID=${PatientID}`, { headers: { authorization: `Bearer ${atrium.tokens['CHU-NORD']}` } });
        return res.status === 204 ? [] : ((await res.json()) as Array<Record<string, { Value: string[] }>>).map((r) => r['0020000D']!.Value[0]);
      };
      assert.deepEqual(await qido('P4001'), [uids.study]);
      assert.deepEqual(await qido('P4002'), []);
      // WADO-RS metadata names the surviving patient, though the stored object says P4002.
      const md = await fetch(`${atrium.dicomweb}/studies/${uids.study}/metadata`, { headers: { authorization: `Bearer ${atrium.tokens['CHU-NORD']}` } });
      const instances = (await md.json()) as Array<Record<string, { Value?: unknown[] }>>;
      assert.deepEqual(instances.map((i) => i['00100020']!.Value![0]), ['P4001']);
      // The modality sends the rest of the series under the old identifier: it joins the merged study.
      // This one is large (17 MiB: read from storage as a stream, not whole).
      const late = syntheticInstance({ PatientID: 'P4002', PatientName: 'MOREAU^JEAN', StudyInstanceUID: uids.study, SeriesInstanceUID: uids.series, Rows: 3000, Columns: 3000 });
      const lateStored = await atrium.archive.ingestor.ingestInstance(Readable.from([late.file]), { site: atrium.archive.sites.get('CHU-NORD')!, via: 'import' });
      assert.ok(lateStored.ok, JSON.stringify(lateStored));
      assert.deepEqual(await qido('P4001'), [uids.study]);
      assert.deepEqual(await qido('P4002'), []);
      // Every object goes out under the surviving patient, whole or streamed, as stored or
      // re-encoded; its pixel data as received.
      const token = atrium.tokens['CHU-NORD']!;
      for (const [name, obj] of [['small', uids], ['large', late.uids]] as const) {
        // Re-encoded: implicit VR is not offered over the web (PS3.18 8.7.3), so JPEG-LS lossless.
        for (const ts of ['*', '1.2.840.10008.1.2.4.80']) {
          const sent = await retrieveInstanceAsStored(atrium.dicomweb, token, obj, ts);
          const parsed = parsePart10(sent);
          const ctx = valueContextOf(parsed.dataset, parsed.littleEndian);
          assert.equal(stringValue(parsed.dataset, Tags.PatientID, ctx), 'P4001', `${name} object, transfer syntax ${ts}`);
          assert.equal(stringValue(parsed.dataset, Tags.PatientName, ctx), 'MOREAU^JEAN', `${name} object, transfer syntax ${ts}`);
          if (name === 'large' && ts === '*') {
            const px = parsed.dataset.get(Tags.PixelData)!.bulk!;
            const original = parsePart10(late.file).dataset.get(Tags.PixelData)!.bulk!;
            assert.ok(sent.subarray(px.offset, px.offset + px.length).equals(late.file.subarray(original.offset, original.offset + original.length)), `${name} pixel data, ${ts}`);
          }
        }
      }
      // Stored as received: the file still says P4002.
      const [kept] = await atrium.archive.retriever.findInstances({ StudyInstanceUID: late.uids.study, SOPInstanceUID: late.uids.sop });
      const asReceived = parsePart10(await atrium.archive.store.readWhole(kept!.blobKey));
      assert.equal(stringValue(asReceived.dataset, Tags.PatientID, valueContextOf(asReceived.dataset, asReceived.littleEndian)), 'P4002');
      if (haveDcmtk) {
        const find = await dcmtk('findscu', ['-S', '-v', '-aet', 'WS_NORD', '-aec', 'ATRIUM', '-k', 'QueryRetrieveLevel=STUDY', '-k', 'PatientID=P4001', '-k', 'StudyInstanceUID', '127.0.0.1', String(atrium.dimse!.port)]);
        assert.ok(find.output.includes(uids.study), find.output);
        const gone = await dcmtk('findscu', ['-S', '-v', '-aet', 'WS_NORD', '-aec', 'ATRIUM', '-k', 'QueryRetrieveLevel=STUDY', '-k', 'PatientID=P4002', '127.0.0.1', String(atrium.dimse!.port)]);
        assert.doesNotMatch(gone.output, /Pending/);
        // C-GET too: both objects arrive under the surviving patient.
        const out = mkdtempSync(path.join(tmpdir(), 'atrium-hl7-get-'));
        try {
          const get = await dcmtk('getscu', ['-S', '-aet', 'WS_NORD', '-aec', 'ATRIUM', '-od', out, '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${uids.study}`, '127.0.0.1', String(atrium.dimse!.port)]);
          assert.equal(get.code, 0, get.output);
          const received = readdirSync(out).map((f) => parsePart10(readFileSync(path.join(out, f))));
          assert.equal(received.length, 2);
          for (const r of received) assert.equal(stringValue(r.dataset, Tags.PatientID, valueContextOf(r.dataset, r.littleEndian)), 'P4001');
        } finally {
          rmSync(out, { recursive: true, force: true });
        }
      }
      const unknown = await sendHl7(port, message(msh('ADT^A40^ADT_A39'), pid('P4001'), 'MRG|P4999^^^CHUNORD^PI'));
      assert.equal(unknown.code, 'AE');
      assert.equal(unknown.errorCode, '204');
    });
  });
}
