import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { openArchiveIndex, type ArchiveIndex } from '../index/archive-index.ts';
import type { Site } from '../index/records.ts';
import { testDatabases } from '../../test/support/databases.ts';
import { AccessPolicy, reasonToSee, scopeCondition, type AccessScope } from './policy.ts';
import { Grants } from './grants.ts';
import { ShareLinks } from './share-links.ts';
import type { Principal, Role } from './principal.ts';

for (const db of testDatabases()) {
  describe(`access policy (${db.name})`, () => {
    let index: ArchiveIndex;
    let cleanup: () => Promise<void>;
    let policy: AccessPolicy;
    const sites: Site[] = [];
    const now = new Date().toISOString();
    const patients: number[] = [];
    const studies: Array<{ uid: string; siteId: number; patientId: number; referring?: string }> = [];
    let userId = 0;

    const user = (roles: Role[], siteList: Site[], extra: Partial<Principal> = {}): Principal => ({
      kind: 'user', id: `u${userId}`, name: 'x', roles, sites: siteList, userId, authenticatedBy: 'session', ...extra,
    });

    /** The rule in memory and the rule in SQL must agree on every study. */
    const seenBoth = async (scope: AccessScope): Promise<string[]> => {
      const facts = await Promise.all(studies.map((s) => index.studyPatient(s.uid)));
      const inMemory = facts.filter((f) => f && reasonToSee(scope, f)).map((f) => f!.StudyInstanceUID).sort();
      const c = scopeCondition(scope);
      const rows = await index.sql.all<{ study_instance_uid: string }>(`SELECT s.study_instance_uid FROM studies s${c ? ` WHERE ${c.sql}` : ''}`, c?.params ?? []);
      const inSql = rows.map((r) => r.study_instance_uid).sort();
      assert.deepEqual(inSql, inMemory, 'SQL and memory disagree');
      return inMemory;
    };

    before(async () => {
      const opened = await db.open();
      cleanup = opened.cleanup;
      index = await openArchiveIndex(opened.config);
      policy = new AccessPolicy(index.sql);
      for (const code of ['A', 'B', 'C']) sites.push(await index.createSite({ code, name: code, finess: '000000000', issuerOfPatientID: `ISS-${code}` }));
      // Patients 0 (site A) and 1 (site B) are one person by the same qualified INS; patient 2 (site C) is someone else.
      for (const [i, site] of [sites[0]!, sites[1]!, sites[2]!].entries()) {
        const row = await index.sql.get<{ id: number }>('INSERT INTO patients (site_id, issuer, patient_id, updated_at) VALUES (?, ?, ?, ?) RETURNING id', [site.id, site.issuerOfPatientID, `P${i}`, now]);
        patients.push(Number(row!.id));
      }
      const person = await index.sql.get<{ id: number }>('INSERT INTO persons (created_at) VALUES (?) RETURNING id', [now]);
      for (const p of [patients[0]!, patients[1]!]) {
        await index.sql.run(`INSERT INTO patient_identities (patient_id, ins, status, source, person_id, updated_at) VALUES (?, '180017512345678', 'qualified', 'test', ?, ?)`, [p, Number(person!.id), now]);
      }
      const add = async (n: number, siteIdx: number, patientIdx: number, referring?: string) => {
        const uid = `1.2.250.99.${n}`;
        await index.sql.run('INSERT INTO studies (study_instance_uid, patient_id, site_id, referring_physician_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)',
          [uid, patients[patientIdx]!, sites[siteIdx]!.id, referring ?? null, now, now]);
        studies.push({ uid, siteId: sites[siteIdx]!.id, patientId: patients[patientIdx]!, ...(referring ? { referring } : {}) });
      };
      await add(1, 0, 0);
      await add(2, 1, 1, '10001234567');
      await add(3, 2, 2, '10001234567');
      await add(4, 2, 2);
      const u = await index.sql.get<{ id: number }>(`INSERT INTO users (login, display_name, roles, created_at, updated_at) VALUES ('dr', 'Dr', '["radiologist"]', ?, ?) RETURNING id`, [now, now]);
      userId = Number(u!.id);
    });

    after(async () => {
      await index?.close();
      await cleanup?.();
    });

    it('shows a professional their sites\' exams and those naming them as referring physician, nothing else', async () => {
      assert.deepEqual(await seenBoth(await policy.scopeOf(user(['radiologist'], [sites[0]!]))), ['1.2.250.99.1']);
      const referring = await policy.scopeOf(user(['referring-physician'], [], { rpps: '10001234567' }));
      assert.deepEqual(await seenBoth(referring), ['1.2.250.99.2', '1.2.250.99.3']);
      const f = await index.studyPatient('1.2.250.99.3');
      assert.equal(reasonToSee(referring, f!), 'referring-physician');
    });

    it('shows nothing to a professional without a reason, everything to the territory administrator', async () => {
      assert.deepEqual(await seenBoth(await policy.scopeOf(user(['radiologist'], []))), []);
      assert.equal((await seenBoth(await policy.scopeOf(user(['territory-admin'], [])))).length, 4);
    });

    it('opens a patient\'s exams at every linked site through a grant, until it is revoked or expires', async () => {
      const grants = new Grants(index.sql);
      const g = await grants.grant({ kind: 'emergency', userId, patientId: patients[0]!, reason: 'arrêt cardiaque aux urgences', grantedBy: 'u' });
      const scope = await policy.scopeOf(user(['radiologist'], []));
      assert.deepEqual(await seenBoth(scope), ['1.2.250.99.1', '1.2.250.99.2']);
      assert.equal(reasonToSee(scope, (await index.studyPatient('1.2.250.99.2'))!), 'emergency');
      await grants.revoke(g.id, 'u');
      assert.deepEqual(await seenBoth(await policy.scopeOf(user(['radiologist'], []))), []);
      await grants.grant({ kind: 'share', userId, StudyInstanceUID: '1.2.250.99.4', grantedBy: 'u', expiresAt: new Date(Date.now() - 1000) });
      assert.deepEqual(await seenBoth(await policy.scopeOf(user(['radiologist'], []))), []);
      await grants.grant({ kind: 'share', userId, StudyInstanceUID: '1.2.250.99.4', grantedBy: 'u', expiresAt: new Date(Date.now() + 60_000) });
      assert.deepEqual(await seenBoth(await policy.scopeOf(user(['radiologist'], []))), ['1.2.250.99.4']);
    });

    it('opens a study to the reader assigned to it (a teleradiology request), for the assignment\'s life', async () => {
      const grants = new Grants(index.sql);
      const g = await grants.grant({ kind: 'assignment', userId, StudyInstanceUID: '1.2.250.99.3', grantedBy: 'u', expiresAt: new Date(Date.now() + 60_000) });
      const scope = await policy.scopeOf(user(['radiologist'], []));
      assert.ok((await seenBoth(scope)).includes('1.2.250.99.3'));
      assert.equal(reasonToSee(scope, (await index.studyPatient('1.2.250.99.3'))!), 'assigned-reader');
      await grants.revoke(g.id, 'u');
      assert.ok(!(await seenBoth(await policy.scopeOf(user(['radiologist'], [])))).includes('1.2.250.99.3'));
    });

    it('refuses an emergency access without a typed reason', async () => {
      await assert.rejects(new Grants(index.sql).grant({ kind: 'emergency', userId, patientId: patients[2]!, reason: 'urgent', grantedBy: 'u' }), /typed reason/);
    });

    it('shows a patient their own records at every linked site, and a share link only what it shares', async () => {
      const patient: Principal = { kind: 'user', id: 'p1', name: 'p', roles: ['patient'], sites: [], patientId: patients[1]!, authenticatedBy: 'session' };
      assert.deepEqual(await seenBoth(await policy.scopeOf(patient)), ['1.2.250.99.1', '1.2.250.99.2']);
      const links = new ShareLinks(index.sql);
      const { link } = await links.create({ StudyInstanceUID: '1.2.250.99.3', createdBy: 'u', expiresAt: new Date(Date.now() + 60_000) });
      const holder: Principal = { kind: 'share-link', id: `link-${link.id}`, name: 'link', roles: [], sites: [], shareLinkId: link.id, authenticatedBy: 'share-link' };
      assert.deepEqual(await seenBoth(await policy.scopeOf(holder)), ['1.2.250.99.3']);
      await links.revoke(link.id, 'u');
      assert.deepEqual(await seenBoth(await policy.scopeOf(holder)), []);
    });

    it('refuses a share link past its expiry, and ends what was opened with it', async () => {
      const links = new ShareLinks(index.sql);
      const { link, token } = await links.create({ StudyInstanceUID: '1.2.250.99.4', createdBy: 'u', expiresAt: new Date(Date.now() + 3_600_000) });
      assert.equal((await links.open(token, undefined)).id, link.id);
      const later = new Date(Date.now() + 3_600_001);
      await assert.rejects(links.open(token, undefined, later), (e: Error & { code?: string }) => e.code === 'expired');
      assert.equal(await links.isLive(link.id), true);
      assert.equal(await links.isLive(link.id, later), false);
      const holder: Principal = { kind: 'share-link', id: `link-${link.id}`, name: 'link', roles: [], sites: [], shareLinkId: link.id, authenticatedBy: 'share-link' };
      assert.deepEqual(await seenBoth(await policy.scopeOf(holder, later)), []);
      await assert.rejects(links.create({ StudyInstanceUID: '1.2.250.99.4', createdBy: 'u', expiresAt: new Date(Date.now() + 91 * 86_400_000) }), /at most 90 days/);
    });

    it('locks a share link after five wrong PINs, even when the sixth is right', async () => {
      const links = new ShareLinks(index.sql);
      const { token } = await links.create({ patientId: patients[2]!, createdBy: 'u', expiresAt: new Date(Date.now() + 60_000), pin: '4821' });
      await assert.rejects(links.open(token, undefined), (e: Error & { code?: string }) => e.code === 'pin-required');
      for (let i = 1; i <= 4; i++) await assert.rejects(links.open(token, '0000'), (e: Error & { code?: string }) => e.code === 'wrong-pin');
      await assert.rejects(links.open(token, '0000'), (e: Error & { code?: string }) => e.code === 'locked');
      await assert.rejects(links.open(token, '4821'), (e: Error & { code?: string }) => e.code === 'locked');
      await assert.rejects(links.open('not-a-token', undefined), (e: Error & { code?: string }) => e.code === 'unknown');
      const other = await links.create({ patientId: patients[2]!, createdBy: 'u', expiresAt: new Date(Date.now() + 60_000), pin: '4821' });
      assert.equal((await links.open(other.token, '4821')).patientId, patients[2]);
    });
  });
}
