/**
 * Content negotiation of the DICOMweb resources (PS3.18 8.7): which representation of a
 * resource answers an Accept header. The Accept list is tried in order of preference
 * (parseAcceptPreferences: q, then concrete types before wildcards, then the order given);
 * the first entry the resource can be sent in wins, and only when none can is the answer 406.
 */
import { TransferSyntax } from '../dicom/dataset.ts';
import type { StoredInstance } from '../index/records.ts';
import { parseAcceptPreferences, type AcceptedMediaType } from './media-type.ts';
import { HttpProblem } from './problem.ts';

/**
 * What one acceptable media range asks of an instance resource (study, series, instance):
 * Part 10 objects in a transfer syntax ('default': PS3.18's default for the object, '*': as
 * stored), or the instances' bulk data (PS3.18 10.4.3.3.5, example B.10).
 */
export type InstanceChoice = { kind: 'dicom'; transferSyntax: string } | { kind: 'bulkdata' };

/** Transfer syntaxes PS3.18 8.7.3 forbids on the web (implicit VR, big endian). */
const notOnTheWeb: ReadonlySet<string> = new Set([TransferSyntax.ImplicitVRLittleEndian, TransferSyntax.ExplicitVRBigEndian]);

/**
 * Syntaxes whose pixel data may be lossy. PS3.18 8.7.3: when the origin server has the pixel
 * data only in lossy form, the default answer is that form, not explicit VR little endian.
 */
const lossy: ReadonlySet<string> = new Set([
  TransferSyntax.JPEGBaseline8Bit, TransferSyntax.JPEGExtended12Bit, TransferSyntax.JPEGLSNearLossless,
  TransferSyntax.JPEG2000, TransferSyntax.JPEG2000MC, TransferSyntax.HTJ2K,
  TransferSyntax.MPEG2MPML, TransferSyntax.MPEG2MPHL, TransferSyntax.MPEG4HP41, TransferSyntax.MPEG4HP41BD, TransferSyntax.HEVCMP51,
]);

function acceptable(accept: string | undefined): AcceptedMediaType[] {
  return parseAcceptPreferences(accept).filter((r) => r.q > 0);
}

/** The `type` parameter of a multipart range, lower-case; undefined when absent. */
const partType = (r: AcceptedMediaType): string | undefined => r.params.type?.toLowerCase();

/**
 * The acceptable representations of an instance resource, most preferred first. A single-part
 * `application/dicom` is not one of them: PS3.18 answers study, series and instance resources
 * as multipart/related, one part an instance.
 */
export function instanceChoices(accept: string | undefined): InstanceChoice[] {
  const ranges = acceptable(accept);
  if (ranges.length === 0) return [{ kind: 'dicom', transferSyntax: 'default' }];
  const choices: InstanceChoice[] = [];
  for (const r of ranges) {
    if (r.type === '*/*' || r.type === 'multipart/*' || (r.type === 'multipart/related' && partType(r) === undefined)) {
      // Anything goes: the default first, then the object as stored rather than nothing.
      choices.push({ kind: 'dicom', transferSyntax: 'default' }, { kind: 'dicom', transferSyntax: '*' });
    } else if (r.type === 'multipart/related' && partType(r) === 'application/dicom') {
      choices.push({ kind: 'dicom', transferSyntax: r.params['transfer-syntax'] ?? 'default' });
    } else if (r.type === 'multipart/related' && partType(r) === 'application/octet-stream') {
      choices.push({ kind: 'bulkdata' });
    }
  }
  return choices;
}

/** What an instance can be sent as: the retriever's answer (re-encoding, decoding). */
export type CanSendAs = (inst: StoredInstance, transferSyntaxUID: string) => boolean;

/** The transfer syntax ('*' = as stored) a dicom choice sends this instance in, or why it cannot. */
function syntaxFor(inst: StoredInstance, wanted: string, canSendAs: CanSendAs): { ts: string } | { why: string } {
  const stored = inst.TransferSyntaxUID;
  if (wanted === '*') return { ts: '*' };
  if (wanted === 'default') {
    // Decoding a lossy original would only make it larger, not better: it goes as stored.
    if (lossy.has(stored)) return { ts: '*' };
    if (canSendAs(inst, TransferSyntax.ExplicitVRLittleEndian)) return { ts: TransferSyntax.ExplicitVRLittleEndian };
    return { why: `${stored} is not decoded by Atrium yet (ask for transfer-syntax=* to have it as stored)` };
  }
  if (notOnTheWeb.has(wanted)) return { why: `${wanted} is not used with web services (PS3.18 8.7.3)` };
  if (canSendAs(inst, wanted)) return { ts: wanted === stored ? '*' : wanted };
  return { why: `it cannot be sent as ${wanted}` };
}

/** Whether an instance's bulk data can be sent as application/octet-stream (little-endian native values). */
export function bulkDataSendable(inst: StoredInstance): boolean {
  return inst.TransferSyntaxUID === TransferSyntax.ExplicitVRLittleEndian || inst.TransferSyntaxUID === TransferSyntax.ImplicitVRLittleEndian;
}

export type InstancePlan =
  | { kind: 'dicom'; items: Array<{ inst: StoredInstance; transferSyntaxUID: string }> }
  | { kind: 'bulkdata'; items: StoredInstance[] };

/**
 * The representation of an instance resource's answer: the first acceptable kind (Part 10
 * objects or bulk data) every instance can be sent in, each instance in the first acceptable
 * transfer syntax it can be sent in. 406 when there is none, saying why for the first instance
 * that cannot be sent.
 */
export function planInstances(accept: string | undefined, instances: readonly StoredInstance[], canSendAs: CanSendAs): InstancePlan {
  const choices = instanceChoices(accept);
  if (choices.length === 0) {
    throw new HttpProblem(406, `study, series and instance resources are multipart/related of application/dicom (or application/octet-stream for bulk data), none of which ${accept} accepts`);
  }
  const reasons: string[] = [];
  for (const kind of new Set(choices.map((c) => c.kind))) {
    if (kind === 'bulkdata') {
      const refused = instances.find((i) => !bulkDataSendable(i));
      if (!refused) return { kind, items: [...instances] };
      reasons.push(`the bulk data of instance ${refused.SOPInstanceUID} is stored as ${refused.TransferSyntaxUID}, not as little-endian values`);
      continue;
    }
    const wanted = choices.flatMap((c) => (c.kind === 'dicom' ? [c.transferSyntax] : []));
    const items: Array<{ inst: StoredInstance; transferSyntaxUID: string }> = [];
    for (const inst of instances) {
      const why: string[] = [];
      const sendable = wanted.some((w) => {
        const r = syntaxFor(inst, w, canSendAs);
        if ('why' in r) why.push(r.why);
        else items.push({ inst, transferSyntaxUID: r.ts });
        return 'ts' in r;
      });
      if (!sendable) {
        reasons.push(`instance ${inst.SOPInstanceUID} is stored as ${inst.TransferSyntaxUID}: ${[...new Set(why)].join('; ')}`);
        break;
      }
    }
    if (items.length === instances.length) return { kind, items };
  }
  throw new HttpProblem(406, `nothing that ${accept ?? 'the request'} accepts can be sent: ${reasons.join('; ')}`);
}

/** The representations of metadata and search answers: DICOM JSON, or multipart Native DICOM Model XML (PS3.19 A). */
export type DatasetsFormat = 'json' | 'xml';

/**
 * Metadata (PS3.18 10.4) and search (10.6) answers: application/dicom+json (the default), or
 * multipart/related of application/dicom+xml, one part a dataset. 406 for anything else (a
 * search asked for image/jpeg).
 */
export function negotiateDatasets(accept: string | undefined, what: string): DatasetsFormat {
  const ranges = acceptable(accept);
  if (ranges.length === 0) return 'json';
  for (const r of ranges) {
    if (r.type === '*/*' || r.type === 'application/*' || r.type === 'application/dicom+json' || r.type === 'application/json') return 'json';
    if ((r.type === 'multipart/related' || r.type === 'multipart/*') && partType(r) === 'application/dicom+xml') return 'xml';
  }
  throw new HttpProblem(406, `${what} is application/dicom+json or multipart/related; type="application/dicom+xml", not ${accept}`);
}

