/**
 * Routing: which arriving objects go to which peers. The rules are matched against the
 * outbox events that ingest writes in the same transaction as the index rows, and what
 * they select is queued in the forwarding queue (src/index/forwarding-queue.ts), in the
 * same transaction that moves routing's position in the outbox. Ingest never waits on a peer.
 */
import type { Logger } from 'pino';
import type { SqlRestriction } from '../index/records.ts';
import type { Archive } from '../archive/archive.ts';
import { ConfigError, type PeerConfig, type RoutingRule } from '../config/config.ts';
import type { PeerDirectory } from '../config/peer-directory.ts';
import type { ForwardItem, ForwardingQueue } from '../index/forwarding-queue.ts';
import type { SqlDatabase } from '../index/sql.ts';
import type { OutboxEvent } from '../events/outbox.ts';
import { OutboxConsumer } from '../events/consumer.ts';

/** What a rule looks at: the object as the outbox event and the index describe it. */
export interface ArrivedObject {
  siteCode: string | undefined;
  Modality: string | undefined;
  SOPClassUID: string;
  /** Read only when a rule asks for it (it is in the stored object's meta header). */
  callingAETitle: () => Promise<string | undefined>;
}

/** The rules an object meets, each with its destinations. */
export async function matchRules(rules: readonly RoutingRule[], obj: ArrivedObject): Promise<RoutingRule[]> {
  const matched: RoutingRule[] = [];
  let calling: Promise<string | undefined> | undefined;
  for (const rule of rules) {
    if (rule.sites && (obj.siteCode === undefined || !rule.sites.includes(obj.siteCode))) continue;
    if (rule.modalities && (obj.Modality === undefined || !rule.modalities.includes(obj.Modality.trim().toUpperCase()))) continue;
    if (rule.SOPClassUIDs && !rule.SOPClassUIDs.includes(obj.SOPClassUID)) continue;
    if (rule.callingAETitles) {
      calling ??= obj.callingAETitle();
      const ae = await calling;
      if (ae === undefined || !rule.callingAETitles.includes(ae)) continue;
    }
    matched.push(rule);
  }
  return matched;
}

/** What ingest writes in an instance event's payload (src/index/archive-index.ts eventPayload). */
interface InstanceEventPayload {
  siteId: number;
  blobKey: string;
  StudyInstanceUID: string;
  SeriesInstanceUID: string;
  SOPInstanceUID: string;
  SOPClassUID: string;
}

/** Events after which an object is (again) current and may have to be sent. */
const routedEvents = new Set(['instance.stored', 'instance.replaced']);

/** The outbox consumer of routing: its position is 'routing' (the Forwarder polls it). */
/**
 * The rules' destinations, checked at start once the index is open: each must be a peer with an
 * address, of the configuration file or added in the portal (the file's are checked on loading it).
 */
export async function checkRoutingDestinations(rules: readonly RoutingRule[], peers: PeerDirectory): Promise<void> {
  for (const [i, rule] of rules.entries()) {
    for (const d of rule.destinations) {
      const peer = await peers.find(d);
      const where = `routing.rules[${i}] (${rule.name}).destinations`;
      if (!peer) throw new ConfigError(`${where}: ${d} is not a configured peer (neither in the configuration file nor added in the portal)`);
      if (!peer.host || !peer.port) throw new ConfigError(`${where}: peer ${d} has no host and port to send to`);
    }
  }
}

/** The names of the rules that send to this AE title. */
export function rulesSendingTo(rules: readonly RoutingRule[], aeTitle: string): string[] {
  return rules.filter((r) => r.destinations.includes(aeTitle)).map((r) => r.name);
}

export const ROUTING_CONSUMER = 'routing';

/** The stored object's head that holds its meta header (group 0002 is short; 64 KiB is plenty). */
const metaHeaderBytes = 64 * 1024;

/**
 * The outbox consumer of routing: matches each batch of arrived objects against the rules
 * and queues what they select in the transaction that moves its position, so that an object
 * is queued once, with one node or several. It runs only when there are rules.
 */
export class Router extends OutboxConsumer {
  constructor(
    private readonly archive: Archive,
    private readonly queue: ForwardingQueue,
    private readonly rules: readonly RoutingRule[],
    logger: Logger,
    batch = 500,
  ) {
    super(archive.outbox, ROUTING_CONSUMER, logger, batch, 0);
  }

  protected async apply(tx: SqlDatabase, events: OutboxEvent[]): Promise<void> {
    const instanceEvents = events
      .filter((e) => routedEvents.has(e.type))
      .map((e) => e.payload as InstanceEventPayload);
    const modalities = await this.queue.seriesModalities([...new Set(instanceEvents.map((p) => p.SeriesInstanceUID))], tx);
    const items: ForwardItem[] = [];
    for (const p of instanceEvents) {
      const rules = await matchRules(this.rules, {
        siteCode: this.archive.siteById.get(p.siteId)?.code,
        Modality: modalities.get(p.SeriesInstanceUID),
        SOPClassUID: p.SOPClassUID,
        callingAETitle: () => this.callingAETitleOf(p.blobKey),
      });
      for (const rule of rules) {
        for (const destination of rule.destinations) {
          items.push({ SOPInstanceUID: p.SOPInstanceUID, StudyInstanceUID: p.StudyInstanceUID, destination, reason: rule.name });
        }
      }
    }
    const queued = await this.queue.enqueueIn(tx, items);
    if (queued > 0) this.logger.debug({ events: events.length, queued }, 'routing: objects queued for forwarding');
  }

  /** The AE title that sent the object, from the meta header Atrium wrote in front of it (read from the blob, not the index). */
  private async callingAETitleOf(blobKey: string): Promise<string | undefined> {
    let stream: NodeJS.ReadableStream;
    try {
      stream = await this.archive.store.get(blobKey, { start: 0, end: metaHeaderBytes - 1 });
    } catch {
      return undefined; // replaced or deleted since: a later event covers it
    }
    const chunks: Buffer[] = [];
    for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c);
    return fileMetaString(Buffer.concat(chunks), 0x0016);
  }
}

/**
 * A string element of group 0002 (always explicit VR little endian, PS3.10 7.1), by
 * element number; undefined when absent.
 */
export function fileMetaString(head: Buffer, element: number): string | undefined {
  let at = 132;
  while (at + 8 <= head.length) {
    const group = head.readUInt16LE(at);
    if (group !== 0x0002) return undefined;
    const el = head.readUInt16LE(at + 2);
    const vr = head.toString('latin1', at + 4, at + 6);
    const long = ['OB', 'OW', 'OF', 'SQ', 'UT', 'UN', 'UC', 'UR', 'OD', 'OL', 'OV'].includes(vr);
    const length = long ? head.readUInt32LE(at + 8) : head.readUInt16LE(at + 6);
    const start = at + (long ? 12 : 8);
    if (start + length > head.length) return undefined;
    if (el === element) return head.toString('latin1', start, start + length).replace(/[\0 ]+$/, '').trim();
    at = start + length;
  }
  return undefined;
}

export class PrefetchError extends Error {
  override readonly name = 'PrefetchError';
}

/**
 * Queues a patient's studies held by the archive for a peer (the priors of a scheduled
 * exam, to a reading workstation), most recent first. The patient is named by PatientID
 * and IssuerOfPatientID: exact values, no wildcards.
 */
export async function prefetchPriors(
  archive: Archive,
  queue: ForwardingQueue,
  patient: { PatientID: string; IssuerOfPatientID: string },
  destination: PeerConfig,
  options: { maxStudies?: number; restriction?: SqlRestriction } = {},
): Promise<{ studies: number; instances: number }> {
  if (!destination.host || !destination.port) throw new PrefetchError(`peer ${destination.aeTitle} has no host and port to send to`);
  for (const [key, value] of Object.entries(patient)) {
    if (value === '' || /[*?\\]/.test(value)) throw new PrefetchError(`${key} must be one exact value (no wildcard, no list)`);
  }
  const studies = await archive.index.searchStudies({
    level: 'study',
    matches: { PatientID: patient.PatientID, IssuerOfPatientID: patient.IssuerOfPatientID },
    fuzzymatching: false,
    limit: options.maxStudies ?? 0,
    offset: 0,
    // Only the priors the requester may see leave for the destination.
    ...(options.restriction ? { restriction: options.restriction } : {}),
  });
  const items: ForwardItem[] = [];
  for (const s of studies) {
    const StudyInstanceUID = s.study.StudyInstanceUID;
    for (const inst of await archive.index.getStoredInstances({ StudyInstanceUID })) {
      items.push({ SOPInstanceUID: inst.SOPInstanceUID, StudyInstanceUID, destination: destination.aeTitle, reason: 'prefetch' });
    }
  }
  await queue.enqueue(items);
  return { studies: studies.length, instances: items.length };
}
