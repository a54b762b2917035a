/**
 * INSi from the identity reviews: the identitovigilance team checks a review's patient record
 * against INSi (a double of the CNAM's service answering like its test base, over mutual TLS
 * with the site's organisation certificate). Found: the INS and traits are INSi's, and the
 * identity is qualified only with a proof of identity recorded; several: nothing qualified, a
 * review opened; none: nothing changes; a malformed answer: nothing changes, 502. Every call
 * is in the audit trail.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { loginLocal, request, type CookieJar } from './support/browser-session.ts';
import { InsiDouble } from './support/insi-double.ts';
import { makeCertificates } from './support/rsyslog.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { addUser } from '../src/cli/users.ts';
import { openReview } from '../src/patients/identities.ts';

const password = 'un mot de passe assez long pour les tests';

for (const engine of testDatabases()) {
  describe(`INSi from the identity reviews (${engine.name})`, () => {
    let atrium: RunningAtrium;
    let base: string;
    let cleanup: () => Promise<void>;
    let session: { jar: CookieJar; csrf: string };
    const pki = mkdtempSync(path.join(tmpdir(), 'atrium-insi-'));
    makeCertificates(pki, 'cnam-ca', [{ name: 'insi', usage: 'server' }, { name: 'chu-nord', usage: 'client' }]);
    const file = (name: string) => readFileSync(path.join(pki, name));
    const insi = new InsiDouble({ cert: file('insi.crt'), key: file('insi.key'), ca: file('cnam-ca.crt') });
    insi.identities.push({ matricule: '2790351215189', key: '89', oid: '1.2.250.1.213.1.4.10', birthName: 'PAT-TROIS', firstNames: ['DOMINIQUE', 'MARIE'], sex: 'F', birthDate: '19790328', birthPlace: '63220' });
    insi.homonyms.add('HOMONYME');
    insi.malformed.add('MALFORME');
    insi.failing.add('PANNE');

    /** A patient record of CHU-NORD (from an image) and an open review of it. */
    const reviewOf = async (PatientID: string, PatientName: string, PatientSex: string, PatientBirthDate: string) => {
      const object = syntheticInstance({ PatientID, PatientName, PatientSex, PatientBirthDate, Rows: 2, Columns: 2 });
      assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, [object.file])).status, 200);
      const nord = atrium.archive.sites.get('CHU-NORD')!;
      const patientId = (await atrium.archive.index.patientRecordId(nord.id, nord.issuerOfPatientID, PatientID))!;
      await atrium.archive.index.sql.transaction((tx) => openReview(tx, 'ins-invalid', patientId, null, 'INS absent ou invalide'));
      const review = (await atrium.archive.index.sql.get<{ id: number }>(`SELECT MAX(id) AS id FROM identity_reviews WHERE patient_id = ?`, [patientId]))!;
      return { patientId, review: Number(review.id) };
    };
    const check = (review: number, body: unknown = {}) => request(session.jar, `${base}/api/identity-reviews/${review}/insi`, {
      method: 'POST', headers: { 'x-csrf-token': session.csrf, 'content-type': 'application/json' }, body: JSON.stringify(body),
    });
    const identityOf = async (patientId: number) => atrium.archive.index.sql.get<{ ins: string | null; ins_oid: string | null; status: string; birth_name: string | null; first_names: string | null; birth_place: string | null }>(
      'SELECT ins, ins_oid, status, birth_name, first_names, birth_place FROM patient_identities WHERE patient_id = ?', [patientId]);
    const insiAudit = async () => (await atrium.archive.index.sql.all<{ outcome: string; details: string }>(
      `SELECT outcome, details FROM audit_events WHERE action = 'identity-review' ORDER BY id`)).filter((e) => e.details.includes('"insi"'))
      .map((e) => ({ outcome: e.outcome, ...(JSON.parse(e.details) as { insi: string; review: number; status?: string }) }));

    before(async () => {
      const endpoint = await insi.listen();
      const db = await engine.open();
      cleanup = db.cleanup;
      atrium = await startAtrium({
        index: db.config,
        configure: (c) => {
          c.insi = {
            endpoint, caFile: path.join(pki, 'cnam-ca.crt'), timeoutMs: 5_000, software: { name: 'Atrium', version: '0.1.0', approval: 'TEST-IDAM' },
            sites: [{ site: 'CHU-NORD', certFile: path.join(pki, 'chu-nord.crt'), keyFile: path.join(pki, 'chu-nord.key') }],
          };
        },
      });
      base = atrium.dicomweb.replace(/\/dicom-web$/, '');
      await addUser(atrium.archive, { login: 'iv.nord', displayName: 'Cellule identitovigilance Nord', roles: ['site-admin'], sites: ['CHU-NORD'], password }, { actor: 'test', via: 'cli' });
      session = await loginLocal(base, 'iv.nord', password);
    });

    after(async () => {
      await atrium?.close();
      await insi.close();
      await cleanup?.();
      rmSync(pki, { recursive: true, force: true });
    });

    it('recovers the INS INSi finds and qualifies the identity only once a proof of identity is recorded', async () => {
      const { patientId, review } = await reviewOf('IV-1', 'PAT-TROIS^DOMINIQUE', 'F', '19790328');
      const first = await check(review);
      assert.equal(first.status, 200, await first.clone().text());
      assert.deepEqual(await first.json(), { id: review, outcome: 'found', status: 'recovered', mode: 'search', reviews: [] });
      assert.deepEqual(await identityOf(patientId), { ins: '279035121518989', ins_oid: '1.2.250.1.213.1.4.10', status: 'recovered', birth_name: 'PAT-TROIS', first_names: 'DOMINIQUE MARIE', birth_place: '63220' });
      // The call went with the site's organisation certificate and the record's traits.
      assert.deepEqual(insi.calls.at(-1), { birthName: 'PAT-TROIS', firstName: 'DOMINIQUE', sex: 'F', birthDate: '1979-03-28', clientCertificate: 'chu-nord' });
      // Verified again with a passport seen: qualified.
      const second = await check(review, { proofOfIdentity: 'passport' });
      assert.deepEqual(await second.json(), { id: review, outcome: 'found', status: 'qualified', mode: 'verify', reviews: [] });
      assert.equal((await identityOf(patientId))!.status, 'qualified');
      const proofs = await atrium.archive.index.sql.all<{ kind: string; recorded_by: string }>('SELECT kind, recorded_by FROM identity_proofs WHERE patient_id = ?', [patientId]);
      assert.deepEqual(proofs, [{ kind: 'passport', recorded_by: 'iv.nord' }]);
      assert.deepEqual((await insiAudit()).slice(-2).map((e) => [e.outcome, e.insi, e.status]), [['success', 'found', 'recovered'], ['success', 'found', 'qualified']]);
    });

    it('qualifies nothing and opens a review when INSi answers several identities', async () => {
      const { patientId, review } = await reviewOf('IV-2', 'HOMONYME^CLAUDE', 'M', '19600101');
      const r = await check(review, { proofOfIdentity: 'identity-card' });
      assert.deepEqual(await r.json(), { id: review, outcome: 'several', status: 'provisional', mode: 'search', reviews: ['insi-several'] });
      assert.equal(await identityOf(patientId).then((i) => i?.status ?? 'provisional'), 'provisional');
      const opened = await atrium.archive.index.sql.all<{ kind: string }>(`SELECT kind FROM identity_reviews WHERE patient_id = ? AND state = 'open' ORDER BY id`, [patientId]);
      assert.deepEqual(opened.map((o) => o.kind), ['ins-invalid', 'insi-several']);
      const listed = await (await request(session.jar, `${base}/api/identity-reviews`)).json() as { reviews: Array<{ kind: string; record: { PatientID: string } }> };
      assert.ok(listed.reviews.some((x) => x.kind === 'insi-several' && x.record.PatientID === 'IV-2'));
      assert.equal((await atrium.archive.index.sql.all('SELECT id FROM identity_proofs WHERE patient_id = ?', [patientId])).length, 0, 'no proof kept for an identity nobody recovered');
    });

    it('changes nothing when INSi finds no identity', async () => {
      const { patientId, review } = await reviewOf('IV-3', 'INCONNU^PAUL', 'M', '19900215');
      const r = await check(review, { proofOfIdentity: 'passport' });
      assert.deepEqual(await r.json(), { id: review, outcome: 'not-found', status: 'provisional', mode: 'search', reviews: [] });
      assert.equal(await identityOf(patientId), undefined);
    });

    it('answers 502 and changes nothing when the INSi answer is malformed, and records the failure', async () => {
      const { patientId, review } = await reviewOf('IV-4', 'MALFORME^JEAN', 'M', '19700707');
      const r = await check(review, { proofOfIdentity: 'passport' });
      assert.equal(r.status, 502);
      assert.match(r.headers.get('content-type') ?? '', /application\/problem\+json/);
      assert.match((await r.json() as { detail: string }).detail, /not a SOAP 1.2 envelope: nothing was changed/);
      assert.equal(await identityOf(patientId), undefined);
      assert.deepEqual((await insiAudit()).at(-1)!.insi, 'malformed');
      assert.equal((await insiAudit()).at(-1)!.outcome, 'failure');
    });

    it('answers 503 and changes nothing when INSi answers a fault', async () => {
      const { patientId, review } = await reviewOf('IV-6', 'PANNE^RENE', 'M', '19550505');
      const r = await check(review, { proofOfIdentity: 'passport' });
      assert.equal(r.status, 503);
      assert.match((await r.json() as { detail: string }).detail, /SOAP fault: service momentanément indisponible/);
      assert.equal(await identityOf(patientId), undefined);
      assert.deepEqual([(await insiAudit()).at(-1)!.insi, (await insiAudit()).at(-1)!.outcome], ['unavailable', 'failure']);
    });

    it('answers 422 naming what the record lacks to ask INSi, and refuses an unknown proof of identity', async () => {
      const { review } = await reviewOf('IV-5', 'SANSDATE^LEA', 'F', '');
      const r = await check(review);
      assert.equal(r.status, 422);
      assert.match((await r.json() as { detail: string }).detail, /birth date/);
      assert.equal((await check(review, { proofOfIdentity: 'library-card' })).status, 400);
    });
  });
}
