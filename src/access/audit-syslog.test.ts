import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { StoredAuditEvent } from './audit.ts';
import { octetCountedFrame, syslogMessageOf, syslogSeverityOf } from './audit-syslog.ts';

const event = (e: Partial<StoredAuditEvent>): StoredAuditEvent => ({
  id: 7, at: '2026-11-23T10:00:00.123Z', hash: 'x', action: 'view', outcome: 'success', actor: 'c', actorKind: 'api-client', via: 'dicomweb', ...e,
});
const source = { auditSourceId: 'ATRIUM-1', aeTitle: 'ATRIUM', hostname: 'pacs 1.example.org' };

describe('RFC 5424 messages and RFC 5425 frames of audit events', () => {
  it('writes the header IHE ATNA asks for, then the BOM and the XML', () => {
    const m = syslogMessageOf(event({}), source, 4242);
    const header = '<85>1 2026-11-23T10:00:00.123Z pacs1.example.org atrium 4242 IHE+RFC-3881 - ';
    assert.equal(m.subarray(0, header.length).toString('ascii'), header);
    assert.deepEqual([...m.subarray(header.length, header.length + 3)], [0xef, 0xbb, 0xbf]);
    assert.match(m.subarray(header.length + 3).toString('utf8'), /^<AuditMessage><EventIdentification .*<\/AuditMessage>$/);
  });

  it('raises the severity to warning for failures, refusals and security alerts', () => {
    assert.equal(syslogSeverityOf(event({})), 5);
    assert.equal(syslogSeverityOf(event({ outcome: 'refused' })), 4);
    assert.equal(syslogSeverityOf(event({ action: 'emergency-access' })), 4);
    assert.equal(syslogMessageOf(event({ outcome: 'failure' }), source).subarray(0, 4).toString(), '<84>');
  });

  it('counts octets, not characters, in a frame', () => {
    const message = Buffer.from('é€x', 'utf8');
    assert.equal(octetCountedFrame(message).toString('utf8'), '6 é€x');
  });
});
