/** `atrium send`: DICOM files to a configured peer, as a storage SCU. */
import { existsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError, type AtriumConfig, type PeerConfig } from '../config/config.ts';
import { PeerDirectory } from '../config/peer-directory.ts';
import { openSqlDatabase } from '../index/sql.ts';
import { describeFile, NotPart10Error, sendFiles, type FileToSend } from '../dimse/send-files.ts';
import { dimseClientTls } from '../dimse/scu.ts';

async function* walk(p: string): AsyncGenerator<string> {
  const info = await stat(p);
  if (!info.isDirectory()) {
    yield p;
    return;
  }
  for (const entry of (await readdir(p)).sort()) yield* walk(path.join(p, entry));
}

/** The peer of this AE title: the configuration file's, else one an administrator added through the portal (in the index). */
async function peerOf(config: AtriumConfig, aeTitle: string): Promise<PeerConfig | undefined> {
  const filePeer = config.peers.find((p) => p.aeTitle === aeTitle);
  if (filePeer) return filePeer;
  if (config.index.engine === 'sqlite' && !existsSync(config.index.path)) return undefined;
  const sql = await openSqlDatabase(config.index);
  try {
    return await (await PeerDirectory.open(sql, config.peers)).find(aeTitle);
  } finally {
    await sql.close();
  }
}

export async function runSend(config: AtriumConfig, sources: string[], to: string | undefined, windowArg: string | undefined): Promise<number> {
  if (sources.length === 0) throw new ConfigError('atrium send needs files or folders to send');
  if (!to) throw new ConfigError('atrium send needs --to AE, a peer of the configuration');
  const peer = await peerOf(config, to);
  if (!peer?.host || !peer.port) throw new ConfigError(`--to ${to} is not a configured peer with host and port (in the configuration file or added in the portal)`);
  if (peer.tls && !config.dimse.tls) throw new ConfigError(`peer ${to} wants TLS but dimse.tls is not configured`);
  const window = windowArg === undefined ? undefined : Number(windowArg);
  if (window !== undefined && (!Number.isSafeInteger(window) || window < 1 || window > 64)) throw new ConfigError('--window must be a whole number from 1 to 64');
  const files: FileToSend[] = [];
  const skipped: string[] = [];
  for (const source of sources) {
    for await (const file of walk(source)) {
      try {
        files.push(await describeFile(file));
      } catch (e) {
        if (!(e instanceof NotPart10Error)) throw e;
        skipped.push(file);
      }
    }
  }
  const result = await sendFiles({
    host: peer.host, port: peer.port, calledAETitle: peer.aeTitle, callingAETitle: config.dimse.aeTitle,
    files, maxPduLength: config.dimse.maxPduLength, tls: peer.tls ? dimseClientTls(config.dimse) : undefined, window,
  });
  process.stdout.write(JSON.stringify({ to: peer.aeTitle, files: files.length, sent: result.sent, failed: result.failed, skipped, window: result.window }, null, 2) + '\n');
  process.stderr.write(`${result.sent} of ${files.length} files sent to ${peer.aeTitle} (${result.window} outstanding at most), ${result.failed.length} refused, ${skipped.length} skipped (not DICOM)\n`);
  return result.failed.length === 0 ? 0 : 1;
}
