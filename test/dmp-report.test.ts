/**
 * From a signed report to the DMP, through the public interfaces: a radiologist signs a
 * teleradiology report final (HTTP); the study's documents are built (the CR-IMG CDA and the
 * KOS manifest, src/exchange/study-documents.ts); the DMP worker sends them to the DMP test
 * double over mutual TLS, which checks them as the DMP does; an addendum makes a new CR-IMG
 * that replaces the first in the DMP (RPLC). GET /api/dmp/publications and the documents'
 * publication status tell where each stands.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { loginLocal, request, type CookieJar } from './support/browser-session.ts';
import { makeCertificates } from './support/rsyslog.ts';
import { DmpDouble } from './support/dmp-double.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { addUser } from '../src/cli/users.ts';
import { startWorkers, type Workers } from '../src/cli/workers.ts';
import { documentCodes, xds } from '../src/exchange/dmp/metadata.ts';
import type { Publication } from '../src/exchange/dmp/publications.ts';
import { INS_OIDS, insKeyOf, parseINS } from '../src/patients/ins.ts';
import { insOtherPatientIDsItem } from '../src/patients/ins-dicom.ts';

const password = 'un mot de passe assez long pour les tests';
const pki = mkdtempSync(path.join(tmpdir(), 'atrium-dmp-report-'));
makeCertificates(pki, 'igc', [{ name: 'server', usage: 'server' }, { name: 'clin-sud', usage: 'client' }]);
const file = (name: string) => readFileSync(path.join(pki, name), 'utf8');
const ins = (() => {
  const m = '2800175123456';
  return parseINS(m + insKeyOf(m), INS_OIDS.NIR_TEST);
})();

for (const engine of testDatabases()) {
  describe(`a signed report published in the DMP (${engine.name})`, () => {
    let atrium: RunningAtrium;
    let workers: Workers;
    let dmp: DmpDouble;
    let cleanup: () => Promise<void>;
    let base: string;
    let requestId: number;
    const sessions: Record<string, { jar: CookieJar; csrf: string }> = {};
    const knee = syntheticInstance({
      PatientID: 'DMP-1', PatientName: 'DUBOIS^Anne', PatientBirthDate: '19800101', PatientSex: 'F', Modality: 'CT', Rows: 4, Columns: 4,
      extra: [{ tag: 0x00101002, vr: 'SQ', items: [insOtherPatientIDsItem(ins)] }],
    });
    const call = async (who: string, method: string, url: string, body?: unknown) => {
      const r = await request(sessions[who]!.jar, `${base}${url}`, {
        method, headers: { 'x-csrf-token': sessions[who]!.csrf, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const t = await r.text();
      assert.ok(r.status < 300, `${method} ${url}: ${r.status} ${t}`);
      return JSON.parse(t) as Record<string, unknown>;
    };
    /** What the workers' loops do, once: build what is due, queue what was made final, send. */
    const run = async () => {
      await workers.studyDocuments.builder.buildDue();
      await workers.dmp!.queue.drain();
      await workers.dmp!.publisher.publishDue();
    };
    const publications = async () => (await call('admin.sud', 'GET', `/api/dmp/publications?StudyInstanceUID=${knee.uids.study}`)).publications as Publication[];

    before(async () => {
      dmp = new DmpDouble({ cert: file('server.crt'), key: file('server.key'), ca: file('igc.crt') });
      await dmp.start();
      dmp.patients.set(ins.matricule + ins.key, { dmp: 'active' });
      const db = await engine.open();
      cleanup = db.cleanup;
      atrium = await startAtrium({
        index: db.config,
        configure: (c) => {
          c.dmp.endpoint = dmp.endpoint;
          c.dmp.caFile = path.join(pki, 'igc.crt');
          c.dmp.sites = [{
            site: 'CLIN-SUD', certFile: path.join(pki, 'clin-sud.crt'), keyFile: path.join(pki, 'clin-sud.key'),
            sector: { code: 'SA07', scheme: '1.2.250.1.71.4.2.4', display: 'Cabinet individuel' },
            practiceSetting: { code: 'AMBULATOIRE', scheme: '1.2.250.1.213.1.1.4.9', display: 'Ambulatoire' },
          }];
        },
      });
      base = atrium.dicomweb.replace(/\/dicom-web$/, '');
      workers = await startWorkers(atrium.archive, atrium.config, pino({ level: 'silent' }), { auditHostname: 'test', start: [] });
      assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CLIN-SUD']!, [knee.file])).status, 200);
      await atrium.identities.drain();
      const by = { actor: 'test', via: 'cli' as const };
      await addUser(atrium.archive, { login: 'manip.sud', displayName: 'Manipulateur Sud', roles: ['technologist'], sites: ['CLIN-SUD'], password }, by);
      await addUser(atrium.archive, { login: 'admin.sud', displayName: 'Admin Sud', roles: ['site-admin'], sites: ['CLIN-SUD'], password }, by);
      await addUser(atrium.archive, { login: 'rad.a', displayName: 'LECTEUR^Anne', roles: ['radiologist'], sites: ['CHU-NORD'], rpps: '10001234567', password }, by);
      for (const who of ['manip.sud', 'admin.sud', 'rad.a']) sessions[who] = await loginLocal(base, who, password);
      const created = await call('manip.sud', 'POST', '/api/teleradiology/requests', {
        patient: { PatientID: 'DMP-1' }, StudyInstanceUID: knee.uids.study, AccessionNumber: 'ACC-16', urgency: 'urgent', modality: 'CT', bodyPart: 'KNEE', specialty: 'msk',
        clinicalContext: 'Chute à ski', clinicalQuestion: 'Fracture du plateau tibial ?', requestingPhysician: { name: 'URGENTISTE^Paul', rpps: '10009999999' },
        proposedProtocol: 'Scanner du genou sans injection',
      });
      requestId = created.id as number;
      await call('rad.a', 'POST', `/api/teleradiology/requests/${requestId}/protocol`, { decision: 'validated' });
      await call('rad.a', 'POST', `/api/teleradiology/requests/${requestId}/claim`);
      await call('rad.a', 'PUT', `/api/teleradiology/requests/${requestId}/report`, { findings: 'Pas de trait de fracture.', conclusion: 'Pas de fracture' });
    });

    after(async () => {
      await workers?.stop(500);
      await atrium?.close();
      await cleanup?.();
      await dmp?.stop();
    });

    it('publishes the CR-IMG and the KOS of a report signed final, as the DMP checks them, and shows them published', async () => {
      assert.deepEqual(await publications(), []);
      await call('rad.a', 'POST', `/api/teleradiology/requests/${requestId}/report/sign`, {});
      await run();
      const listed = await publications();
      assert.deepEqual(listed.map((p) => [p.kind, p.state, p.site]).sort(), [['CR-IMG', 'published', 'CLIN-SUD'], ['KOS', 'published', 'CLIN-SUD']], JSON.stringify(listed));
      const patientId = `${ins.matricule}${ins.key}^^^&${INS_OIDS.NIR_TEST}&ISO^NH`;
      const cr = dmp.entries.find((e) => e.typeCode === documentCodes['CR-IMG'].typeCode.code)!;
      assert.equal(cr.patientId, patientId);
      assert.equal(cr.formatCode, documentCodes['CR-IMG'].formatCode.code);
      assert.match(cr.content.toString('utf8'), /<ClinicalDocument/);
      const kos = dmp.entries.find((e) => e.typeCode === documentCodes.KOS.typeCode.code)!;
      assert.ok(kos.referenceIds.some((r) => r.startsWith(`${knee.uids.study}^^^&`) && r.endsWith(xds.studyInstanceUID)));
      assert.ok(kos.referenceIds.some((r) => r.startsWith('ACC-16^^^&') && r.endsWith(xds.accession)));
      assert.ok(kos.eventCodes.includes('CT'));
      // The documents module was told: each document's publication status says published.
      const docs = (await call('manip.sud', 'GET', `/api/studies/${knee.uids.study}/documents`)).documents as Array<{ publicationStatus: string; current: boolean }>;
      assert.deepEqual(docs.filter((d) => d.current).map((d) => d.publicationStatus), ['published', 'published']);
    });

    it('replaces the report\'s DMP entry when an addendum makes a new version of the CR-IMG', async () => {
      const first = dmp.entries.find((e) => e.typeCode === documentCodes['CR-IMG'].typeCode.code && e.status === xds.approved)!;
      await call('rad.a', 'POST', `/api/teleradiology/requests/${requestId}/report/addenda`, { text: 'Fissure du plateau tibial externe visible en reconstruction.' });
      await run();
      const crs = (await publications()).filter((p) => p.kind === 'CR-IMG');
      assert.deepEqual(crs.map((p) => p.state).sort(), ['published', 'replaced'], JSON.stringify(crs));
      assert.equal(first.status, xds.deprecated);
      const second = dmp.entries.filter((e) => e.typeCode === documentCodes['CR-IMG'].typeCode.code && e.status === xds.approved);
      assert.equal(second.length, 1);
      assert.notEqual(second[0]!.uniqueId, first.uniqueId);
    });
  });
}

after(() => rmSync(pki, { recursive: true, force: true }));
