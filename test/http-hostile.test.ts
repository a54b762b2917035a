/**
 * The HTTP listener against requests a hostile client sends before it is anyone: protocol
 * switches, tunnels, request smuggling and garbage get an answer or a closed connection,
 * never a switched protocol, and the server goes on answering.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';

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
