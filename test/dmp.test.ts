/**
 * DMP publication end to end: documents made final (outbox events, as the documents module
 * appends them) are queued, sent by the DMP publisher through startWorkers to the DMP test
 * double over mutual TLS (the site's organisation certificate), with a signed VIHF and a
 * XAdES-signed submission; replaced with RPLC; unpublished with ITI-57; refusals and
 * timeouts kept with their code and retried with back-off; a patient without a qualified
 * INS, without a DMP or opposed to it gets nothing sent. GET /api/dmp/publications shows it
 * per site. Then the consumer side: ITI-18 FindDocuments and ITI-43 Retrieve.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { makeCertificates } from './support/rsyslog.ts';
import { DmpDouble, repositoryUniqueId } from './support/dmp-double.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { sha256Hex } from '../src/api/auth.ts';
import { startWorkers, type Workers } from '../src/cli/workers.ts';
import { appendEvent } from '../src/events/outbox.ts';
import { DmpClient, DmpRefusal, DmpUnavailable, type DmpCaller } from '../src/exchange/dmp/client.ts';
import { documentEvents, type DmpDocument, type DmpDocumentSource, type DocumentFinalEvent } from '../src/exchange/dmp/document.ts';
import { documentCodes, xds } from '../src/exchange/dmp/metadata.ts';
import type { Publication } from '../src/exchange/dmp/publications.ts';
import { INS_OIDS, insKeyOf, parseINS, type INS, type PatientIdentity } from '../src/patients/ins.ts';
import { MeteringConsumer, monthOf, type SiteUsage } from '../src/billing/metering.ts';
import { addUser } from '../src/cli/users.ts';
import { loginLocal, request } from './support/browser-session.ts';

const pki = mkdtempSync(path.join(tmpdir(), 'atrium-dmp-pki-'));
makeCertificates(pki, 'igc-sante-test', [{ name: 'dmp-server', usage: 'server' }, { name: 'chu-nord', usage: 'client' }, { name: 'clin-sud', usage: 'client' }]);
makeCertificates(path.join(pki, 'rogue'), 'rogue-ca', [{ name: 'rogue', usage: 'client' }]);
const file = (name: string) => readFileSync(path.join(pki, name), 'utf8');

/** A fictitious patient's INS (the NIR test OID): matricule, its key. */
function testINS(matricule: string): INS {
  return parseINS(matricule + insKeyOf(matricule), INS_OIDS.NIR_TEST);
}

const traits = { birthName: 'MARTIN', firstNames: ['JEANNE'], sex: 'F' as const, birthDate: { year: 1984, month: 7, day: 12 } };
const qualified = (ins: INS): PatientIdentity => ({ ins, status: 'qualified', traits });

const author = {
  id: '810000000001', family: 'RADIOLOGUE', given: 'Anne',
  role: { code: '10', scheme: '1.2.250.1.213.1.1.5.5', display: 'Médecin' },
  specialty: { code: 'G15_10/SM44', scheme: '1.2.250.1.213.1.1.5.5', display: 'Radio-diagnostic' },
};

let uidCounter = 0;
/** A final report as the documents module hands it over: a CR-IMG CDA (its XML) for a study. */
function report(identity: PatientIdentity | undefined, StudyInstanceUID: string, over: Partial<DmpDocument> = {}): DmpDocument {
  const n = ++uidCounter;
  const uniqueId = `1.2.250.1.999.1.${Date.now()}.${n}`;
  return {
    id: `cr-${n}`, kind: 'CR-IMG', uniqueId, mimeType: 'text/xml',
    content: Buffer.from(`<?xml version="1.0" encoding="UTF-8"?><ClinicalDocument xmlns="urn:hl7-org:v3"><id root="${uniqueId}"/><title>CR d'imagerie ${n}</title></ClinicalDocument>`),
    title: 'Compte rendu de scanner thoracique', creationTime: new Date('2026-12-01T10:00:00Z'), serviceStartTime: new Date('2026-12-01T09:30:00Z'),
    siteId: 0, patient: { PatientID: 'P-1', IssuerOfPatientID: 'CHUNORD', ...(identity ? { identity } : {}) },
    StudyInstanceUID, AccessionNumber: `ACC${n}`, order: { id: `ORD${n}`, issuerOid: '1.2.250.1.999.2' },
    modalities: ['CT'], regions: [{ code: 'ZBQK', scheme: '1.2.250.1.213.2.5', display: 'Thorax' }], author, ...over,
  };
}

function manifest(identity: PatientIdentity, StudyInstanceUID: string, over: Partial<DmpDocument> = {}): DmpDocument {
  const n = ++uidCounter;
  return {
    ...report(identity, StudyInstanceUID), id: `kos-${n}`, kind: 'KOS', uniqueId: `1.2.250.1.999.3.${Date.now()}.${n}`, mimeType: 'application/dicom',
    content: Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), randomBytes(64)]), title: 'Examen d\'imagerie (KOS)', ...over,
  };
}

for (const engine of testDatabases()) {
  describe(`DMP publication (${engine.name})`, () => {
    let atrium: RunningAtrium;
    let cleanup: () => Promise<void>;
    let workers: Workers;
    let dmp: DmpDouble;
    const documents = new Map<string, DmpDocument>();
    const changes: Array<{ documentId: string; state: string }> = [];
    const source: DmpDocumentSource = {
      documentFor: async (id) => documents.get(id),
      publicationChanged: async (documentId, state) => { changes.push({ documentId, state }); },
    };
    const sudToken = randomBytes(24).toString('base64url');
    let nord = 0;

    /** The document made final: the event its module appends in its transaction. */
    const makeFinal = async (doc: DmpDocument, replaces?: string, mode?: 'INDIRECTE_RENFORCEE') => {
      const d = { ...doc, siteId: doc.siteId || nord };
      documents.set(d.id, d);
      const event: DocumentFinalEvent = { documentId: d.id, siteId: d.siteId, StudyInstanceUID: d.StudyInstanceUID, ...(replaces ? { replaces } : {}), ...(mode ? { mode } : {}) };
      await atrium.archive.index.sql.transaction((tx) => appendEvent(tx, documentEvents.final, event));
      return d;
    };
    /** The queue takes the events, the publisher sends what is due (as their loops would, once). */
    const run = async (now?: Date) => {
      await workers.dmp!.queue.drain();
      await workers.dmp!.publisher.publishDue(now);
    };
    const listed = async (token: string, query = ''): Promise<Publication[]> => {
      const base = atrium.dicomweb.replace(/\/dicom-web$/, '');
      const r = await fetch(`${base}/api/dmp/publications${query}`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(r.status, 200, await r.clone().text());
      return ((await r.json()) as { publications: Publication[] }).publications;
    };
    const publicationOf = async (documentId: string, action: 'publish' | 'unpublish' = 'publish') =>
      (await listed(atrium.tokens['CHU-NORD']!)).find((p) => p.documentId === documentId && p.action === action);
    const caller = (cert = 'chu-nord'): DmpCaller => ({
      signer: { certificate: file(`${cert}.crt`), key: file(`${cert}.key`) }, structure: { id: '1590000001', name: 'CHU Nord' },
      sector: { code: 'SA01', scheme: '1.2.250.1.71.4.2.4', display: 'Etablissement public de santé' },
      subject: { id: author.id, name: 'Anne RADIOLOGUE', role: author.role }, mode: 'INDIRECTE_RENFORCEE',
    });
    const client = () => new DmpClient({ endpoint: dmp.endpoint, ca: file('igc-sante-test.crt'), timeoutMs: 10_000, software: { name: 'Atrium', version: 'test', approval: 'TEST' }, vihfIssuer: 'urn:atrium:test' });

    before(async () => {
      dmp = new DmpDouble({ cert: file('dmp-server.crt'), key: file('dmp-server.key'), ca: file('igc-sante-test.crt') });
      await dmp.start();
      const db = await engine.open();
      cleanup = db.cleanup;
      atrium = await startAtrium({
        index: db.config,
        configure: (c) => {
          c.apiClients.push({ name: 'ris-sud', tokenSha256: sha256Hex(sudToken), site: 'CLIN-SUD', territory: false });
          c.dmp.endpoint = dmp.endpoint;
          c.dmp.caFile = path.join(pki, 'igc-sante-test.crt');
          c.dmp.timeoutMs = 5_000; // ample on a loaded machine; the timeout test makes the double wait longer
          c.dmp.vihfIssuer = 'urn:atrium:test';
          c.dmp.retry = { baseDelayMs: 60_000, maxDelayMs: 600_000, maxAttempts: 3 };
          c.dmp.sites = [
            { site: 'CHU-NORD', certFile: path.join(pki, 'chu-nord.crt'), keyFile: path.join(pki, 'chu-nord.key'),
              sector: { code: 'SA01', scheme: '1.2.250.1.71.4.2.4', display: 'Etablissement public de santé' },
              practiceSetting: { code: 'ETABLISSEMENT', scheme: '1.2.250.1.213.1.1.4.9', display: 'Etablissement de santé' } },
          ];
        },
      });
      nord = atrium.archive.sites.get('CHU-NORD')!.id;
      // The node's DMP worker, built as `atrium serve` builds it, with the documents' source; driven by the test.
      workers = await startWorkers(atrium.archive, atrium.config, pino({ level: 'silent' }), { auditHostname: 'test', start: [], dmpDocuments: source });
      assert.ok(workers.dmp, 'DMP publication is built when dmp.endpoint is set');
    });

    after(async () => {
      await workers?.stop(500);
      await atrium?.close();
      await cleanup?.();
      await dmp?.stop();
    });

    it('publishes a final report and a KOS to the DMP over mutual TLS, signed, with their ebRIM codes, and lists them published for their site only', async () => {
      const ins = testINS('2840763220240');
      dmp.patients.set(ins.matricule + ins.key, { dmp: 'active' });
      const study = '1.2.826.0.1.3680043.10.999.1';
      const cr = await makeFinal(report(qualified(ins), study));
      const kos = await makeFinal(manifest(qualified(ins), study));
      await run();
      for (const d of [cr, kos]) {
        const p = await publicationOf(d.id);
        assert.equal(p?.state, 'published', JSON.stringify(p));
        assert.ok(p.entryUUID?.startsWith('urn:uuid:'));
        assert.equal(p.site, 'CHU-NORD');
      }
      const patientId = `${ins.matricule}${ins.key}^^^&${INS_OIDS.NIR_TEST}&ISO^NH`;
      const crEntry = dmp.entries.find((e) => e.uniqueId === cr.uniqueId)!;
      assert.equal(crEntry.patientId, patientId);
      assert.deepEqual([crEntry.classCode, crEntry.typeCode, crEntry.formatCode, crEntry.mimeType], ['10', '18748-4', 'urn:ihe:rad:CDA:ImagingReportStructuredHeadings:2013', 'text/xml']);
      assert.deepEqual(crEntry.content, cr.content);
      const kosEntry = dmp.entries.find((e) => e.uniqueId === kos.uniqueId)!;
      assert.deepEqual([kosEntry.classCode, kosEntry.typeCode, kosEntry.formatCode, kosEntry.mimeType], ['31', 'IMG-KOS', '1.2.840.10008.5.1.4.1.1.88.59', 'application/dicom']);
      assert.ok(kosEntry.referenceIds.includes(`${kos.AccessionNumber}^^^&1.2.250.1.999.2&ISO^urn:ihe:iti:xds:2013:accession`));
      assert.ok(kosEntry.referenceIds.includes(`${study}^^^&1.2.840.10008&ISO^urn:ihe:iti:xds:2016:studyInstanceUID`));
      assert.ok(kosEntry.referenceIds.some((r) => r.endsWith('^urn:ihe:iti:xds:2013:order')));
      assert.deepEqual(kosEntry.eventCodes, ['CT', 'ZBQK']);
      // Each submission carried its signature document, checked by the double.
      assert.equal(dmp.entries.filter((e) => e.formatCode === documentCodes.signature.formatCode.code).length, 2);
      // A machine publication: the VIHF's mode is INDIRECTE, its subject the author; TD0.2 came first.
      const sent = dmp.requests.filter((r) => r.outcome === 'ok');
      assert.deepEqual(sent.map((r) => r.path), ['/patients', '/repository', '/patients', '/repository']);
      assert.ok(sent.every((r) => r.mode === 'INDIRECTE' && r.subject === author.id));
      assert.deepEqual(changes.filter((c) => c.documentId === cr.id), [{ documentId: cr.id, state: 'published' }]);
      // Another site's client sees none of it; by study, the site's own see both.
      assert.deepEqual(await listed(sudToken), []);
      assert.deepEqual(await listed(sudToken, '?site=CHU-NORD'), []);
      assert.equal((await listed(atrium.tokens['CHU-NORD']!, '?site=CHU-NORD')).length, 2);
      assert.deepEqual(await listed(atrium.tokens['CHU-NORD']!, '?site=CLIN-SUD'), []);
      assert.equal((await listed(atrium.tokens['CHU-NORD']!, `?StudyInstanceUID=${study}`)).length, 2);
      // Draining again publishes nothing twice.
      const before = dmp.entries.length;
      await run();
      assert.equal(dmp.entries.length, before);
      // Each document accepted is a DMP publication metered for the site's invoice (docs/billing.md).
      await new MeteringConsumer(atrium.archive, 'Europe/Paris', pino({ level: 'silent' })).drain();
      const password = 'un mot de passe assez long pour les tests';
      await addUser(atrium.archive, { login: 'operator', displayName: 'Exploitant', roles: ['territory-admin'], sites: [], password }, { actor: 'test', via: 'cli' });
      const base = atrium.dicomweb.replace(/\/dicom-web$/, '');
      const operator = await loginLocal(base, 'operator', password);
      const r = await request(operator.jar, `${base}/api/billing/usage?month=${monthOf(new Date(), 'Europe/Paris')}`);
      assert.equal(r.status, 200);
      const { usage } = (await r.json()) as { usage: SiteUsage[] };
      assert.deepEqual(usage.map((u) => [u.site, u.dmpPublications]), [['CHU-NORD', 2], ['CLIN-SUD', 0]]);
    });

    it('replaces the DMP entry of a superseded report with an RPLC association: the previous entry is deprecated', async () => {
      const ins = testINS('1750299123456');
      dmp.patients.set(ins.matricule + ins.key, { dmp: 'active' });
      const study = '1.2.826.0.1.3680043.10.999.2';
      const first = await makeFinal(report(qualified(ins), study));
      await run();
      const firstEntry = (await publicationOf(first.id))!.entryUUID!;
      const corrected = await makeFinal(report(qualified(ins), study), first.id);
      await run();
      const p = (await publicationOf(corrected.id))!;
      assert.equal(p.state, 'published');
      assert.equal(p.replacesDocumentId, first.id);
      assert.equal((await publicationOf(first.id))!.state, 'replaced');
      assert.equal(dmp.entries.find((e) => e.entryUUID === firstEntry)!.status, xds.deprecated);
      assert.equal(dmp.entries.find((e) => e.entryUUID === p.entryUUID)!.status, xds.approved);

      // The study moved to another patient: its new version cannot replace across patients; the
      // old entry leaves the first patient's DMP, the new one is published in the other's.
      const other = testINS('2840763220240');
      const moved = await makeFinal(report(qualified(other), study), corrected.id);
      await run();
      const m = (await publicationOf(moved.id))!;
      assert.equal(m.state, 'published', JSON.stringify(m));
      assert.equal(dmp.entries.find((e) => e.entryUUID === p.entryUUID)!.status, xds.deleted);
      assert.equal((await publicationOf(corrected.id))!.state, 'unpublished');
      assert.equal(dmp.entries.find((e) => e.entryUUID === m.entryUUID)!.patientId, `${other.matricule}${other.key}^^^&${INS_OIDS.NIR_TEST}&ISO^NH`);
    });

    it('holds a replacement until the document it replaces is published, without counting it as an attempt, then replaces it', async () => {
      const ins = testINS('2840763220240');
      const study = '1.2.826.0.1.3680043.10.999.10';
      const first = await makeFinal(report(qualified(ins), study));
      const corrected = await makeFinal(report(qualified(ins), study), first.id);
      dmp.failNext = { path: '/repository', count: 1, fault: { code: 'soap:Receiver', subcode: 'XDSRepositoryBusy', reason: 'occupé' } };
      await run();
      const waiting = (await publicationOf(corrected.id))!;
      assert.deepEqual([waiting.state, waiting.attempts, waiting.error?.code], ['pending', 0, 'waiting']);
      await run(new Date(Date.now() + 600_000));
      const p = (await publicationOf(corrected.id))!;
      assert.deepEqual([p.state, p.attempts], ['published', 1]);
      assert.equal((await publicationOf(first.id))!.state, 'replaced');
      assert.equal(dmp.entries.find((e) => e.uniqueId === first.uniqueId)!.status, xds.deprecated);
    });

    it('unpublishes with ITI-57 (status Deleted) a withdrawn manifest and every document of a study whose images are all gone', async () => {
      const ins = testINS('2840763220240');
      const kos = await makeFinal(manifest(qualified(ins), '1.2.826.0.1.3680043.10.999.3'));
      await run();
      const entry = (await publicationOf(kos.id))!.entryUUID!;
      await atrium.archive.index.sql.transaction((tx) => appendEvent(tx, documentEvents.withdrawn, { documentId: kos.id }));
      await run();
      assert.equal((await publicationOf(kos.id, 'unpublish'))!.state, 'unpublished');
      assert.equal((await publicationOf(kos.id))!.state, 'unpublished');
      assert.equal(dmp.entries.find((e) => e.entryUUID === entry)!.status, xds.deleted);

      // A study stored, its report published, its only image rejected: the study is gone, so is the report from the DMP.
      const image = syntheticInstance({ PatientID: 'P-9', Rows: 2, Columns: 2 });
      assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, [image.file])).status, 200);
      const cr = await makeFinal(report(qualified(ins), image.uids.study));
      await run();
      const crEntry = (await publicationOf(cr.id))!.entryUUID!;
      const base = atrium.dicomweb.replace(/\/dicom-web$/, '');
      const rejected = await fetch(`${base}/api/corrections/reject`, {
        method: 'POST', headers: { authorization: `Bearer ${atrium.tokens['CHU-NORD']}`, 'content-type': 'application/json' },
        body: JSON.stringify({ SOPInstanceUID: image.uids.sop, reason: 'mauvais patient' }),
      });
      assert.equal(rejected.status, 201, await rejected.text());
      await run();
      assert.equal((await publicationOf(cr.id, 'unpublish'))!.state, 'unpublished');
      assert.equal(dmp.entries.find((e) => e.entryUUID === crEntry)!.status, xds.deleted);
    });

    it('keeps a publication queued when the DMP does not answer in time, retries it with a doubling delay, then publishes it', async () => {
      const ins = testINS('2840763220240');
      const cr = await makeFinal(report(qualified(ins), '1.2.826.0.1.3680043.10.999.4'));
      dmp.delayMs = 20_000;
      try {
        await run();
      } finally {
        dmp.delayMs = 0;
      }
      let p = (await publicationOf(cr.id))!;
      assert.equal(p.state, 'pending');
      assert.equal(p.attempts, 1);
      assert.equal(p.error?.code, 'unavailable');
      assert.match(p.error!.message, /did not answer within 5000 ms/);
      const first = Date.parse(p.nextAttemptAt!);
      assert.ok(first > Date.now() + 50_000, 'the next attempt waits the base delay');
      // Not due yet: nothing is sent.
      await run();
      assert.equal((await publicationOf(cr.id))!.attempts, 1);
      // A busy registry (a receiver fault) is retried too, after twice the delay.
      dmp.failNext = { path: '/repository', count: 1, fault: { code: 'soap:Receiver', subcode: 'XDSRegistryBusy', reason: 'registre occupé' } };
      await run(new Date(first + 1));
      p = (await publicationOf(cr.id))!;
      assert.deepEqual([p.state, p.attempts, p.error?.code], ['pending', 2, 'XDSRegistryBusy']);
      assert.ok(Date.parse(p.nextAttemptAt!) - Date.now() > 100_000, 'the delay doubled');
      await run(new Date(Date.parse(p.nextAttemptAt!) + 1));
      p = (await publicationOf(cr.id))!;
      assert.deepEqual([p.state, p.attempts, p.error], ['published', 3, undefined]);
    });

    it('shows a DMP refusal with its code and leaves it refused, never retried silently', async () => {
      const ins = testINS('2840763220240');
      const original = await makeFinal(report(qualified(ins), '1.2.826.0.1.3680043.10.999.5'));
      await run();
      // Another document claiming the same uniqueId: the registry refuses it.
      const duplicate = await makeFinal({ ...report(qualified(ins), '1.2.826.0.1.3680043.10.999.5'), uniqueId: original.uniqueId });
      await run();
      const p = (await publicationOf(duplicate.id))!;
      assert.equal(p.state, 'refused');
      assert.equal(p.error?.code, 'XDSDuplicateUniqueIdInRegistry');
      assert.equal(p.nextAttemptAt, undefined);
      const calls = dmp.requests.length;
      await run(new Date(Date.now() + 86_400_000));
      assert.equal(dmp.requests.length, calls, 'a refusal is not sent again');
      assert.ok(changes.some((c) => c.documentId === duplicate.id && c.state === 'refused'));

      // A SOAP fault of the sender's kind is a refusal too, with its subcode.
      dmp.failNext = { path: '/repository', count: 1, fault: { code: 'soap:Sender', subcode: 'wsse:InvalidSecurityToken', reason: 'jeton refusé' } };
      const faulted = await makeFinal(report(qualified(ins), '1.2.826.0.1.3680043.10.999.5'));
      await run();
      const f = (await publicationOf(faulted.id))!;
      assert.deepEqual([f.state, f.error?.code], ['refused', 'InvalidSecurityToken']);
      assert.match(f.error!.message, /jeton refusé/);
    });

    it('gives up after dmp.retry.maxAttempts attempts, marked failed with the last code', async () => {
      const ins = testINS('2840763220240');
      const cr = await makeFinal(report(qualified(ins), '1.2.826.0.1.3680043.10.999.9'));
      dmp.failNext = { path: '/repository', count: 3, fault: { code: 'soap:Receiver', subcode: 'XDSRepositoryBusy', reason: 'occupé' } };
      let now = new Date();
      for (let i = 0; i < 3; i++) {
        await run(now);
        const p = (await publicationOf(cr.id))!;
        assert.equal(p.attempts, i + 1);
        if (p.nextAttemptAt) now = new Date(Date.parse(p.nextAttemptAt) + 1);
      }
      const p = (await publicationOf(cr.id))!;
      assert.deepEqual([p.state, p.attempts, p.error?.code, p.nextAttemptAt], ['failed', 3, 'XDSRepositoryBusy', undefined]);
      assert.ok(!dmp.entries.some((e) => e.uniqueId === cr.uniqueId));
    });

    it('publishes in mode INDIRECTE_RENFORCEE when a professional logged in with Pro Santé Connect made the document final', async () => {
      const ins = testINS('2840763220240');
      const cr = await makeFinal(report(qualified(ins), '1.2.826.0.1.3680043.10.999.8'), undefined, 'INDIRECTE_RENFORCEE');
      await run();
      assert.equal((await publicationOf(cr.id))!.state, 'published');
      const calls = dmp.requests.slice(-2);
      assert.deepEqual(calls.map((r) => [r.path, r.mode, r.subject]), [['/patients', 'INDIRECTE_RENFORCEE', author.id], ['/repository', 'INDIRECTE_RENFORCEE', author.id]]);
    });

    it('sends nothing for a patient whose identity is not qualified, and says so', async () => {
      const ins = testINS('2840763220240');
      const calls = dmp.requests.length;
      const provisional = await makeFinal(report({ ins, status: 'validated', traits }, '1.2.826.0.1.3680043.10.999.6'));
      const none = await makeFinal(report(undefined, '1.2.826.0.1.3680043.10.999.6'));
      await run();
      for (const d of [provisional, none]) {
        const p = (await publicationOf(d.id))!;
        assert.deepEqual([p.state, p.error?.code], ['no-ins', 'no-qualified-ins']);
      }
      assert.equal(dmp.requests.length, calls, 'not even the existence test: the INS never left');
    });

    it('records and respects a patient\'s opposition, and a patient without a DMP: nothing is published', async () => {
      const opposed = testINS('1920275123009');
      dmp.patients.set(opposed.matricule + opposed.key, { dmp: 'active', opposition: true });
      const absent = testINS('2010175123011');
      const closed = testINS('1550599123007');
      dmp.patients.set(closed.matricule + closed.key, { dmp: 'closed' });
      const entries = dmp.entries.length;
      const a = await makeFinal(report(qualified(opposed), '1.2.826.0.1.3680043.10.999.7'));
      const b = await makeFinal(report(qualified(absent), '1.2.826.0.1.3680043.10.999.7'));
      const c = await makeFinal(report(qualified(closed), '1.2.826.0.1.3680043.10.999.7'));
      await run();
      assert.deepEqual([(await publicationOf(a.id))!.state, (await publicationOf(a.id))!.error?.code], ['opposed', 'patient-opposition']);
      assert.deepEqual([(await publicationOf(b.id))!.state, (await publicationOf(b.id))!.error?.code], ['no-dmp', 'dmp-absent']);
      assert.deepEqual([(await publicationOf(c.id))!.state, (await publicationOf(c.id))!.error?.code], ['no-dmp', 'dmp-closed']);
      assert.equal(dmp.entries.length, entries);
      const recorded = await atrium.archive.index.sql.all<{ ins: string }>('SELECT ins FROM dmp_oppositions');
      assert.deepEqual(recorded.map((r) => r.ins), [opposed.matricule + opposed.key]);
      const audit = await atrium.archive.index.sql.get<{ n: number }>(`SELECT COUNT(*) AS n FROM audit_events WHERE action = 'export' AND outcome = 'refused' AND details LIKE '%opposed%'`);
      assert.ok(Number(audit!.n) >= 1, 'the opposition is in the audit trail');
    });

    it('finds a patient\'s documents by INS with filters (ITI-18) and retrieves them byte for byte (ITI-43), as a consumer with a logged-in professional', async () => {
      const ins = testINS('2840763220240');
      const all = await client().findDocuments(caller(), ins);
      assert.ok(all.length >= 3);
      assert.ok(all.every((d) => d.status === xds.approved));
      const manifests = await client().findDocuments(caller(), ins, { typeCodes: [documentCodes.KOS.typeCode] });
      assert.ok(manifests.length >= 1 && manifests.every((d) => d.typeCode === 'IMG-KOS' && d.mimeType === 'application/dicom'));
      const deleted = await client().findDocuments(caller(), ins, { statuses: [xds.deleted] });
      assert.ok(deleted.length >= 1);
      const wanted = all.find((d) => d.formatCode === documentCodes['CR-IMG'].formatCode.code)!;
      const [got] = await client().retrieveDocuments(caller(), ins, [{ repositoryUniqueId: wanted.repositoryUniqueId!, documentUniqueId: wanted.uniqueId }]);
      assert.deepEqual(got!.content, dmp.entries.find((e) => e.uniqueId === wanted.uniqueId)!.content);
      assert.equal(got!.mimeType, 'text/xml');
      assert.equal(dmp.requests.at(-1)!.mode, 'INDIRECTE_RENFORCEE');
      await assert.rejects(client().retrieveDocuments(caller(), ins, [{ repositoryUniqueId, documentUniqueId: '1.2.3.404' }]),
        (e: unknown) => e instanceof DmpRefusal && e.code === 'XDSDocumentUniqueIdError');
    });

    it('is refused by the DMP with a certificate of another authority, or a VIHF signed by another certificate than the TLS client\'s', async () => {
      const ins = testINS('2840763220240');
      const rogue: DmpCaller = { ...caller(), signer: { certificate: readFileSync(path.join(pki, 'rogue', 'rogue.crt'), 'utf8'), key: readFileSync(path.join(pki, 'rogue', 'rogue.key'), 'utf8') } };
      await assert.rejects(client().findDocuments(rogue, ins), (e: unknown) => e instanceof DmpUnavailable);
      // The TLS certificate is the site's, the VIHF is signed by another site's: the DMP says FailedAuthentication.
      const mixed = new DmpClient({ endpoint: dmp.endpoint, ca: file('igc-sante-test.crt'), timeoutMs: 10_000, software: { name: 'Atrium', version: 'test', approval: 'TEST' }, vihfIssuer: 'urn:atrium:test' });
      const tls = caller('chu-nord').signer;
      const signerOfVihf = caller('clin-sud').signer;
      // The client signs its VIHF with the caller's signer and authenticates TLS with it: swap after signing by calling with a proxy signer.
      const post = (mixed as unknown as { post: (u: string, t: string, b: Buffer, s: typeof tls) => Promise<unknown> }).post.bind(mixed);
      (mixed as unknown as { post: typeof post }).post = (u, t, b) => post(u, t, b, tls);
      await assert.rejects(mixed.findDocuments({ ...caller(), signer: signerOfVihf }, ins), (e: unknown) => e instanceof DmpRefusal && e.code === 'FailedAuthentication');
    });
  });
}

after(() => rmSync(pki, { recursive: true, force: true }));
