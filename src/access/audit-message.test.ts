import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { StoredAuditEvent } from './audit.ts';
import { auditMessageOf, escapeXml, networkAccessPointOf, patientCX, type AuditSourceContext } from './audit-message.ts';

/** A strict little XML reader (elements, attributes, text, the five entities and &#N;): enough to read the messages back. */
interface Node { name: string; attributes: Record<string, string>; children: Node[]; text: string }

function parseXml(xml: string): Node {
  let i = 0;
  const decode = (s: string) => s.replace(/&(#\d+|amp|lt|gt|quot|apos);/g, (_, e: string) =>
    e.startsWith('#') ? String.fromCharCode(Number(e.slice(1))) : ({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" } as Record<string, string>)[e]!);
  const element = (): Node => {
    const open = /^<([A-Za-z][\w.-]*)/.exec(xml.slice(i));
    if (!open) throw new Error(`element expected at ${i}: ${xml.slice(i, i + 30)}`);
    i += open[0].length;
    const node: Node = { name: open[1]!, attributes: {}, children: [], text: '' };
    for (;;) {
      const attr = /^\s+([\w-]+)="([^"<]*)"/.exec(xml.slice(i));
      if (!attr) break;
      if (attr[1]! in node.attributes) throw new Error(`attribute ${attr[1]} twice`);
      node.attributes[attr[1]!] = decode(attr[2]!);
      i += attr[0].length;
    }
    if (xml.startsWith('/>', i)) { i += 2; return node; }
    if (xml[i] !== '>') throw new Error(`> expected at ${i}`);
    i++;
    for (;;) {
      if (xml.startsWith(`</${node.name}>`, i)) { i += node.name.length + 3; return node; }
      if (xml[i] === '<') node.children.push(element());
      else {
        const end = xml.indexOf('<', i);
        if (end < 0) throw new Error('unterminated element');
        if (/[>]/.test(xml.slice(i, end))) throw new Error('unescaped > in text');
        node.text += decode(xml.slice(i, end));
        i = end;
      }
    }
  };
  const root = element();
  if (i !== xml.length) throw new Error(`trailing content at ${i}`);
  return root;
}

const all = (n: Node, name: string) => n.children.filter((c) => c.name === name);
const one = (n: Node, name: string) => {
  const found = all(n, name);
  assert.equal(found.length, 1, `one ${name} in ${n.name}`);
  return found[0]!;
};
const code = (n: Node) => `${n.attributes['csd-code']}|${n.attributes.codeSystemName}|${n.attributes.originalText}`;

const source: AuditSourceContext = { auditSourceId: 'ATRIUM-TEST', aeTitle: 'ATRIUM', hostname: 'pacs.example.org' };
const event = (e: Partial<StoredAuditEvent>): StoredAuditEvent => ({
  id: 1, at: '2026-11-23T10:00:00.123Z', hash: 'x', action: 'view', outcome: 'success',
  actor: 'client-CHU-NORD', actorKind: 'api-client', via: 'dicomweb', ...e,
});

describe('DICOM audit messages (PS3.15 A.5)', () => {
  it('writes a WADO-RS view as DICOM Instances Accessed (110103, R) with the study and the patient in CX form', () => {
    const xml = auditMessageOf(event({
      action: 'view', site: 'CHU-NORD', source: '::ffff:10.1.2.3', StudyInstanceUID: '1.2.3.4',
      patients: ['CHU-NORD|CHUNORD|P-001'],
    }), source);
    assert.doesNotMatch(xml, /\n/);
    const m = parseXml(xml);
    assert.equal(m.name, 'AuditMessage');
    assert.deepEqual(m.children.map((c) => c.name), ['EventIdentification', 'ActiveParticipant', 'ActiveParticipant', 'AuditSourceIdentification', 'ParticipantObjectIdentification', 'ParticipantObjectIdentification']);
    const ev = one(m, 'EventIdentification');
    assert.deepEqual(ev.attributes, { EventActionCode: 'R', EventDateTime: '2026-11-23T10:00:00.123Z', EventOutcomeIndicator: '0' });
    assert.equal(code(one(ev, 'EventID')), '110103|DCM|DICOM Instances Accessed');
    assert.equal(all(ev, 'EventTypeCode').length, 0);
    const [requestor, atrium] = all(m, 'ActiveParticipant');
    assert.deepEqual(requestor!.attributes, { UserID: 'client-CHU-NORD', UserIsRequestor: 'true', NetworkAccessPointID: '10.1.2.3', NetworkAccessPointTypeCode: '2' });
    assert.deepEqual(atrium!.attributes, { UserID: 'ATRIUM-TEST', UserIsRequestor: 'false', NetworkAccessPointID: 'pacs.example.org', NetworkAccessPointTypeCode: '1' });
    assert.deepEqual(one(m, 'AuditSourceIdentification').attributes, { AuditEnterpriseSiteID: 'CHU-NORD', AuditSourceID: 'ATRIUM-TEST' });
    const [study, patient] = all(m, 'ParticipantObjectIdentification');
    assert.deepEqual(study!.attributes, { ParticipantObjectID: '1.2.3.4', ParticipantObjectTypeCode: '2', ParticipantObjectTypeCodeRole: '3' });
    assert.equal(code(one(study!, 'ParticipantObjectIDTypeCode')), '110180|DCM|Study Instance UID');
    assert.deepEqual(patient!.attributes, { ParticipantObjectID: 'P-001^^^CHUNORD', ParticipantObjectTypeCode: '1', ParticipantObjectTypeCodeRole: '1' });
    assert.equal(code(one(patient!, 'ParticipantObjectIDTypeCode')), '2|RFC-3881|Patient Number');
  });

  it('writes a STOW-RS as DICOM Instances Transferred (110104, C): the sender is the source, Atrium the destination, each stored study named', () => {
    const m = parseXml(auditMessageOf(event({
      action: 'store', outcome: 'failure', patients: ['CHU-NORD|1.2.250.1.71.4.2.7|P 9'],
      details: { studies: ['1.2.3', '1.2.4'], stored: 1, refused: 1 },
    }), source));
    const ev = one(m, 'EventIdentification');
    assert.equal(ev.attributes.EventActionCode, 'C');
    assert.equal(ev.attributes.EventOutcomeIndicator, '8');
    assert.equal(one(ev, 'EventOutcomeDescription').text, 'failed');
    assert.equal(code(one(ev, 'EventID')), '110104|DCM|DICOM Instances Transferred');
    const roles = all(m, 'ActiveParticipant').map((p) => `${p.attributes.UserID}:${p.attributes.UserIsRequestor}:${code(one(p, 'RoleIDCode'))}`);
    assert.deepEqual(roles, ['client-CHU-NORD:true:110153|DCM|Source Role ID', 'ATRIUM-TEST:false:110152|DCM|Destination Role ID']);
    const objects = all(m, 'ParticipantObjectIdentification').map((o) => o.attributes.ParticipantObjectID);
    assert.deepEqual(objects, ['1.2.3', '1.2.4', 'P 9^^^&1.2.250.1.71.4.2.7&ISO']);
  });

  it('writes a C-MOVE as a transfer from Atrium to the move destination, the caller being the requestor', () => {
    const m = parseXml(auditMessageOf(event({
      action: 'download', actor: 'WS1', actorKind: 'dicom-peer', via: 'dimse', source: '192.168.0.7', StudyInstanceUID: '1.2.9',
      patients: ['CHU-NORD|CHUNORD|P1'], details: { operation: 'C-MOVE', destination: 'PACS2', studies: ['1.2.9'], instances: 3 },
    }), source));
    assert.equal(one(m, 'EventIdentification').attributes.EventActionCode, 'R');
    const ps = all(m, 'ActiveParticipant');
    assert.deepEqual(ps.map((p) => [p.attributes.UserID, p.attributes.AlternativeUserID, p.attributes.UserIsRequestor, all(p, 'RoleIDCode').map(code).join()]), [
      ['ATRIUM-TEST', 'AETITLES=ATRIUM', 'false', '110153|DCM|Source Role ID'],
      ['WS1', 'AETITLES=WS1', 'true', ''],
      ['PACS2', 'AETITLES=PACS2', 'false', '110152|DCM|Destination Role ID'],
    ]);
    // The study is named once though it is both the event's study and in its list.
    assert.equal(all(m, 'ParticipantObjectIdentification').filter((o) => o.attributes.ParticipantObjectID === '1.2.9').length, 1);
  });

  it('writes a C-FIND as Query (110112, E) with its SOP class and its keys in ParticipantObjectQuery', () => {
    const m = parseXml(auditMessageOf(event({
      action: 'query', actor: 'WS1', actorKind: 'dicom-peer', via: 'dimse',
      patients: ['CHU-NORD|CHUNORD|P1'],
      details: { SOPClassUID: '1.2.840.10008.5.1.4.1.2.2.1', level: 'STUDY', matches: { PatientID: 'P1' }, results: 1, offset: 0 },
    }), source));
    const ev = one(m, 'EventIdentification');
    assert.equal(ev.attributes.EventActionCode, 'E');
    assert.equal(code(one(ev, 'EventID')), '110112|DCM|Query');
    const roles = all(m, 'ActiveParticipant').map((p) => code(one(p, 'RoleIDCode')));
    assert.deepEqual(roles, ['110153|DCM|Source Role ID', '110152|DCM|Destination Role ID']);
    const [query, patient] = all(m, 'ParticipantObjectIdentification');
    assert.equal(query!.attributes.ParticipantObjectID, '1.2.840.10008.5.1.4.1.2.2.1');
    assert.equal(query!.attributes.ParticipantObjectTypeCodeRole, '3');
    assert.equal(code(one(query!, 'ParticipantObjectIDTypeCode')), '110181|DCM|SOP Class UID');
    assert.deepEqual(JSON.parse(Buffer.from(one(query!, 'ParticipantObjectQuery').text, 'base64').toString('utf8')), { level: 'STUDY', matches: { PatientID: 'P1' } });
    const encoding = one(query!, 'ParticipantObjectDetail');
    assert.equal(encoding.attributes.type, 'QueryEncoding');
    assert.equal(Buffer.from(encoding.attributes.value!, 'base64').toString(), 'application/json');
    // Children in the schema's order: ID type, query, details.
    assert.deepEqual(query!.children.map((c) => c.name), ['ParticipantObjectIDTypeCode', 'ParticipantObjectQuery', 'ParticipantObjectDetail']);
    assert.equal(patient!.attributes.ParticipantObjectID, 'P1^^^CHUNORD');
  });

  it('names a QIDO-RS query by its resource (a URI), there being no SOP class', () => {
    const m = parseXml(auditMessageOf(event({ action: 'query', details: { level: 'series', matches: { Modality: 'CT' }, results: 0 } }), source));
    const query = one(m, 'ParticipantObjectIdentification');
    assert.equal(query.attributes.ParticipantObjectID, '/series');
    assert.equal(code(one(query, 'ParticipantObjectIDTypeCode')), '12|RFC-3881|URI');
  });

  it('writes break-the-glass as a Security Alert with Emergency Override Started, and its reason', () => {
    const m = parseXml(auditMessageOf(event({
      action: 'emergency-access', actor: 'dr.martin', actorKind: 'user', via: 'portal', reason: 'Urgence vitale <AVC> & "thrombolyse"',
      patients: ['CLIN-SUD|CLINSUD|X^Y'],
    }), source));
    const ev = one(m, 'EventIdentification');
    assert.equal(code(one(ev, 'EventID')), '110113|DCM|Security Alert');
    assert.equal(code(one(ev, 'EventTypeCode')), '110127|DCM|Emergency Override Started');
    const patient = one(m, 'ParticipantObjectIdentification');
    assert.equal(patient.attributes.ParticipantObjectID, 'X\\S\\Y^^^CLINSUD');
    const reason = one(patient, 'ParticipantObjectDetail');
    assert.equal(reason.attributes.type, 'Reason');
    assert.equal(Buffer.from(reason.attributes.value!, 'base64').toString('utf8'), 'Urgence vitale <AVC> & "thrombolyse"');
  });

  it('writes logins and logouts as User Authentication with their event type; a failed login is a minor failure', () => {
    const failed = parseXml(auditMessageOf(event({ action: 'login-failed', outcome: 'failure', actor: 'bob', actorKind: 'user', via: 'portal' }), source));
    const ev = one(failed, 'EventIdentification');
    assert.equal(code(one(ev, 'EventID')), '110114|DCM|User Authentication');
    assert.equal(code(one(ev, 'EventTypeCode')), '110122|DCM|Login');
    assert.equal(ev.attributes.EventOutcomeIndicator, '4');
    const logout = one(parseXml(auditMessageOf(event({ action: 'logout', actor: 'bob', actorKind: 'user', via: 'portal' }), source)), 'EventIdentification');
    assert.equal(code(one(logout, 'EventTypeCode')), '110123|DCM|Logout');
    assert.equal(logout.attributes.EventOutcomeIndicator, '0');
  });

  it('writes patient record changes (merge, identity) as Patient Record (110110, U) and a rejection as a deletion', () => {
    for (const action of ['merge', 'identity-change', 'identity-review'] as const) {
      const ev = one(parseXml(auditMessageOf(event({ action, actor: 'HIS', actorKind: 'hl7-sender', via: 'hl7', patients: ['A|B|C'] }), source)), 'EventIdentification');
      assert.equal(code(one(ev, 'EventID')), '110110|DCM|Patient Record', action);
      assert.equal(ev.attributes.EventActionCode, 'U', action);
    }
    const reject = one(parseXml(auditMessageOf(event({ action: 'correction', via: 'api', details: { kind: 'instance-reject' } }), source)), 'EventIdentification');
    assert.equal(reject.attributes.EventActionCode, 'D');
  });

  it('escapes markup, drops characters XML cannot carry, and keeps a message on one line', () => {
    assert.equal(escapeXml('a<b>&"c"\n\u0001', true), 'a&lt;b&gt;&amp;&quot;c&quot;&#10;');
    const m = parseXml(auditMessageOf(event({ actor: 'evil"/><x a="\n', patients: ['S|I|<P>'] }), source));
    assert.equal(all(m, 'ActiveParticipant')[0]!.attributes.UserID, 'evil"/><x a="\n');
    assert.equal(one(m, 'ParticipantObjectIdentification').attributes.ParticipantObjectID, '<P>^^^I');
  });

  it('reads network access points from addresses, host:port and names', () => {
    assert.deepEqual(networkAccessPointOf('127.0.0.1:4242'), { NetworkAccessPointID: '127.0.0.1', NetworkAccessPointTypeCode: '2' });
    assert.deepEqual(networkAccessPointOf('[::1]:104'), { NetworkAccessPointID: '::1', NetworkAccessPointTypeCode: '2' });
    assert.deepEqual(networkAccessPointOf('::1'), { NetworkAccessPointID: '::1', NetworkAccessPointTypeCode: '2' });
    assert.deepEqual(networkAccessPointOf('ws1.chu.local'), { NetworkAccessPointID: 'ws1.chu.local', NetworkAccessPointTypeCode: '1' });
    assert.equal(networkAccessPointOf(undefined), undefined);
    assert.equal(patientCX('', 'P1'), 'P1');
  });
});
