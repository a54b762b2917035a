import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import YAML from 'yaml';
import { ConfigError, isValidAETitle, loadConfig, type AtriumConfig, type PeerConfig } from '../config/config.ts';

export interface PeerAddOptions {
  site?: string[];
  host?: string;
  port?: string;
  store?: boolean;
  query?: boolean;
  retrieve?: boolean;
}

const peerAddUsage = 'atrium peer add <AE> --site CODE [--host H --port P] [--store] [--query] [--retrieve]';

/** The peers entry of `atrium peer add`, as the configuration file writes it (and the API's peers table keeps it). */
export function peerEntryOf(aeTitle: string | undefined, options: PeerAddOptions, config: AtriumConfig): Record<string, unknown> {
  if (!aeTitle) throw new ConfigError(peerAddUsage);
  if (!isValidAETitle(aeTitle)) throw new ConfigError(`${JSON.stringify(aeTitle)} is not a valid AE title (1-16 characters, no backslash)`);
  const site = options.site?.[0] ?? config.sites[0]!.code;
  if (!config.sites.some((s) => s.code === site)) throw new ConfigError(`--site ${site} is not a configured site (${config.sites.map((s) => s.code).join(', ')})`);
  if ((options.host === undefined) !== (options.port === undefined)) throw new ConfigError('--host and --port go together (a peer that only calls Atrium needs neither)');
  const port = options.port === undefined ? undefined : Number(options.port);
  if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) throw new ConfigError('--port must be a TCP port (1-65535)');
  if (config.peers.some((p) => p.aeTitle === aeTitle.trim())) throw new ConfigError(`peer ${aeTitle.trim()} is already configured`);
  // No permission named: a modality, which only sends its images.
  const none = !options.store && !options.query && !options.retrieve;
  const may: PeerConfig['may'] = { store: none || options.store === true, query: options.query === true, retrieve: options.retrieve === true };
  return { aeTitle: aeTitle.trim(), ...(options.host !== undefined ? { host: options.host, port } : {}), site, may };
}

/**
 * `atrium peer add`: adds a known DICOM peer to the configuration file (comments and layout
 * kept), after checking that the whole file still loads; with no configuration file (embedded
 * defaults), prints the YAML to put in one. `atrium serve` reads peers at start.
 */
export function runPeerCommand(config: AtriumConfig, file: string | undefined, positionals: string[], options: PeerAddOptions): number {
  if (positionals[0] !== 'add') throw new ConfigError(peerAddUsage);
  const entry = peerEntryOf(positionals[1], options, config);
  if (file === undefined) {
    const doc = new YAML.Document({ peers: [entry] });
    flowMay(doc);
    process.stderr.write('atrium: no configuration file (--config FILE or ATRIUM_CONFIG): put these lines in one, then start with `atrium serve --config FILE`\n');
    process.stdout.write(doc.toString());
    return 0;
  }
  writePeerEntry(config, file, entry);
  process.stdout.write(`${YAML.stringify({ added: entry })}restart atrium serve to take it into account\n`);
  return 0;
}

/**
 * Adds a peer to the configuration file as `atrium peer add` does (checked, written beside,
 * loaded as serve would, then put in place); what the administration API calls too.
 */
export function addPeerToFile(config: AtriumConfig, file: string, aeTitle: string, options: PeerAddOptions): Record<string, unknown> {
  const entry = peerEntryOf(aeTitle, options, config);
  writePeerEntry(config, file, entry);
  return entry;
}

function writePeerEntry(config: AtriumConfig, file: string, entry: Record<string, unknown>): void {
  if (!existsSync(file)) throw new ConfigError(`configuration file not found: ${file}`);
  const text = withPeer(readFileSync(file, 'utf8'), entry);
  // Written beside, loaded as serve would, then put in place: a file that would not start is never left behind.
  const candidate = `${file}.peer-add.tmp`;
  writeFileSync(candidate, text);
  try {
    loadConfig({ file: candidate, dataDir: config.dataDir });
    renameSync(candidate, file);
  } finally {
    rmSync(candidate, { force: true });
  }
}

/** `may: { store: true, ... }` on one line, as atrium.example.yaml writes it. */
function flowMay(doc: YAML.Document): void {
  const peers = doc.get('peers');
  if (!YAML.isSeq(peers)) return;
  for (const item of peers.items) {
    if (!YAML.isMap(item)) continue;
    const may = item.get('may', true);
    if (YAML.isMap(may)) may.flow = true;
  }
}

/** A peers list item as YAML lines, each indented by `indent`, ending with a newline. */
function itemText(entry: Record<string, unknown>, indent: string): string {
  const doc = new YAML.Document({ peers: [entry] });
  flowMay(doc);
  const lines = doc.toString().split('\n').slice(1).filter((l) => l !== '');
  return lines.map((l) => indent + l.slice(2)).join('\n') + '\n';
}

/**
 * The configuration text with one more peer, edited in place rather than re-printed: a
 * re-printed document would move its comments and restyle its lists.
 */
export function withPeer(text: string, entry: Record<string, unknown>): string {
  const doc = YAML.parseDocument(text);
  if (doc.errors.length > 0) throw new ConfigError(`the configuration file does not parse: ${doc.errors[0]!.message}`);
  const top = doc.contents;
  const pair = YAML.isMap(top) ? top.items.find((p) => YAML.isScalar(p.key) && p.key.value === 'peers') : undefined;
  const value = pair?.value;
  if (pair === undefined || value === null || value === undefined) {
    // No peers key (or an empty one): a block at the end of the file.
    if (pair !== undefined) throw new ConfigError('peers: has no value in the configuration file; write peers: [] or remove it');
    return `${text}${text === '' || text.endsWith('\n') ? '' : '\n'}peers:\n${itemText(entry, '  ')}`;
  }
  if (!YAML.isSeq(value) || !value.range) throw new ConfigError('peers in the configuration file is not a list');
  const [start, end] = value.range;
  if (value.flow) {
    if (value.items.length > 0) throw new ConfigError('peers is a one-line [ ... ] list in the configuration file: write it as a block list (- aeTitle: ...) first');
    // `peers: []` becomes a block list.
    return `${text.slice(0, start).replace(/[ \t]+$/, '')}\n${itemText(entry, '  ').replace(/\n$/, '')}${text.slice(end)}`;
  }
  // After the last item, at the column of the list's dashes.
  const lineStart = text.lastIndexOf('\n', start - 1) + 1;
  const indent = ' '.repeat(start - lineStart);
  return `${text.slice(0, end)}${text[end - 1] === '\n' ? '' : '\n'}${itemText(entry, indent)}${text.slice(end)}`;
}

/** Where a newcomer's next step with DIMSE is, said in the log at start. */
export function dimseFirstStepHint(config: AtriumConfig, knownPeers = config.peers.length): string | undefined {
  if (!config.dimse.enabled || !config.dimse.requireKnownCallers || knownPeers > 0) return undefined;
  return `no DICOM peer is configured and unknown callers are refused: let a modality in with \`atrium peer add <AE> --site ${config.sites[0]!.code} --store\` (add --host H --port P --query --retrieve for a workstation), then restart; see docs/usage.md`;
}
