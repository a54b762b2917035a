import { Readable, Transform } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Archive } from '../archive/archive.ts';
import { statusOfIngestError } from '../archive/ingest-error.ts';
import type { IngestResult } from '../archive/ingest.ts';
import { RetrieveError, notInArchive } from '../archive/retrieve.ts';
import { planMediaExport, zipOfMediaExport } from '../archive/export.ts';
import { parseViewportParam, parseWindowParam, type RenderOptions } from '../archive/render.ts';
import { TransferSyntax, isNativeTransferSyntax } from '../dicom/dataset.ts';
import { canDecode, type ImagePixelModule } from '../archive/pixels.ts';
import { readAhead } from '../lib/read-ahead.ts';
import type { QueryLevel, StoredInstance } from '../index/records.ts';
import { parseAccept, parseMediaType } from './media-type.ts';
import { negotiateDatasets, planInstances } from './negotiation.ts';
import { MultipartError, multipartBoundary, readMultipart, sendMultipart, writeMultipart, type MultipartSource } from './multipart.ts';
import { HttpProblem, httpStatusOf, sendProblem } from './problem.ts';
import { addIncludedFields, instanceJson, limitCappedWarning, parseQidoQuery, resultsCappedWarning, seriesJson, studyJson } from './qido.ts';
import { personMatches } from '../patients/person-query.ts';
import { AuditTrail, patientRefOf, patientRefsOfStudies } from '../access/audit.ts';
import { recordIdentityConflicts } from '../access/identity-conflicts.ts';
import { actorOf as principalActor, homeSiteOf } from '../access/principal.ts';
import { AccessPolicy, may, reasonToSee, scopeCondition } from '../access/policy.ts';
import { scopeOfRequest } from '../api/access-scope.ts';
import { decideConsumerRead, kosHeader } from '../access/drimbox.ts';
import { coercePatientJson, storedPatientDiffers } from '../archive/coercion.ts';
import type { ArchiveIndex } from '../index/archive-index.ts';
import { stringifyDicomJson, type DicomJsonDataset } from '../dicom/json.ts';
import { nativeDicomModelXml } from '../dicom/xml.ts';

export interface DicomwebOptions {
  archive: Archive;
  /** Largest accepted STOW-RS body, in bytes. */
  maxRequestBytes: number;
  publicBaseUrl?: string;
}

type Params = { study?: string; series?: string; instance?: string; frames?: string; tagPath?: string };

/** Warning Reason (0008,1196) of a stored object that does not follow its IOD (PS3.4 Annex B.2.3). */
const warningDatasetDoesNotMatchSOPClass = 0xb007;

/** Objects of one STOW-RS request whose ingest may run at once (see stow below). */
const stowOverlap = 4;

/** DICOMweb (PS3.18) under /dicom-web: STOW-RS, QIDO-RS, WADO-RS. Routes translate; the archive decides. */
export async function dicomwebRoutes(app: FastifyInstance, options: DicomwebOptions): Promise<void> {
  const audit = new AuditTrail(options.archive.index.sql);
  const { siteById } = options.archive;
  // The study's patient as the preHandler found it, for the handler to reuse.
  const studyPatients = new WeakMap<FastifyRequest, Awaited<ReturnType<ArchiveIndex['studyPatient']>>>();
  const actorOf = (request: FastifyRequest) => ({ ...principalActor(request.principal!), source: request.ip, via: 'dicomweb' as const });
  const policy = new AccessPolicy(options.archive.index.sql);
  // Every read of a study (WADO-RS, rendered, bulk, archive) is decided and recorded before
  // it is answered. What the caller may not see is answered as if it were not there. Every
  // method but STOW-RS's POST (a store, decided as one) is a read: HEAD, which Fastify adds
  // to each GET route, answers the same status and length as GET, so it is decided alike.
  app.addHook('preHandler', async (request: FastifyRequest) => {
    const params = request.params as Params | undefined;
    const study = params?.study;
    const route = request.routeOptions.url ?? '';
    // A remote DRIMbox consumer reads only what the manifest it names lists (access/drimbox.ts).
    if (request.principal?.kind === 'remote-professional') {
      const row = await decideConsumerRead(options.archive.index, siteById, audit, {
        principal: request.principal, method: request.method, route, params: params ?? {}, kos: request.headers[kosHeader], source: request.ip,
      });
      if (!row) throw study ? notInArchive({ StudyInstanceUID: study, SeriesInstanceUID: params?.series, SOPInstanceUID: params?.instance }) : new HttpProblem(404, 'no such resource');
      studyPatients.set(request, row);
      return;
    }
    if (request.method === 'POST' || !study || /\/(series|instances)$/.test(route)) return;
    const row = await options.archive.index.studyPatient(study);
    studyPatients.set(request, row);
    if (!row) return;
    const access = reasonToSee(await scopeOfRequest(policy, request), row);
    const download = /\/archive$/.test(route) || /\/studies\/:study(\/series\/:series(\/instances\/:instance)?)?$/.test(route);
    await audit.record({
      action: download ? 'download' : 'view', outcome: access ? 'success' : 'refused', ...actorOf(request), StudyInstanceUID: study,
      patients: [patientRefOf(siteById, row)],
      details: { route, method: request.method, ...params, ...(access ? { access } : {}) },
    });
    if (!access) throw notInArchive({ StudyInstanceUID: study, SeriesInstanceUID: params.series, SOPInstanceUID: params.instance });
  });
  const { archive } = options;
  // Bodies are streamed to the ingest pipeline, never buffered by the framework.
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));

  const baseUrlOf = (request: FastifyRequest): string =>
    (options.publicBaseUrl ?? `${request.protocol}://${request.host}`) + '/dicom-web';

  app.setErrorHandler((error, request, reply) => {
    const status = httpStatusOf(error) === 500 && typeof (error as { statusCode?: unknown }).statusCode === 'number'
      ? (error as { statusCode: number }).statusCode
      : httpStatusOf(error);
    if (status >= 500) request.log.error({ err: error }, 'request failed');
    if (reply.sent || reply.raw.headersSent) {
      reply.raw.destroy();
      return;
    }
    // An answer given before the body was read whole (413 half-way through a STOW-RS upload):
    // the rest of the body is not read, so the connection cannot be reused.
    if (!request.raw.complete) reply.header('Connection', 'close');
    return sendProblem(reply, status, status >= 500 ? 'internal error' : (error as Error).message);
  });

  // ---- STOW-RS --------------------------------------------------------------
  const stow = async (request: FastifyRequest<{ Params: Params }>, reply: FastifyReply) => {
    const site = homeSiteOf(request.principal!);
    if (!may(request.principal!, 'store')) {
      await audit.record({ action: 'store', outcome: 'refused', ...actorOf(request), details: { why: 'not allowed to store' } });
      throw new HttpProblem(403, 'this caller may not store objects');
    }
    if (!site) throw new HttpProblem(403, 'the caller stores for no single site: objects cannot be filed');
    const contentType = request.headers['content-type'];
    if (!contentType) throw new HttpProblem(415, 'STOW-RS needs Content-Type: multipart/related; type="application/dicom"');
    const mt = parseMediaType(contentType);
    if (mt.type !== 'multipart/related') throw new HttpProblem(415, `STOW-RS takes multipart/related, not ${mt.type}`);
    const partType = mt.params.type?.toLowerCase();
    if (partType !== undefined && partType !== 'application/dicom') {
      throw new HttpProblem(415, `Atrium stores application/dicom parts; ${partType} is not supported`);
    }
    const boundary = mt.params.boundary;
    if (!boundary) throw new HttpProblem(400, 'multipart/related without a boundary parameter');
    const declared = Number(request.headers['content-length'] ?? 0);
    if (declared > options.maxRequestBytes) throw new HttpProblem(413, `the request is larger than ${options.maxRequestBytes} bytes`);

    const body = (request.body as Readable).pipe(byteLimit(options.maxRequestBytes));
    // Parts arrive one after the other, but each object's durability work (fsync, rename,
    // index commit) overlaps the reception of the next ones. At most stowOverlap objects
    // are in flight.
    const pending: Array<Promise<IngestResult | { ok: false; unsupported: string }>> = [];
    try {
      for await (const part of readMultipart(body, boundary)) {
        const type = part.contentType ? parseMediaType(part.contentType).type : partType ?? 'application/dicom';
        if (type !== 'application/dicom') {
          part.body.resume();
          pending.push(Promise.resolve({ ok: false, unsupported: type }));
          continue;
        }
        if (pending.length >= stowOverlap) await pending[pending.length - stowOverlap];
        const ingest = archive.ingestor.ingestInstance(part.body, {
          site,
          via: 'stow-rs',
          expectedStudyInstanceUID: request.params.study,
        });
        // Observed below; marked handled now so that a failure while the loop waits is not fatal.
        ingest.catch(() => {});
        pending.push(ingest);
        // The next part comes once this body is read to its end (or the ingest gave up on it).
        await Promise.race([finished(part.body).catch(() => {}), ingest.catch(() => {})]);
      }
    } catch (e) {
      // The request fails as a whole; objects already received finish their ingest first.
      await Promise.allSettled(pending);
      throw e;
    }
    const results = await Promise.all(pending);
    if (results.length === 0) throw new HttpProblem(400, 'the multipart body holds no part');
    const baseUrl = baseUrlOf(request);
    const response: DicomJsonDataset = {};
    const referenced: DicomJsonDataset[] = [];
    const failed: DicomJsonDataset[] = [];
    const studies = new Set<string>();
    let warned = 0;
    for (const r of results) {
      if (r.ok) {
        const i = r.instance;
        studies.add(i.StudyInstanceUID);
        const item: DicomJsonDataset = {
          '00081150': { vr: 'UI', Value: [i.SOPClassUID] },
          '00081155': { vr: 'UI', Value: [i.SOPInstanceUID] },
          '00081190': { vr: 'UR', Value: [`${baseUrl}/studies/${i.StudyInstanceUID}/series/${i.SeriesInstanceUID}/instances/${i.SOPInstanceUID}`] },
        };
        if (i.warnings.length > 0) {
          // Stored, but not as the standard would have it (a meta header that disagrees, extra pixel bytes...).
          item['00081196'] = { vr: 'US', Value: [warningDatasetDoesNotMatchSOPClass] };
          Object.assign(item, atriumComment(i.warnings.join('; ')));
          warned++;
        }
        referenced.push(item);
      } else {
        const item: DicomJsonDataset = {};
        if ('unsupported' in r) {
          item['00081197'] = { vr: 'US', Value: [0xc000] };
          Object.assign(item, atriumComment(`part of type ${r.unsupported} is not stored: only application/dicom parts are`));
        } else {
          if (r.SOPClassUID) item['00081150'] = { vr: 'UI', Value: [r.SOPClassUID] };
          if (r.SOPInstanceUID) item['00081155'] = { vr: 'UI', Value: [r.SOPInstanceUID] };
          item['00081197'] = { vr: 'US', Value: [statusOfIngestError(r.error.code)] };
          Object.assign(item, atriumComment(r.error.message));
        }
        failed.push(item);
      }
    }
    if (studies.size === 1) response['00081190'] = { vr: 'UR', Value: [`${baseUrl}/studies/${[...studies][0]}`] };
    if (failed.length > 0) response['00081198'] = { vr: 'SQ', Value: failed };
    if (referenced.length > 0) response['00081199'] = { vr: 'SQ', Value: referenced };
    // PS3.18 10.5.3: 200 all stored without warnings; 202 stored, with warnings or with failures of
    // some; 409 none stored.
    const status = referenced.length === 0 ? 409 : failed.length === 0 && warned === 0 ? 200 : 202;
    const storedStudies = [...new Set(results.flatMap((r) => (r.ok ? [r.instance.StudyInstanceUID] : [])))];
    const storedPatients = await patientRefsOfStudies(archive.index, siteById, storedStudies);
    await audit.record({
      action: 'store', outcome: failed.length === 0 ? 'success' : 'failure', ...actorOf(request), patients: storedPatients,
      details: { studies: storedStudies, stored: results.filter((r) => r.ok).length, refused: results.filter((r) => !r.ok).length },
    });
    // Identitovigilance learns what the sender is not told: each conflict with both sides.
    await recordIdentityConflicts(audit, archive.index, siteById, actorOf(request), results.map((r) => (!r.ok && 'error' in r ? r.error.conflict : undefined)));
    return reply.code(status).type('application/dicom+json').send(stringifyDicomJson(response));
  };
  app.post('/studies', stow);
  app.post('/studies/:study', stow);

  // ---- QIDO-RS --------------------------------------------------------------
  const qido = (level: QueryLevel) => async (request: FastifyRequest<{ Params: Params }>, reply: FastifyReply) => {
    const { query, includeFields, warnings, maxResults } = parseQidoQuery(level, new URLSearchParams(request.url.split('?')[1] ?? ''));
    const format = negotiateDatasets(request.headers.accept, 'a search answer');
    // More matches than the answer holds: the maximum, and a warning that says so (PS3.18 8.3.4.4).
    const capped = <T>(rows: T[]): T[] => {
      if (rows.length <= maxResults) return rows;
      if (!warnings.includes(limitCappedWarning)) warnings.push(resultsCappedWarning(maxResults));
      return rows.slice(0, maxResults);
    };
    query.matches = personMatches(query.matches);
    query.restriction = scopeCondition(await scopeOfRequest(policy, request));
    if (request.params.study) query.matches.StudyInstanceUID = request.params.study;
    if (request.params.series) query.matches.SeriesInstanceUID = request.params.series;
    const baseUrl = baseUrlOf(request);
    const wantsMore = includeFields === 'all' || includeFields.length > 0;
    let out: DicomJsonDataset[];
    const touched: string[] = [];
    const touch = (row: { siteId: number; patient: { IssuerOfPatientID: string; PatientID: string } }) => touched.push(patientRefOf(siteById, row));
    if (level === 'study') {
      const rows = capped(await archive.index.searchStudies(query));
      rows.forEach(touch);
      out = await Promise.all(rows.map(async (row) => {
        const json = studyJson(row, baseUrl);
        return wantsMore ? addIncludedFields(json, await firstMetadata(row.study.StudyInstanceUID), includeFields, level) : json;
      }));
    } else if (level === 'series') {
      const rows = capped(await archive.index.searchSeries(query));
      rows.forEach(touch);
      out = await Promise.all(rows.map(async (row) => {
        const json = seriesJson(row, baseUrl);
        return wantsMore ? addIncludedFields(json, await firstMetadata(row.study.StudyInstanceUID, row.series.SeriesInstanceUID), includeFields, level) : json;
      }));
    } else {
      const rows = capped(await archive.index.searchInstances(query));
      rows.forEach(touch);
      out = await Promise.all(rows.map(async (row) => {
        const json = instanceJson(row, baseUrl);
        return wantsMore
          ? addIncludedFields(json, await firstMetadata(row.study.StudyInstanceUID, row.series.SeriesInstanceUID, row.instance.SOPInstanceUID), includeFields, level)
          : json;
      }));
    }
    // Recorded before the answer leaves: no access without its trace.
    await audit.record({ action: 'query', outcome: 'success', ...actorOf(request), patients: touched, details: { level, matches: query.matches, results: out.length } });
    if (warnings.length > 0) reply.header('Warning', warnings);
    if (format === 'xml') return sendXmlParts(reply, out);
    return reply.type('application/dicom+json').send('[' + out.map(stringifyDicomJson).join(',') + ']');
  };
  const firstMetadata = async (StudyInstanceUID: string, SeriesInstanceUID?: string, SOPInstanceUID?: string): Promise<DicomJsonDataset> => {
    const [first] = await archive.index.getStoredInstances({ StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID });
    return first ? (JSON.parse(first.metadataJson) as DicomJsonDataset) : {};
  };
  app.get('/studies', qido('study'));
  app.get('/series', qido('series'));
  app.get('/instances', qido('instance'));
  app.get('/studies/:study/series', qido('series'));
  app.get('/studies/:study/instances', qido('instance'));
  app.get('/studies/:study/series/:series/instances', qido('instance'));

  // ---- WADO-RS: instances -----------------------------------------------------
  const instancesOf = (params: Params) => archive.retriever.findInstances({
    StudyInstanceUID: params.study!,
    SeriesInstanceUID: params.series,
    SOPInstanceUID: params.instance,
  });

  const retrieve = async (request: FastifyRequest<{ Params: Params }>, reply: FastifyReply) => {
    const instances = await instancesOf(request.params);
    // Negotiated for every instance before the first byte: what cannot be sent is a 406, not a cut body.
    const negotiated = planInstances(request.headers.accept, instances, (inst, ts) => archive.retriever.canSendAs(inst, ts));
    if (negotiated.kind === 'bulkdata') return sendBulkData(request, reply, negotiated.items);
    const plan = negotiated.items;
    const boundary = multipartBoundary();
    const opened = archive.retriever.openInstances(plan);
    // The first object is opened before answering: if it cannot be read, the answer is still an error status.
    const first = await opened.next();
    async function* parts(): AsyncGenerator<MultipartSource> {
      for (let item = first; !item.done; item = await opened.next()) {
        const { inst, transferSyntaxUID, body, release } = item.value;
        const sentAs = transferSyntaxUID === '*' ? inst.TransferSyntaxUID : transferSyntaxUID;
        yield { contentType: `application/dicom; transfer-syntax=${sentAs}`, body, ...(release ? { sent: release } : {}) };
      }
    }
    // The answer names a transfer syntax only when every part is in it.
    const syntaxes = new Set(plan.map((p) => (p.transferSyntaxUID === '*' ? p.inst.TransferSyntaxUID : p.transferSyntaxUID)));
    const tsParam = syntaxes.size === 1 ? `; transfer-syntax=${[...syntaxes][0]}` : '';
    await streamMultipart(request, reply, `multipart/related; type="application/dicom"; boundary=${boundary}${tsParam}`, parts(), boundary, opened);
  };
  // PS3.18 10.4.3.3.5 (example B.10): the bulk data of the instances, one part a value, each
  // named in Content-Location by the BulkDataURI its metadata gives it.
  const sendBulkData = async (request: FastifyRequest, reply: FastifyReply, instances: StoredInstance[]) => {
    const baseUrl = baseUrlOf(request);
    const values = instances.flatMap((inst) => Object.keys(inst.layout.bulk).map((path) => ({ inst, path })));
    const opened = readAhead(values, ({ inst, path }) => archive.retriever.openBulk(inst, path), 2, (body) => body.destroy());
    const first = await opened.next();
    async function* parts(): AsyncGenerator<MultipartSource> {
      for (let item = first; !item.done; item = await opened.next()) {
        const [{ inst, path }, body] = item.value;
        const url = `${baseUrl}/studies/${inst.StudyInstanceUID}/series/${inst.SeriesInstanceUID}/instances/${inst.SOPInstanceUID}/bulk/${path}`;
        yield { contentType: 'application/octet-stream', headers: { 'Content-Location': url }, body };
      }
    }
    const boundary = multipartBoundary();
    await streamMultipart(request, reply, `multipart/related; type="application/octet-stream"; boundary=${boundary}`, parts(), boundary, opened);
  };
  app.get('/studies/:study', retrieve);
  app.get('/studies/:study/series/:series', retrieve);
  app.get('/studies/:study/series/:series/instances/:instance', retrieve);

  // ---- Study as a ZIP of a media file-set (not PS3.18: what Orthanc's /studies/{id}/archive is) ----
  app.get('/studies/:study/archive', async (request: FastifyRequest<{ Params: Params }>, reply) => {
    // Planned before the first byte: an unknown study is still a 404.
    const plan = await planMediaExport(archive, [request.params.study!]);
    return reply
      .type('application/zip')
      .header('content-disposition', `attachment; filename="${request.params.study!.replace(/[^0-9.]/g, '')}.zip"`)
      .send(Readable.from(zipOfMediaExport(archive, plan), { objectMode: false }));
  });

  // ---- WADO-RS: metadata ------------------------------------------------------
  const metadata = async (request: FastifyRequest<{ Params: Params }>, reply: FastifyReply) => {
    const format = negotiateDatasets(request.headers.accept, 'metadata');
    const instances = await instancesOf(request.params);
    const baseUrl = baseUrlOf(request);
    const current = studyPatients.has(request) ? studyPatients.get(request)?.patient : (await archive.index.studyPatient(request.params.study!))?.patient;
    // The stored JSON is served as is (bulk data URIs made absolute), unless the study's
    // patient changed since (a merge, an identifier change): then the patient module says who it is now.
    const datasets = instances.map((i) => {
      const json = current && storedPatientDiffers(i.metadataJson, current) ? coercePatientJson(i.metadataJson, current) : i.metadataJson;
      return json.replaceAll('"atrium:bulk/', `"${baseUrl}/studies/${i.StudyInstanceUID}/series/${i.SeriesInstanceUID}/instances/${i.SOPInstanceUID}/bulk/`);
    });
    if (format === 'xml') return sendXmlParts(reply, datasets.map((d) => JSON.parse(d) as DicomJsonDataset));
    return reply.type('application/dicom+json').send('[' + datasets.join(',') + ']');
  };
  app.get('/studies/:study/metadata', metadata);
  app.get('/studies/:study/series/:series/metadata', metadata);
  app.get('/studies/:study/series/:series/instances/:instance/metadata', metadata);

  // ---- WADO-RS: frames and bulk data -------------------------------------------
  /** Frames as negotiated: as stored, decoded to native samples, or native ones encoded losslessly. */
  const readFramesAs = (as: FramesAs, inst: StoredInstance, frames: number[], px: ImagePixelModule) =>
    as === 'decoded' ? archive.retriever.readDecodedFrames(inst, frames, px)
      : typeof as === 'object' ? archive.retriever.readEncodedFrames(inst, frames, as.encode, px)
        : archive.retriever.readFrames(inst, frames, px);
  app.get('/studies/:study/series/:series/instances/:instance/frames/:frames', async (request: FastifyRequest<{ Params: Params }>, reply) => {
    const [inst] = await instancesOf(request.params);
    const numbers = parseFrameList(request.params.frames!);
    const px = archive.retriever.pixelModuleOf(inst!);
    const wanted = negotiateFrameTransferSyntax(request.headers.accept, inst!, (ts) => archive.retriever.canEncodeFrames(inst!, ts, px));
    // Every number is checked before the first byte: a frame that does not exist is a 404, not a cut body.
    archive.retriever.checkFrameNumbers(inst!, numbers, px);
    // One frame read at a time, a couple ahead of the socket, as the pixel data answer does:
    // a list of many large frames never sits whole in memory.
    const read = (f: number) => readFramesAs(wanted, inst!, [f], px);
    const framesOf = readAhead(numbers, read, 2);
    // The first frame is read before answering: if it cannot be, the answer is still an error status.
    const first = await framesOf.next();
    async function* parts(): AsyncGenerator<MultipartSource> {
      for (let item = first; !item.done; item = await framesOf.next()) {
        for (const f of item.value[1]) yield { contentType: frameMediaType(f.transferSyntaxUID), body: f.bytes };
      }
    }
    const firstFrame = first.done ? undefined : first.value[1][0];
    const type = firstFrame ? parseMediaType(frameMediaType(firstFrame.transferSyntaxUID)).type : 'application/octet-stream';
    const boundary = multipartBoundary();
    await streamMultipart(request, reply, `multipart/related; type="${type}"; boundary=${boundary}`, parts(), boundary, framesOf);
  });

  // ---- WADO-RS: pixel data of a study, series or instance (PS3.18 10.4.1.1.4) ----------
  // Every frame of every image, one part a frame, each named by its frame URL in
  // Content-Location: a viewer gets a whole series in one request instead of one per frame
  // (500 requests for a CT series, each with its own audit record).
  const pixelData = async (request: FastifyRequest<{ Params: Params }>, reply: FastifyReply) => {
    const images = (await instancesOf(request.params)).filter((i) => archive.retriever.hasPixelData(i));
    if (images.length === 0) throw new RetrieveError('not-found', 'no instance here has pixel data');
    // Negotiated for every instance before the first byte: what cannot be sent is a 406, not a cut body.
    const plan = images.map((inst) => ({ inst, as: negotiateFrameTransferSyntax(request.headers.accept, inst, (ts) => archive.retriever.canEncodeFrames(inst, ts)) }));
    const undecodable = plan.find((p) => p.as === 'decoded' && !isNativeTransferSyntax(p.inst.TransferSyntaxUID) && !canDecode(p.inst.TransferSyntaxUID));
    if (undecodable) throw new RetrieveError('not-acceptable', `frames of ${undecodable.inst.SOPInstanceUID} are stored as ${undecodable.inst.TransferSyntaxUID}, which Atrium does not decode`);
    const baseUrl = baseUrlOf(request);
    // Read a few frames at a time: a 2 GB multi-frame object never sits whole in memory.
    // Each instance's pixel module is read from its metadata once, not at every batch.
    const batches = plan.flatMap(({ inst, as }) => {
      const px = archive.retriever.pixelModuleOf(inst);
      const count = px.NumberOfFrames;
      const perBatch = framesPerBatch(px);
      return Array.from({ length: Math.ceil(count / perBatch) }, (_, b) => ({
        inst, as, px, frames: Array.from({ length: Math.min(perBatch, count - b * perBatch) }, (_, i) => b * perBatch + i + 1),
      }));
    });
    const read = ({ inst, as, px, frames }: (typeof batches)[number]) => readFramesAs(as, inst, frames, px);
    const boundary = multipartBoundary();
    const framesOf = readAhead(batches, read, 4);
    // The first frames are read before answering: if they cannot be, the answer is still an error status.
    const first = await framesOf.next();
    async function* parts(): AsyncGenerator<MultipartSource> {
      for (let item = first; !item.done; item = await framesOf.next()) {
        const [{ inst, frames: numbers }, frames] = item.value;
        const url = `${baseUrl}/studies/${inst.StudyInstanceUID}/series/${inst.SeriesInstanceUID}/instances/${inst.SOPInstanceUID}/frames/`;
        for (const [i, f] of frames.entries()) {
          yield { contentType: frameMediaType(f.transferSyntaxUID), headers: { 'Content-Location': `${url}${numbers[i]}` }, body: f.bytes };
        }
      }
    }
    const types = new Set(plan.map((p) => parseMediaType(frameMediaType(typeof p.as === 'object' ? p.as.encode
      : p.as === 'decoded' || isNativeTransferSyntax(p.inst.TransferSyntaxUID) ? TransferSyntax.ExplicitVRLittleEndian : p.inst.TransferSyntaxUID)).type));
    const type = types.size === 1 ? [...types][0]! : 'application/octet-stream';
    await streamMultipart(request, reply, `multipart/related; type="${type}"; boundary=${boundary}`, parts(), boundary, framesOf);
  };
  app.get('/studies/:study/pixeldata', pixelData);
  app.get('/studies/:study/series/:series/pixeldata', pixelData);
  app.get('/studies/:study/series/:series/instances/:instance/pixeldata', pixelData);

  app.get('/studies/:study/series/:series/instances/:instance/bulk/:tagPath', async (request: FastifyRequest<{ Params: Params }>, reply) => {
    const [inst] = await instancesOf(request.params);
    const body = await archive.retriever.openBulk(inst!, parseBulkTagPath(request.params.tagPath!));
    const accept = parseAccept(request.headers.accept);
    if (accept.some((a) => a.type === 'application/octet-stream') && !accept.some((a) => a.type === 'multipart/related')) {
      return reply.type('application/octet-stream').send(body);
    }
    const boundary = multipartBoundary();
    async function* parts() {
      yield { contentType: 'application/octet-stream', body };
    }
    return reply.type(`multipart/related; type="application/octet-stream"; boundary=${boundary}`).send(Readable.from(writeMultipart(parts(), boundary)));
  });

  // ---- WADO-RS: rendered and thumbnails -------------------------------------------
  const render = (kind: 'rendered' | 'thumbnail') => async (request: FastifyRequest<{ Params: Params; Querystring: Record<string, string> }>, reply: FastifyReply) => {
    const instances = await instancesOf(request.params);
    const renderable = instances.filter((i) => archive.retriever.hasPixelData(i));
    // A study's or series' picture is its middle image, as viewers show it.
    const inst = renderable[Math.floor(renderable.length / 2)];
    if (!inst) throw new RetrieveError('not-found', 'nothing to render: no instance with pixel data');
    const options = renderOptionsOf(request.headers.accept, request.query, kind);
    const frame = request.params.frames ? parseFrameList(request.params.frames) : [1];
    if (frame.length !== 1) throw new HttpProblem(400, 'a rendered frame is one frame');
    const image = await archive.retriever.renderFrame(inst, frame[0]!, options);
    return reply.type(options.format).send(image);
  };
  for (const kind of ['rendered', 'thumbnail'] as const) {
    app.get(`/studies/:study/${kind}`, render(kind));
    app.get(`/studies/:study/series/:series/${kind}`, render(kind));
    app.get(`/studies/:study/series/:series/instances/:instance/${kind}`, render(kind));
    app.get(`/studies/:study/series/:series/instances/:instance/frames/:frames/${kind}`, render(kind));
  }
}

/** Bytes of frames a pixel data answer reads at once, a few batches ahead of the socket. */
const pixelDataBatchBytes = 4 * 1024 * 1024;

/**
 * How many frames of a multi-frame object one read takes: about pixelDataBatchBytes of
 * native frames (compressed ones are smaller, decoded ones the same size).
 */
function framesPerBatch(px: ImagePixelModule): number {
  const nativeBytes = Math.max(1, (px.Rows * px.Columns * px.SamplesPerPixel * px.BitsAllocated) / 8);
  return Math.max(1, Math.floor(pixelDataBatchBytes / nativeBytes));
}

/**
 * A 200 multipart answer written straight to the socket, so that each part's buffer goes
 * back to its pool once the socket has taken it (see Retriever.openInstances). Once the
 * headers are gone a failure can only cut the body short; `source` (what the parts are
 * read from) is closed either way.
 */
async function streamMultipart(request: FastifyRequest, reply: FastifyReply, contentType: string, parts: AsyncIterable<MultipartSource>, boundary: string, source: AsyncGenerator<unknown>): Promise<void> {
  reply.hijack();
  reply.raw.writeHead(200, { 'content-type': contentType });
  try {
    await sendMultipart(reply.raw, parts, boundary);
  } catch (error) {
    if (!(error instanceof MultipartError)) request.log.error({ err: error }, 'retrieve failed while sending');
    reply.raw.destroy();
  } finally {
    await source.return(undefined);
  }
}

/** Datasets as multipart/related of application/dicom+xml, one part a dataset (PS3.18 8.7.3.3, PS3.19 A.1). */
function sendXmlParts(reply: FastifyReply, datasets: DicomJsonDataset[]): FastifyReply {
  const boundary = multipartBoundary();
  async function* parts(): AsyncGenerator<MultipartSource> {
    for (const ds of datasets) yield { contentType: 'application/dicom+xml; charset=utf-8', body: Buffer.from(nativeDicomModelXml(ds)) };
  }
  return reply.type(`multipart/related; type="application/dicom+xml"; boundary=${boundary}`).send(Readable.from(writeMultipart(parts(), boundary)));
}

/** Private block of ours in STOW-RS responses: a human-readable reason beside the status code. */
function atriumComment(text: string): DicomJsonDataset {
  return { '00090010': { vr: 'LO', Value: ['ATRIUM'] }, '00091001': { vr: 'UT', Value: [text] } };
}

function byteLimit(max: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _e, cb) {
      seen += chunk.length;
      if (seen > max) cb(new HttpProblem(413, `the request is larger than ${max} bytes`));
      else cb(null, chunk);
    },
  });
}

const frameTypes: Record<string, string> = {
  [TransferSyntax.JPEGBaseline8Bit]: 'image/jpeg',
  [TransferSyntax.JPEGExtended12Bit]: 'image/jpeg',
  [TransferSyntax.JPEGLossless]: 'image/jpeg',
  [TransferSyntax.JPEGLosslessSV1]: 'image/jpeg',
  [TransferSyntax.JPEGLSLossless]: 'image/jls',
  [TransferSyntax.JPEGLSNearLossless]: 'image/jls',
  [TransferSyntax.JPEG2000Lossless]: 'image/jp2',
  [TransferSyntax.JPEG2000]: 'image/jp2',
  [TransferSyntax.HTJ2KLossless]: 'image/jphc',
  [TransferSyntax.HTJ2KLosslessRPCL]: 'image/jphc',
  [TransferSyntax.HTJ2K]: 'image/jphc',
};

function frameMediaType(ts: string): string {
  return `${frameTypes[ts] ?? 'application/octet-stream'}; transfer-syntax=${ts}`;
}

/**
 * 'stored' sends frames as they are; 'decoded' sends native little-endian bytes; `encode` sends
 * native frames in the lossless syntax a range asks for (a viewer on a slow line: JPEG-LS is
 * about a third of a CT's native size). A compressed object goes as stored or decoded, never
 * re-encoded; a native one whose encoding was not asked for, or cannot be done, goes as stored.
 */
type FramesAs = 'stored' | 'decoded' | { encode: string };

function negotiateFrameTransferSyntax(accept: string | undefined, inst: StoredInstance, canEncode: (transferSyntaxUID: string) => boolean): FramesAs {
  const stored = inst.TransferSyntaxUID;
  const ranges = parseAccept(accept);
  if (isNativeTransferSyntax(stored)) {
    for (const r of ranges) {
      if (r.q === 0) continue;
      const ts = r.params['transfer-syntax'];
      if (ts === undefined || ts === '*' || isNativeTransferSyntax(ts)) return 'stored';
      if (canEncode(ts)) return { encode: ts };
    }
    return 'stored';
  }
  if (ranges.length === 0) return 'stored';
  for (const r of ranges) {
    if (r.q === 0) continue;
    const type = r.type === 'multipart/related' ? (r.params.type?.toLowerCase() ?? 'application/octet-stream') : r.type;
    const ts = r.params['transfer-syntax'];
    if (type === '*/*' || ts === '*' || ts === stored) return 'stored';
    if (type === frameTypes[stored] && ts === undefined) return 'stored';
    if (type === 'application/octet-stream' && (ts === undefined || ts === TransferSyntax.ExplicitVRLittleEndian)) return 'decoded';
  }
  throw new HttpProblem(406, `frames are stored as ${stored}; none of the accepted media types (${accept}) can carry them`);
}

function parseFrameList(s: string): number[] {
  if (!/^\d+(,\d+)*$/.test(s)) throw new HttpProblem(400, `frame list must be comma-separated numbers from 1, not ${JSON.stringify(s)}`);
  const frames = s.split(',').map(Number);
  if (frames.some((f) => f < 1)) throw new HttpProblem(400, 'frame numbers start at 1');
  return frames;
}

/** A bulk data tag path as BulkDataURIs name it: a tag, or sequence tag.item.tag..., 8 hex digits a tag. */
function parseBulkTagPath(s: string): string {
  if (!/^[0-9A-Fa-f]{8}(\.\d{1,9}\.[0-9A-Fa-f]{8})*$/.test(s)) throw new HttpProblem(400, `a bulk data path is a tag of 8 hex digits, or sequence.item.tag, not ${JSON.stringify(s.slice(0, 64))}`);
  return s.toUpperCase();
}

function renderOptionsOf(accept: string | undefined, query: Record<string, string>, kind: 'rendered' | 'thumbnail'): RenderOptions {
  const ranges = parseAccept(accept);
  let format: RenderOptions['format'] | undefined;
  if (ranges.length === 0) format = 'image/jpeg';
  for (const r of ranges) {
    if (format || r.q === 0) continue;
    if (r.type === 'image/jpeg' || r.type === 'image/*' || r.type === '*/*') format = 'image/jpeg';
    else if (r.type === 'image/png') format = 'image/png';
  }
  if (!format) throw new HttpProblem(406, `rendered images are image/jpeg or image/png, not ${accept}`);
  const options: RenderOptions = { format };
  if (query.window !== undefined) options.window = parseWindowParam(query.window);
  if (query.viewport !== undefined) options.viewport = parseViewportParam(query.viewport);
  else if (kind === 'thumbnail') options.viewport = { width: 128, height: 128 };
  if (query.quality !== undefined) {
    const q = Number(query.quality);
    if (!Number.isInteger(q) || q < 1 || q > 100) throw new HttpProblem(400, 'quality must be a whole number from 1 to 100');
    options.quality = q;
  }
  return options;
}

