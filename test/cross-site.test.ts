/**
 * Cross-site integrity. One site can never take another site's object away by sending an
 * object under a SOPInstanceUID the other site holds (STOW-RS and C-STORE alike), nor learn
 * from a refusal what another site holds; the refused store is recorded for
 * identitovigilance with both sides. Nor can a site administrator reach another site's
 * patient through an identity link: only qualified INS or the territory's decision opens
 * a linked record, and a share opens the record it names.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { dcmtk, haveDcmtk } from './support/dcmtk.ts';
import { stowFiles } from './support/stow.ts';
import { retrieveInstanceAsStored } from './support/dicomweb-client.ts';
import { syntheticInstance, type SyntheticOptions } from './support/synthetic.ts';
import { CookieJar, loginLocal, request } from './support/browser-session.ts';
import { addUser } from '../src/cli/users.ts';
import { openReviews } from '../src/patients/identities.ts';
import { INS_OIDS, insKeyOf, parseINS } from '../src/patients/ins.ts';
import { insOtherPatientIDsItem } from '../src/patients/ins-dicom.ts';
import type { DicomElement } from '../src/dicom/dataset.ts';

type DicomJson = Record<string, { Value?: unknown[] }>;

/** The refusals of a STOW-RS answer: FailureReason and Atrium's comment. */
function failuresOf(answer: DicomJson): Array<{ status: number; comment: string }> {
  const failed = (answer['00081198']?.Value ?? []) as DicomJson[];
  return failed.map((f) => ({ status: f['00081197']!.Value![0] as number, comment: String(f['00091001']?.Value?.[0] ?? '') }));
}

/** Words a refusal must never use when the conflicting object is another site's. */
const revealing = /another (site|patient|study)|indexed under|held by/i;

for (const db of testDatabases()) {
  describe(`cross-site integrity of stores (${db.name})`, { skip: !haveDcmtk && 'DCMTK is not installed' }, () => {
    let atrium: RunningAtrium;
    let cleanup: () => Promise<void>;
    const work = mkdtempSync(path.join(tmpdir(), 'atrium-cross-site-'));

    before(async () => {
      const opened = await db.open();
      cleanup = opened.cleanup;
      atrium = await startAtrium({
        index: opened.config, dimse: true,
        configure: (c) => {
          c.ingest.duplicatePolicy = 'replace';
          c.peers = [
            { aeTitle: 'MOD-NORD', site: 'CHU-NORD', may: { store: true, query: false, retrieve: false } },
            { aeTitle: 'MOD-SUD', site: 'CLIN-SUD', may: { store: true, query: false, retrieve: false } },
          ];
        },
      });
    });

    after(async () => {
      await atrium?.close();
      await cleanup?.();
      rmSync(work, { recursive: true, force: true });
    });

    const stow = async (site: 'CHU-NORD' | 'CLIN-SUD', o: SyntheticOptions) => {
      const obj = syntheticInstance({ Rows: 4, Columns: 4, ...o });
      const r = await stowFiles(atrium.dicomweb, atrium.tokens[site]!, [obj.file]);
      return { obj, status: r.status, answer: (await r.json()) as DicomJson };
    };
    const storescu = async (calling: 'MOD-NORD' | 'MOD-SUD', o: SyntheticOptions) => {
      const obj = syntheticInstance({ Rows: 4, Columns: 4, ...o });
      const file = path.join(work, `${obj.uids.sop}-${calling}-${Math.random().toString(36).slice(2)}.dcm`);
      writeFileSync(file, obj.file);
      return { obj, ...(await dcmtk('storescu', ['-d', '-aet', calling, '-aec', 'ATRIUM', '127.0.0.1', String(atrium.dimse!.port), file])) };
    };
    const refusedStores = (sop: string) => atrium.archive.index.sql.all<{ actor: string; site: string | null; study_instance_uid: string | null; patients: string; details: string }>(
      `SELECT actor, site, study_instance_uid, patients, details FROM audit_events WHERE action = 'store' AND outcome = 'refused' AND details LIKE ? ORDER BY id`,
      [`%${sop}%`],
    );

    it('refuses a STOW-RS reusing another site\'s SOPInstanceUID (409, 0xA900) without saying what the other site holds, keeps the object byte-identical and records both sides', async () => {
      const held = await stow('CLIN-SUD', { PatientID: 'SUD-HELD-1', PatientName: 'HELD^Bernadette' });
      assert.equal(held.status, 200);
      const taker = await stow('CHU-NORD', { PatientID: 'NORD-TAKER-1', PatientName: 'TAKER^Paul', SOPInstanceUID: held.obj.uids.sop });
      assert.equal(taker.status, 409);
      const [failure] = failuresOf(taker.answer);
      assert.equal(failure!.status, 0xa900);
      assert.match(failure!.comment, /cannot be accepted from this site/);
      assert.doesNotMatch(failure!.comment, revealing);
      const text = JSON.stringify(taker.answer);
      for (const secret of [held.obj.uids.study, held.obj.uids.series, 'SUD-HELD-1', 'CLIN-SUD', 'HELD']) assert.ok(!text.includes(secret), `the answer names ${secret}`);

      const got = await retrieveInstanceAsStored(atrium.dicomweb, atrium.tokens['CLIN-SUD']!, held.obj.uids);
      assert.ok(got.equals(held.obj.file), 'the holder still retrieves its object as it sent it');
      assert.equal((await atrium.archive.index.studyPatient(taker.obj.uids.study)), undefined, 'nothing of the refused object is indexed');

      const [event] = await refusedStores(held.obj.uids.sop);
      assert.ok(event, 'the refused store is in the audit trail');
      assert.equal(event.site, 'CHU-NORD');
      assert.equal(event.study_instance_uid, taker.obj.uids.study);
      assert.deepEqual(JSON.parse(event.patients).sort(), ['CHU-NORD|CHUNORD|NORD-TAKER-1', 'CLIN-SUD|CLINSUD|SUD-HELD-1']);
      const details = JSON.parse(event.details) as Record<string, unknown>;
      assert.equal(details.conflict, 'instance-of-another-site');
      assert.equal(details.heldBySite, 'CLIN-SUD');
      assert.equal(details.heldInStudy, held.obj.uids.study);
      assert.equal(details.sentBySite, 'CHU-NORD');
    });

    it('refuses a C-STORE reusing another site\'s SOPInstanceUID with 0xA900, keeps the object and records both sides', async () => {
      const held = await storescu('MOD-SUD', { PatientID: 'SUD-HELD-2' });
      assert.equal(held.code, 0, held.output);
      const taker = await storescu('MOD-NORD', { PatientID: 'NORD-TAKER-2', SOPInstanceUID: held.obj.uids.sop });
      assert.match(taker.output, /0xa900/i, taker.output);
      assert.match(taker.output, /cannot be accepted from this site/, taker.output);
      assert.doesNotMatch(taker.output, revealing);
      assert.ok(!taker.output.includes(held.obj.uids.study));
      const got = await retrieveInstanceAsStored(atrium.dicomweb, atrium.tokens['CLIN-SUD']!, held.obj.uids);
      assert.equal(got.subarray(-32).toString('hex'), held.obj.file.subarray(-32).toString('hex'), 'the holder still retrieves its own pixels');
      assert.equal((await atrium.archive.index.studyPatient(held.obj.uids.study))?.patient.PatientID, 'SUD-HELD-2');
      const [event] = await refusedStores(held.obj.uids.sop);
      assert.ok(event, 'the refused store is in the audit trail');
      assert.equal(event.actor, 'MOD-NORD');
      const details = JSON.parse(event.details) as Record<string, unknown>;
      assert.equal(details.heldBySite, 'CLIN-SUD');
      assert.equal(details.heldInStudy, held.obj.uids.study);
    });

    it('still replaces an object by its own site, in its study or another study of the same patient', async () => {
      const first = await stow('CHU-NORD', { PatientID: 'NORD-OWN-3', StudyDate: '20240101' });
      assert.equal(first.status, 200);
      const again = await stow('CHU-NORD', {
        PatientID: 'NORD-OWN-3', StudyDate: '20240102', SOPInstanceUID: first.obj.uids.sop,
        StudyInstanceUID: first.obj.uids.study, SeriesInstanceUID: first.obj.uids.series,
      });
      assert.equal(again.status, 200, JSON.stringify(again.answer));
      const got = await retrieveInstanceAsStored(atrium.dicomweb, atrium.tokens['CHU-NORD']!, first.obj.uids);
      assert.ok(got.equals(again.obj.file), 'the replacement is served');
      const moved = await stow('CHU-NORD', { PatientID: 'NORD-OWN-3', SOPInstanceUID: first.obj.uids.sop });
      assert.equal(moved.status, 200, JSON.stringify(moved.answer));
      const gotMoved = await retrieveInstanceAsStored(atrium.dicomweb, atrium.tokens['CHU-NORD']!, moved.obj.uids);
      assert.ok(gotMoved.equals(moved.obj.file));
    });

    it('refuses a replacement by the same site that would move the object to another patient, and explains it to that site', async () => {
      const first = await stow('CHU-NORD', { PatientID: 'NORD-OWN-4' });
      assert.equal(first.status, 200);
      const other = await stow('CHU-NORD', { PatientID: 'NORD-OTHER-4', SOPInstanceUID: first.obj.uids.sop });
      assert.equal(other.status, 409);
      const [failure] = failuresOf(other.answer);
      assert.equal(failure!.status, 0xa900);
      assert.match(failure!.comment, /another patient of this site/);
      const got = await retrieveInstanceAsStored(atrium.dicomweb, atrium.tokens['CHU-NORD']!, first.obj.uids);
      assert.ok(got.equals(first.obj.file));
      const [event] = await refusedStores(first.obj.uids.sop);
      assert.equal(JSON.parse(event!.details).conflict, 'instance-of-another-patient');
    });

    it('answers a study or series UID of another site with the same words as any other site\'s conflict, naming no patient', async () => {
      const held = await stow('CLIN-SUD', { PatientID: 'SUD-HELD-5' });
      assert.equal(held.status, 200);
      const sameStudy = await stow('CHU-NORD', { PatientID: 'NORD-TAKER-5', StudyInstanceUID: held.obj.uids.study });
      const sameSeries = await stow('CHU-NORD', { PatientID: 'NORD-TAKER-5', SeriesInstanceUID: held.obj.uids.series });
      for (const [what, r] of [['Study', sameStudy], ['Series', sameSeries]] as const) {
        assert.equal(r.status, 409);
        const [failure] = failuresOf(r.answer);
        assert.equal(failure!.status, 0xa900);
        assert.equal(failure!.comment, `this ${what} Instance UID cannot be accepted from this site`);
      }
      assert.equal((await refusedStores(sameStudy.obj.uids.sop)).length, 1, 'recorded for identitovigilance');
      // The caller's own site's conflict is explained.
      const own = await stow('CLIN-SUD', { PatientID: 'SUD-OTHER-5', StudyInstanceUID: held.obj.uids.study });
      assert.match(failuresOf(own.answer)[0]!.comment, /indexed under another patient/);
    });
  });
}

/** A qualified-looking INS (test NIR OID) in Other Patient IDs Sequence, as images carry it. */
function withINS(matricule: string): DicomElement[] {
  const item = insOtherPatientIDsItem(parseINS(matricule + insKeyOf(matricule), INS_OIDS.NIR_TEST));
  return [{ tag: 0x00101002, vr: 'SQ', items: [item] }];
}

describe(`cross-site integrity of identity links and shares (${testDatabases().at(-1)!.name})`, () => {
  const db = testDatabases().at(-1)!;
  const password = 'un mot de passe assez long pour les tests';
  let atrium: RunningAtrium;
  let base: string;
  let cleanup: () => Promise<void>;
  const by = { actor: 'test', via: 'cli' as const };

  before(async () => {
    const opened = await db.open();
    cleanup = opened.cleanup;
    atrium = await startAtrium({ index: opened.config });
    base = atrium.dicomweb.replace('/dicom-web', '');
    await addUser(atrium.archive, { login: 'admin.nord', displayName: 'Admin Nord', roles: ['site-admin'], sites: ['CHU-NORD'], password }, by);
    await addUser(atrium.archive, { login: 'admin.ght', displayName: 'Admin Territoire', roles: ['territory-admin'], sites: [], password }, by);
  });

  after(async () => {
    await atrium?.close();
    await cleanup?.();
  });

  const stow = async (site: 'CHU-NORD' | 'CLIN-SUD', o: SyntheticOptions) => {
    const obj = syntheticInstance({ Rows: 4, Columns: 4, ...o });
    const r = await stowFiles(atrium.dicomweb, atrium.tokens[site]!, [obj.file]);
    assert.equal(r.status, 200, await r.text());
    return obj.uids.study;
  };
  const recordId = async (site: 'CHU-NORD' | 'CLIN-SUD', PatientID: string) => {
    const s = atrium.archive.sites.get(site)!;
    return (await atrium.archive.index.patientRecordId(s.id, s.issuerOfPatientID, PatientID))!;
  };
  const candidateBetween = async (a: number, b: number) => {
    await atrium.identities.drain();
    const found = (await openReviews(atrium.archive.index.sql)).find((r) => r.kind === 'link-candidate' && [r.patientId, r.otherPatientId].sort().join() === [a, b].sort().join());
    assert.ok(found, 'a candidate link is proposed');
    return found.id;
  };
  const send = (session: { jar: CookieJar; csrf: string }, method: string, url: string, body?: unknown) => request(session.jar, `${base}${url}`, {
    method, headers: { 'content-type': 'application/json', 'x-csrf-token': session.csrf }, ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  /** Opens a share link in a fresh browser: its session. */
  const openShare = async (token: string) => {
    const jar = new CookieJar();
    const r = await request(jar, `${base}/share/open`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
    assert.equal(r.status, 200, await r.clone().text());
    return jar;
  };
  const shareByLink = async (session: { jar: CookieJar; csrf: string }, site: string, PatientID: string) => {
    const r = await send(session, 'POST', '/api/shares', { patient: { site, PatientID }, link: { expiresInHours: 1 } });
    assert.equal(r.status, 201, await r.clone().text());
    return openShare(((await r.json()) as { token: string }).token);
  };
  const metadataStatus = async (jar: CookieJar, study: string) => (await request(jar, `${base}/dicom-web/studies/${study}/metadata`)).status;
  const studiesSeen = async (jar: CookieJar) => {
    const r = await request(jar, `${base}/dicom-web/studies`);
    return r.status === 204 ? [] : ((await r.json()) as Array<Record<string, { Value: string[] }>>).map((x) => x['0020000D']!.Value[0]!).sort();
  };

  it('keeps a site administrator\'s accepted decoy link from opening another site\'s patient to a share (the attack answers 404)', async () => {
    const real = await stow('CLIN-SUD', { PatientID: 'SUD-REAL', PatientName: 'MARTIN^Louise', PatientBirthDate: '19700101', PatientSex: 'F' });
    const decoy = await stow('CHU-NORD', { PatientID: 'NORD-DECOY', PatientName: 'MARTIN^Louise', PatientBirthDate: '19700101', PatientSex: 'F' });
    const reviewId = await candidateBetween(await recordId('CHU-NORD', 'NORD-DECOY'), await recordId('CLIN-SUD', 'SUD-REAL'));
    const admin = await loginLocal(base, 'admin.nord', password);

    const accepted = await send(admin, 'POST', `/api/identity-reviews/${reviewId}`, { accept: true });
    assert.equal(accepted.status, 403, 'a candidate joining another site\'s record is the territory\'s to decide');
    assert.ok((await openReviews(atrium.archive.index.sql)).some((r) => r.id === reviewId), 'the candidate stays open for the territory');

    const holder = await shareByLink(admin, 'CHU-NORD', 'NORD-DECOY');
    assert.deepEqual(await studiesSeen(holder), [decoy]);
    assert.equal(await metadataStatus(holder, decoy), 200);
    assert.equal(await metadataStatus(holder, real), 404);
  });

  it('shows a site administrator no review that joins another site\'s record (nothing of what the other site holds), and shows it to the territory', async () => {
    await stow('CLIN-SUD', { PatientID: 'SUD-LIST', PatientName: 'DURAND^Alice', PatientBirthDate: '19650303', PatientSex: 'F' });
    await stow('CHU-NORD', { PatientID: 'NORD-LIST', PatientName: 'DURAND^Alice', PatientBirthDate: '19650303', PatientSex: 'F' });
    const reviewId = await candidateBetween(await recordId('CHU-NORD', 'NORD-LIST'), await recordId('CLIN-SUD', 'SUD-LIST'));
    const listed = async (session: { jar: CookieJar; csrf: string }) => {
      const r = await send(session, 'GET', '/api/identity-reviews');
      assert.equal(r.status, 200);
      return (await r.text());
    };
    const nord = await listed(await loginLocal(base, 'admin.nord', password));
    assert.doesNotMatch(nord, /SUD-LIST/, 'the other site\'s PatientID is not told');
    assert.ok(!(JSON.parse(nord) as { reviews: Array<{ id: number }> }).reviews.some((r) => r.id === reviewId));
    const territory = JSON.parse(await listed(await loginLocal(base, 'admin.ght', password))) as { reviews: Array<{ id: number; record: { PatientID: string }; otherRecord?: { PatientID: string } }> };
    const seen = territory.reviews.find((r) => r.id === reviewId);
    assert.ok(seen, 'the territory sees the candidate');
    assert.deepEqual([seen.record.PatientID, seen.otherRecord?.PatientID].sort(), ['NORD-LIST', 'SUD-LIST']);
  });

  it('opens nothing across sites through a link no qualified INS backs and the territory did not decide, whoever made it', async () => {
    const real = await stow('CLIN-SUD', { PatientID: 'SUD-REAL-2', PatientName: 'PETIT^Rose', PatientBirthDate: '19650303', PatientSex: 'F' });
    const decoy = await stow('CHU-NORD', { PatientID: 'NORD-DECOY-2', PatientName: 'PETIT^Rose', PatientBirthDate: '19650303', PatientSex: 'F' });
    const decoyRecord = await recordId('CHU-NORD', 'NORD-DECOY-2');
    const reviewId = await candidateBetween(decoyRecord, await recordId('CLIN-SUD', 'SUD-REAL-2'));
    // A link accepted by an administrator of both sites (or before decisions said who made them).
    await addUser(atrium.archive, { login: 'admin.both', displayName: 'Admin Deux Sites', roles: ['site-admin'], sites: ['CHU-NORD', 'CLIN-SUD'], password }, by);
    const both = await loginLocal(base, 'admin.both', password);
    assert.equal((await send(both, 'POST', `/api/identity-reviews/${reviewId}`, { accept: true })).status, 200, 'an administrator of both sites decides');

    const admin = await loginLocal(base, 'admin.nord', password);
    const holder = await shareByLink(admin, 'CHU-NORD', 'NORD-DECOY-2');
    assert.equal(await metadataStatus(holder, real), 404);
    assert.deepEqual(await studiesSeen(holder), [decoy]);
    await addUser(atrium.archive, { login: 'rose.nord', displayName: 'Rose', roles: ['patient'], sites: [], patientId: decoyRecord, password }, by);
    const patient = await loginLocal(base, 'rose.nord', password);
    assert.deepEqual(await studiesSeen(patient.jar), [decoy], 'the patient of the record sees its own exams only');
  });

  it('lets a patient whose records share a qualified INS see and share their exams at every site, while a site\'s share opens what that site sees', async () => {
    const north = await stow('CHU-NORD', { PatientID: 'NORD-INS', PatientName: 'DURAND^Marie', PatientBirthDate: '19800101', PatientSex: 'F', extra: withINS('2800175123456') });
    const south = await stow('CLIN-SUD', { PatientID: 'SUD-INS', PatientName: 'DURAND^Marie', PatientBirthDate: '19800101', PatientSex: 'F', extra: withINS('2800175123456') });
    await atrium.identities.drain();
    await addUser(atrium.archive, { login: 'marie', displayName: 'Marie', roles: ['patient'], sites: [], patientId: await recordId('CHU-NORD', 'NORD-INS'), password }, by);
    const patient = await loginLocal(base, 'marie', password);
    assert.deepEqual(await studiesSeen(patient.jar), [north, south].sort());
    const ownShare = await shareByLink(patient, 'CHU-NORD', 'NORD-INS');
    assert.deepEqual(await studiesSeen(ownShare), [north, south].sort(), 'the patient shares what they see');

    const admin = await loginLocal(base, 'admin.nord', password);
    const siteShare = await shareByLink(admin, 'CHU-NORD', 'NORD-INS');
    assert.deepEqual(await studiesSeen(siteShare), [north], 'a site shares only what it sees');
    assert.equal(await metadataStatus(siteShare, south), 404);
  });

  it('follows a candidate link the territory decided', async () => {
    const north = await stow('CHU-NORD', { PatientID: 'NORD-GHT', PatientName: 'LEROY^Jules', PatientBirthDate: '19550505', PatientSex: 'M' });
    const south = await stow('CLIN-SUD', { PatientID: 'SUD-GHT', PatientName: 'LEROY^Jules', PatientBirthDate: '19550505', PatientSex: 'M' });
    const northRecord = await recordId('CHU-NORD', 'NORD-GHT');
    const reviewId = await candidateBetween(northRecord, await recordId('CLIN-SUD', 'SUD-GHT'));
    const territory = await loginLocal(base, 'admin.ght', password);
    assert.equal((await send(territory, 'POST', `/api/identity-reviews/${reviewId}`, { accept: true })).status, 200);
    await addUser(atrium.archive, { login: 'jules', displayName: 'Jules', roles: ['patient'], sites: [], patientId: northRecord, password }, by);
    const patient = await loginLocal(base, 'jules', password);
    assert.deepEqual(await studiesSeen(patient.jar), [north, south].sort());
  });
});
