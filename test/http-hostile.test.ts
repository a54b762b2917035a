/**
 * The HTTP listener against requests a hostile client sends before it is anyone: protocol
 * switches, tunnels, request smuggling and garbage get an answer or a closed connection,
 * never a switched protocol, and the server goes on answering.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';

/** Writes raw bytes on a new connection and collects what comes back until the server closes (or 5 s pass). */
function exchange(port: number, raw: string): Promise<{ answer: string; closedByServer: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(raw));
    let answer = '';
    let closedByServer = false;
    const timer = setTimeout(() => socket.destroy(), 5000);
    socket.on('data', (b) => { answer += b.toString('latin1'); });
    socket.on('end', () => { closedByServer = true; });
    socket.on('error', () => { closedByServer = true; });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ answer, closedByServer });
    });
  });
}

describe('HTTP listener before authentication', () => {
  let atrium: RunningAtrium;
  let port: number;
  before(async () => {
    atrium = await startAtrium();
    port = (atrium.app.server.address() as net.AddressInfo).port;
  });
  after(() => atrium.close());

  it('answers a WebSocket upgrade as a plain request (401), never 101 Switching Protocols', async () => {
    const { answer } = await exchange(port,
      'GET /dicom-web/studies HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n');
    assert.match(answer, /^HTTP\/1\.1 401 /);
    assert.doesNotMatch(answer, /^HTTP\/1\.1 101/m);
  });

  it('closes a CONNECT tunnel request without opening anything', async () => {
    const { answer, closedByServer } = await exchange(port, 'CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n');
    assert.equal(closedByServer, true);
    assert.doesNotMatch(answer, /^HTTP\/1\.1 200/);
  });

  it('refuses a request carrying both Transfer-Encoding and Content-Length (smuggling) with 400', async () => {
    const { answer } = await exchange(port, 'POST /auth/local HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n');
    assert.match(answer, /^HTTP\/1\.1 400 /);
  });

  it('answers garbage with 400 and closes', async () => {
    const { answer, closedByServer } = await exchange(port, '\x16\x03\x01\x02\x00GARBAGE \x00\xff\r\n\r\n');
    assert.match(answer, /^HTTP\/1\.1 400 /);
    assert.equal(closedByServer, true);
  });

  it('goes on answering after all of them', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/health`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: 'ok' });
  });
});

for (const db of testDatabases()) {
  describe(`NUL characters and long path parameters on ${db.name}`, () => {
    let atrium: RunningAtrium;
    let cleanup: () => Promise<void>;
    before(async () => {
      const opened = await db.open();
      cleanup = opened.cleanup;
      atrium = await startAtrium({ index: opened.config });
    });
    after(async () => {
      await atrium?.close();
      await cleanup?.();
    });
    const auth = () => ({ authorization: `Bearer ${atrium.tokens['CHU-NORD']}` });

    it('answers 400 to a query holding a NUL character (PostgreSQL cannot compare one: it was a 500)', async () => {
      for (const q of ['PatientID=%00', 'PatientName=DUP%00ONT*', 'StudyInstanceUID=1.2%003']) {
        const res = await fetch(`${atrium.dicomweb}/studies?${q}`, { headers: auth() });
        assert.equal(res.status, 400, q);
        assert.match(res.headers.get('content-type') ?? '', /application\/problem\+json/);
      }
      assert.equal((await fetch(`${atrium.dicomweb}/studies?PatientID=X`, { headers: auth() })).status, 200);
    });

    it('answers 400 to a JSON body holding a NUL character in any string', async () => {
      const base = atrium.dicomweb.replace('/dicom-web', '');
      const res = await fetch(`${base}/auth/local`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ login: 'dr\u0000x', password: 'p' }) });
      assert.equal(res.status, 400);
      const nested = await fetch(`${base}/api/corrections/reject`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/json' }, body: JSON.stringify({ SOPInstanceUID: '1.2.3', reason: ['ok', { deep: 'a\u0000' }] }) });
      assert.equal(nested.status, 400);
    });

    it('takes a WADO-RS frame list of hundreds of characters (answered for what it names, not refused as a bad request)', async () => {
      const frames = Array.from({ length: 80 }, (_, i) => i + 1).join(',');
      const res = await fetch(`${atrium.dicomweb}/studies/1.2.3/series/1.2.4/instances/1.2.5/frames/${frames}`, { headers: auth() });
      assert.equal(res.status, 404, 'an unknown instance, whatever the length of its frame list');
    });
  });
}
