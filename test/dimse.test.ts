/**
 * DIMSE conformance against DCMTK's real tools: echoscu, storescu, findscu, movescu with
 * a storescp destination, getscu; and the faults a network peer can cause.
 */
import { datasetBytes, pixelFragments, sopOf } from './support/part10.ts';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { dcmtk, haveDcmtk, startStorescp } from './support/dcmtk.ts';
import { havePydicomFiles, pydicomTestFiles } from './support/pydicom-files.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { rawAssociation, requestStorageCommitment } from './support/dimse-association.ts';
import { parsePart10 } from '../src/dicom/part10-parser.ts';
import { Association, AssociationRejectedError } from '../src/dimse/association.ts';
import { CommandField, Status } from '../src/dimse/command.ts';
import { PresentationContextResult, RejectReason } from '../src/dimse/pdu.ts';
import { SOPClass } from '../src/dimse/sop-classes.ts';
import { TransferSyntax } from '../src/dicom/dataset.ts';
import { part10Header } from '../src/dicom/part10-writer.ts';

const CTImageStorage = '1.2.840.10008.5.1.4.1.1.2';
const peers = (dest: number, lost: number, unreachable: number) => [
  { aeTitle: 'STORESCU', site: 'CHU-NORD', may: { store: true, query: true, retrieve: true } },
  { aeTitle: 'SUD-MODALITY', site: 'CLIN-SUD', may: { store: true, query: false, retrieve: false } },
  { aeTitle: 'READONLY', site: 'CHU-NORD', may: { store: false, query: true, retrieve: true } },
  { aeTitle: 'DEST', host: '127.0.0.1', port: dest, site: 'CHU-NORD', may: { store: false, query: false, retrieve: false } },
  { aeTitle: 'LOSTDEST', host: '127.0.0.1', port: lost, site: 'CHU-NORD', may: { store: false, query: false, retrieve: false } },
  { aeTitle: 'NOWHERE', host: '127.0.0.1', port: unreachable, site: 'CHU-NORD', may: { store: false, query: false, retrieve: false } },
];

async function storedDataset(atrium: RunningAtrium, sop: string): Promise<{ bytes: Buffer; transferSyntaxUID: string; siteId: number }> {
  const inst = await atrium.archive.index.findInstanceBySOPInstanceUID(sop);
  assert.ok(inst, `instance ${sop} is indexed`);
  const whole = await atrium.archive.store.readWhole(inst.blobKey);
  return { bytes: whole.subarray(inst.layout.datasetOffset), transferSyntaxUID: inst.TransferSyntaxUID, siteId: inst.siteId };
}

function writeTemp(dir: string, name: string, bytes: Buffer): string {
  const p = path.join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

async function count(atrium: RunningAtrium): Promise<number> {
  return atrium.archive.index.countInstances();
}

async function blobKeys(atrium: RunningAtrium): Promise<Set<string>> {
  const keys = new Set<string>();
  for await (const b of atrium.archive.store.list('instances/')) keys.add(b.key);
  return keys;
}

for (const db of testDatabases()) {
  describe(`DIMSE with DCMTK (${db.name})`, { skip: !haveDcmtk && 'DCMTK is not installed (apt-get install dcmtk)' }, () => {
    let atrium: RunningAtrium;
    let cleanup: () => Promise<void>;
    let dest: Awaited<ReturnType<typeof startStorescp>>;
    let lost: Awaited<ReturnType<typeof startStorescp>>;
    const work = mkdtempSync(path.join(tmpdir(), 'atrium-dimse-'));
    const destDir = path.join(work, 'dest');
    const lostDir = path.join(work, 'lost');
    const study = syntheticInstance({ PatientID: 'DIMSE-1', PatientName: 'Dupont^Hélène', Modality: 'CT', StudyDate: '20240102' }).uids.study;
    const series = syntheticInstance().uids.series;
    const files: Buffer[] = [];

    before(async () => {
      const opened = await db.open();
      cleanup = opened.cleanup;
      for (const d of [destDir, lostDir]) rmSync(d, { recursive: true, force: true });
      readdirSync(work);
      const { mkdirSync } = await import('node:fs');
      mkdirSync(destDir);
      mkdirSync(lostDir);
      dest = await startStorescp('DEST', destDir);
      lost = await startStorescp('LOSTDEST', lostDir, ['--abort-after']);
      const unreachable = await (await import('./support/dcmtk.ts')).freePort();
      atrium = await startAtrium({ index: opened.config, dimse: true, configure: (c) => (c.peers = peers(dest.port, lost.port, unreachable)) });
      for (let i = 1; i <= 6; i++) {
        files.push(syntheticInstance({
          PatientID: 'DIMSE-1', PatientName: 'Dupont^Hélène', SpecificCharacterSet: 'ISO_IR 192', Modality: 'CT', StudyDate: '20240102',
          StudyInstanceUID: study, SeriesInstanceUID: series, Rows: 64, Columns: 64,
        }).file);
      }
    });

    after(async () => {
      await atrium?.close();
      await dest?.stop();
      await lost?.stop();
      await cleanup?.();
      rmSync(work, { recursive: true, force: true });
    });

    const port = () => String(atrium.dimse!.port);

    it('answers C-ECHO from a known peer with success', async () => {
      const r = await dcmtk('echoscu', ['-v', '-aet', 'STORESCU', '-aec', 'ATRIUM', '127.0.0.1', port()]);
      assert.equal(r.code, 0, r.output);
      assert.match(r.output, /Received Echo Response \(Success\)/);
    });

    it('refuses an unknown calling AE title with A-ASSOCIATE-RJ reason 3, and a wrong called AE title with reason 7', async () => {
      const unknown = await dcmtk('echoscu', ['-aet', 'STRANGER', '-aec', 'ATRIUM', '127.0.0.1', port()]);
      assert.notEqual(unknown.code, 0);
      assert.match(unknown.output, /Calling AE Title Not Recognized/);
      const wrongCalled = await dcmtk('echoscu', ['-aet', 'STORESCU', '-aec', 'NOTATRIUM', '127.0.0.1', port()]);
      assert.notEqual(wrongCalled.code, 0);
      assert.match(wrongCalled.output, /Called AE Title Not Recognized/);
      await assert.rejects(rawAssociation(atrium, [{ id: 1, abstractSyntax: SOPClass.Verification, transferSyntaxes: [TransferSyntax.ImplicitVRLittleEndian] }], 'STRANGER'),
        (e: unknown) => e instanceof AssociationRejectedError && e.reason === RejectReason.CallingAETitleNotRecognized);
    });

    it('stores what storescu sends, for the site of the calling AE title, keeping the dataset byte for byte', async () => {
      const dir = mkdtempSync(path.join(work, 'send-'));
      const paths = files.map((f, i) => writeTemp(dir, `ct${i}.dcm`, f));
      const r = await dcmtk('storescu', ['-aet', 'STORESCU', '-aec', 'ATRIUM', '-nh', '127.0.0.1', port(), ...paths]);
      assert.equal(r.code, 0, r.output);
      const site = atrium.archive.sites.get('CHU-NORD')!;
      for (const f of files) {
        const stored = await storedDataset(atrium, sopOf(f));
        assert.equal(stored.siteId, site.id);
        assert.equal(stored.transferSyntaxUID, TransferSyntax.ExplicitVRLittleEndian);
        assert.ok(stored.bytes.equals(datasetBytes(f)), 'stored dataset differs from the one sent');
      }
      // The calling AE title decides the site: the same object class from another site's modality.
      const other = syntheticInstance({ PatientID: 'SUD-1', Modality: 'CT' });
      const r2 = await dcmtk('storescu', ['-aet', 'SUD-MODALITY', '-aec', 'ATRIUM', '127.0.0.1', port(), writeTemp(dir, 'sud.dcm', other.file)]);
      assert.equal(r2.code, 0, r2.output);
      assert.equal((await storedDataset(atrium, other.uids.sop)).siteId, atrium.archive.sites.get('CLIN-SUD')!.id);
    });

    it('stores real objects in every transfer syntax storescu proposes as is (implicit, deflate, JPEG, JPEG-LS, JPEG 2000, RLE)', { skip: !havePydicomFiles && 'python3-pydicom test files are not installed' }, async () => {
      // storescu proposes the file's own transfer syntax first, so it travels unconverted. Deflate: storescu
      // re-deflates what it read, so the bytes differ from the file's; the syntax is what is checked.
      const cases: Array<[string, string[], boolean]> = [
        ['MR_small_implicit.dcm', ['-xi'], true], ['JPEG-lossy.dcm', ['-xx'], false], ['SC_rgb_jpeg_dcmtk.dcm', ['-xy'], false],
        ['MR_small_jpeg_ls_lossless.dcm', ['-xt'], false], ['MR_small_jp2klossless.dcm', ['-xv'], false], ['MR_small_RLE.dcm', ['-xr'], false],
        ['image_dfl.dcm', ['-xd'], false],
      ];
      for (const [name, args, sameBytes] of cases) {
        const file = readFileSync(path.join(pydicomTestFiles, name));
        const r = await dcmtk('storescu', ['-aet', 'STORESCU', '-aec', 'ATRIUM', ...args, '127.0.0.1', port(), path.join(pydicomTestFiles, name)]);
        assert.equal(r.code, 0, `${name}: ${r.output}`);
        const obj = parsePart10(file);
        const stored = await storedDataset(atrium, sopOf(file));
        assert.equal(stored.transferSyntaxUID, obj.transferSyntaxUID, name);
        if (sameBytes) assert.ok(stored.bytes.equals(datasetBytes(file)), `${name}: stored dataset differs from the one sent`);
        // Where DCMTK re-encodes the header on sending, the compressed pixels still travel untouched.
        else assert.ok(pixelFragments(Buffer.concat([part10Header({ MediaStorageSOPClassUID: '1.2', MediaStorageSOPInstanceUID: '1.2', TransferSyntaxUID: stored.transferSyntaxUID }), stored.bytes])).equals(pixelFragments(file)), `${name}: pixel data differs`);
      }
    });

    it('refuses C-STORE from a peer that may not store (contexts rejected, nothing indexed)', async () => {
      const dir = mkdtempSync(path.join(work, 'ro-'));
      const obj = syntheticInstance({ PatientID: 'RO-1' });
      const r = await dcmtk('storescu', ['-aet', 'READONLY', '-aec', 'ATRIUM', '127.0.0.1', port(), writeTemp(dir, 'x.dcm', obj.file)]);
      assert.notEqual(r.code, 0);
      assert.match(r.output, /No presentation context|no acceptable presentation contexts/i);
      assert.equal(await atrium.archive.index.findInstanceBySOPInstanceUID(obj.uids.sop), undefined);
    });

    it('stores over five simultaneous associations', async () => {
      const dir = mkdtempSync(path.join(work, 'par-'));
      const before = await count(atrium);
      const runs = [];
      for (let a = 0; a < 5; a++) {
        const paths = [];
        for (let i = 0; i < 4; i++) paths.push(writeTemp(dir, `p${a}-${i}.dcm`, syntheticInstance({ PatientID: `PAR-${a}`, Rows: 32, Columns: 32 }).file));
        runs.push(dcmtk('storescu', ['-aet', 'STORESCU', '-aec', 'ATRIUM', '127.0.0.1', port(), ...paths]));
      }
      for (const r of await Promise.all(runs)) assert.equal(r.code, 0, r.output);
      assert.equal(await count(atrium), before + 20);
    });

    it('answers C-FIND at study, series and image level (study root) and patient level (patient root) with the QIDO-RS matching rules', async () => {
      const studyFind = await dcmtk('findscu', ['-v', '-S', '-aet', 'STORESCU', '-aec', 'ATRIUM', '-k', 'QueryRetrieveLevel=STUDY',
        '-k', 'PatientName=dupont*', '-k', 'StudyDate=20240101-20240131', '-k', 'StudyInstanceUID', '-k', 'ModalitiesInStudy', '-k', 'NumberOfStudyRelatedInstances', '127.0.0.1', port()]);
      assert.equal(studyFind.code, 0, studyFind.output);
      assert.equal((studyFind.output.match(/Find Response: \d+ \(Pending\)/g) ?? []).length, 1, studyFind.output);
      assert.ok(studyFind.output.includes(study), 'the study is returned');
      assert.match(studyFind.output, /\(0020,1208\) IS \[6 ?\]/);
      assert.match(studyFind.output, /Dupont\^Hélène|Dupont\^H/);
      // Latin-1 names go out as ISO_IR 100, as older clients expect; others as ISO_IR 192.
      assert.match(studyFind.output, /\(0008,0005\) CS \[ISO_IR 100\]/);
      const greek = syntheticInstance({ PatientID: 'DIMSE-GR', PatientName: 'Παπαδόπουλος^Νίκος', SpecificCharacterSet: 'ISO_IR 192', Rows: 4, Columns: 4 });
      const dir = mkdtempSync(path.join(work, 'gr-'));
      assert.equal((await dcmtk('storescu', ['-aet', 'STORESCU', '-aec', 'ATRIUM', '127.0.0.1', port(), writeTemp(dir, 'gr.dcm', greek.file)])).code, 0);
      const greekFind = await dcmtk('findscu', ['-S', '-v', '-aet', 'STORESCU', '-aec', 'ATRIUM', '-k', 'QueryRetrieveLevel=STUDY', '-k', 'PatientID=DIMSE-GR', '-k', 'PatientName', '127.0.0.1', port()]);
      assert.match(greekFind.output, /\(0008,0005\) CS \[ISO_IR 192\]/, greekFind.output);
      assert.ok(Buffer.from(greekFind.output, 'latin1').includes(Buffer.from('Παπαδόπουλος', 'utf8')), 'the name in UTF-8');

      const seriesFind = await dcmtk('findscu', ['-S', '-v', '-aet', 'STORESCU', '-aec', 'ATRIUM', '-k', 'QueryRetrieveLevel=SERIES', '-k', `StudyInstanceUID=${study}`, '-k', 'SeriesInstanceUID', '-k', 'Modality=CT', '-k', 'NumberOfSeriesRelatedInstances', '127.0.0.1', port()]);
      assert.equal(seriesFind.code, 0, seriesFind.output);
      assert.ok(seriesFind.output.includes(series));
      assert.match(seriesFind.output, /\(0020,1209\) IS \[6 ?\]/);

      const imageFind = await dcmtk('findscu', ['-S', '-v', '-aet', 'STORESCU', '-aec', 'ATRIUM', '-k', 'QueryRetrieveLevel=IMAGE', '-k', `StudyInstanceUID=${study}`, '-k', `SeriesInstanceUID=${series}`, '-k', 'SOPInstanceUID', '127.0.0.1', port()]);
      assert.equal((imageFind.output.match(/\(Pending\)/g) ?? []).length, 6, imageFind.output);

      const patientFind = await dcmtk('findscu', ['-P', '-v', '-aet', 'STORESCU', '-aec', 'ATRIUM', '-k', 'QueryRetrieveLevel=PATIENT', '-k', 'PatientID=DIMSE-1', '-k', 'PatientName', '-k', 'NumberOfPatientRelatedStudies', '127.0.0.1', port()]);
      assert.equal(patientFind.code, 0, patientFind.output);
      assert.equal((patientFind.output.match(/\(Pending\)/g) ?? []).length, 1, patientFind.output);
      assert.match(patientFind.output, /\(0020,1200\) IS \[1 ?\]/);

      const none = await dcmtk('findscu', ['-S', '-v', '-aet', 'STORESCU', '-aec', 'ATRIUM', '-k', 'QueryRetrieveLevel=STUDY', '-k', 'PatientID=NOBODY', '127.0.0.1', port()]);
      assert.equal(none.code, 0);
      assert.doesNotMatch(none.output, /Pending/);
    });

    it('stops a C-FIND when the peer sends C-CANCEL, answering 0xFE00', async () => {
      const dir = mkdtempSync(path.join(work, 'many-'));
      const paths = [];
      for (let i = 0; i < 100; i++) paths.push(writeTemp(dir, `m${i}.dcm`, syntheticInstance({ PatientID: 'MANY', Rows: 4, Columns: 4 }).file));
      assert.equal((await dcmtk('storescu', ['-aet', 'STORESCU', '-aec', 'ATRIUM', '127.0.0.1', port(), ...paths])).code, 0);
      const total = await count(atrium);
      // Every instance of the archive (a relational query), cancelled at the first match. findscu --cancel
      // works too, but reads so slowly that all matches may already be in its socket buffer.
      const assoc = await rawAssociation(atrium, [{ id: 1, abstractSyntax: SOPClass.StudyRootFind, transferSyntaxes: [TransferSyntax.ExplicitVRLittleEndian] }]);
      try {
        const { writeDataset } = await import('../src/dimse/identifier.ts');
        const identifier = writeDataset([{ tag: 0x00080052, vr: 'CS', values: ['IMAGE'] }, { tag: 0x00080018, vr: 'UI', values: [] }], TransferSyntax.ExplicitVRLittleEndian);
        let pending = 0;
        let messageId = 0;
        const final = await assoc.request(1, { CommandField: CommandField.CFindRQ, AffectedSOPClassUID: SOPClass.StudyRootFind, Priority: 0 }, identifier, (r) => {
          pending++;
          messageId = r.command.MessageIDBeingRespondedTo!;
          if (pending === 1) void assoc.cancel(1, messageId);
        });
        assert.equal(final.command.Status, Status.Cancel);
        assert.ok(pending < total, `${pending} matches sent of ${total}`);
      } finally {
        await assoc.release();
      }
    });

    it('marks matches 0xFF01 when a non-empty key cannot be matched, rather than ignoring it silently', async () => {
      const r = await dcmtk('findscu', ['-S', '-d', '-aet', 'STORESCU', '-aec', 'ATRIUM', '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${study}`, '-k', 'PatientAddress=Lille', '127.0.0.1', port()]);
      assert.equal(r.code, 0, r.output);
      assert.match(r.output, /0xff01/i, r.output);
    });

    it('refuses a C-FIND whose identifier does not fit the model with 0xA900', async () => {
      const assoc = await rawAssociation(atrium, [{ id: 1, abstractSyntax: SOPClass.StudyRootFind, transferSyntaxes: [TransferSyntax.ExplicitVRLittleEndian] }]);
      try {
        // PATIENT level does not exist in the study root model.
        const identifier = Buffer.from([0x08, 0x00, 0x52, 0x00, 0x43, 0x53, 0x08, 0x00, ...Buffer.from('PATIENT ')]);
        const rsp = await assoc.request(1, { CommandField: CommandField.CFindRQ, AffectedSOPClassUID: SOPClass.StudyRootFind, Priority: 0 }, identifier);
        assert.equal(rsp.command.Status, Status.IdentifierDoesNotMatchSOPClass);
        assert.match(rsp.command.ErrorComment ?? '', /PATIENT/);
      } finally {
        await assoc.release();
      }
    });

    it('C-MOVEs a study to a known storescp, byte for byte, with pending counts', async () => {
      const r = await dcmtk('movescu', ['-d', '-S', '-aet', 'STORESCU', '-aec', 'ATRIUM', '-aem', 'DEST', '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${study}`, '127.0.0.1', port()]);
      assert.equal(r.code, 0, r.output);
      assert.match(r.output, /Completed Suboperations\s*: 6/);
      const received = readdirSync(destDir).map((n) => readFileSync(path.join(destDir, n)));
      assert.equal(received.length, 6);
      for (const f of files) {
        const got = received.find((g) => sopOf(g) === sopOf(f));
        assert.ok(got, 'every instance arrived');
        assert.ok(datasetBytes(got).equals(datasetBytes(f)), 'the moved dataset is the one stored');
      }
    });

    it('answers C-MOVE to an unknown destination with 0xA801, and to an unreachable one with failed sub-operations', async () => {
      const unknown = await dcmtk('movescu', ['-d', '-S', '-aet', 'STORESCU', '-aec', 'ATRIUM', '-aem', 'NOSUCHAE', '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${study}`, '127.0.0.1', port()]);
      assert.match(unknown.output, /MoveDestinationUnknown|Move Destination Unknown|0xa801/i, unknown.output);
      const unreachable = await dcmtk('movescu', ['-d', '-S', '-aet', 'STORESCU', '-aec', 'ATRIUM', '-aem', 'NOWHERE', '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${study}`, '127.0.0.1', port()]);
      assert.match(unreachable.output, /OutOfResourcesSubOperations|0xa702/i, unreachable.output);
      assert.match(unreachable.output, /Failed Suboperations\s*: 6/, unreachable.output);
      // The listener keeps serving.
      assert.equal((await dcmtk('echoscu', ['-aet', 'STORESCU', '-aec', 'ATRIUM', '127.0.0.1', port()])).code, 0);
    });

    it('reports the rest of a C-MOVE as failed when the destination aborts in the middle', async () => {
      const r = await dcmtk('movescu', ['-d', '-S', '-aet', 'STORESCU', '-aec', 'ATRIUM', '-aem', 'LOSTDEST', '-k', 'QueryRetrieveLevel=SERIES', '-k', `StudyInstanceUID=${study}`, '-k', `SeriesInstanceUID=${series}`, '127.0.0.1', port()]);
      assert.match(r.output, /Failed Suboperations\s*: 6/, r.output);
      assert.match(r.output, /Completed Suboperations\s*: 0/, r.output);
      assert.equal((await dcmtk('echoscu', ['-aet', 'STORESCU', '-aec', 'ATRIUM', '127.0.0.1', port()])).code, 0);
    });

    it('C-GETs a series on the caller\'s own association, byte for byte', async () => {
      const out = mkdtempSync(path.join(work, 'get-'));
      const r = await dcmtk('getscu', ['-v', '-S', '-aet', 'STORESCU', '-aec', 'ATRIUM', '-od', out, '-k', 'QueryRetrieveLevel=SERIES', '-k', `StudyInstanceUID=${study}`, '-k', `SeriesInstanceUID=${series}`, '127.0.0.1', port()]);
      assert.equal(r.code, 0, r.output);
      const got = readdirSync(out).map((n) => readFileSync(path.join(out, n)));
      assert.equal(got.length, 6, r.output);
      for (const g of got) {
        const original = files.find((f) => sopOf(f) === sopOf(g));
        assert.ok(original && datasetBytes(g).equals(datasetBytes(original)));
      }
    });

    it('C-GETs a series for a peer that takes implicit VR only, re-encoded, its pixel data as stored', async () => {
      const out = mkdtempSync(path.join(work, 'get-implicit-'));
      const r = await dcmtk('getscu', ['-d', '-S', '+xi', '-aet', 'STORESCU', '-aec', 'ATRIUM', '-od', out, '-k', 'QueryRetrieveLevel=SERIES', '-k', `StudyInstanceUID=${study}`, '-k', `SeriesInstanceUID=${series}`, '127.0.0.1', port()]);
      assert.equal(r.code, 0, r.output);
      const pixels = (bytes: Buffer) => {
        const range = parsePart10(bytes).dataset.get(0x7fe00010)!.bulk!;
        return bytes.subarray(range.offset, range.offset + range.length);
      };
      const got = readdirSync(out).map((n) => readFileSync(path.join(out, n)));
      assert.equal(got.length, 6, r.output);
      // getscu writes its files in explicit VR whatever it received; its log says what came.
      assert.ok((r.output.match(/DcmDataset::read\(\) TransferSyntax="Little Endian Implicit"/g)?.length ?? 0) >= 6, 'the datasets came in implicit VR');
      for (const g of got) {
        const original = files.find((f) => sopOf(f) === sopOf(g));
        assert.ok(original && pixels(g).equals(pixels(original)), 'the pixel data as stored');
      }
    });

    it('grants an asynchronous operations window and stores C-STOREs sent without waiting, and aborts a peer that exceeds it', async () => {
      const objs = Array.from({ length: 12 }, () => syntheticInstance({ PatientID: 'ASYNC-1', Rows: 32, Columns: 32 }));
      const assoc = await Association.connect({
        host: '127.0.0.1', port: atrium.dimse!.port, callingAETitle: 'STORESCU', calledAETitle: 'ATRIUM',
        presentationContexts: [{ id: 1, abstractSyntax: CTImageStorage, transferSyntaxes: [TransferSyntax.ExplicitVRLittleEndian] }],
        maxPduLength: 65536, idleTimeoutMs: 30_000, asyncOperations: 4,
      });
      try {
        assert.equal(assoc.maxOutstanding, 4);
        const rsps = [];
        for (let i = 0; i < objs.length; i += 4) {
          rsps.push(...await Promise.all(objs.slice(i, i + 4).map((o) => assoc.request(1, {
            CommandField: CommandField.CStoreRQ, AffectedSOPClassUID: CTImageStorage, AffectedSOPInstanceUID: o.uids.sop, Priority: 0,
          }, datasetBytes(o.file)))));
        }
        assert.deepEqual(rsps.map((r) => r.command.Status), objs.map(() => Status.Success));
        for (const o of objs) assert.ok((await storedDataset(atrium, o.uids.sop)).bytes.equals(datasetBytes(o.file)));
        // Five outstanding where four were granted: a protocol violation.
        const extra = Array.from({ length: 5 }, () => syntheticInstance({ PatientID: 'ASYNC-2', Rows: 512, Columns: 512 }));
        const results = await Promise.allSettled(extra.map((o) => assoc.request(1, {
          CommandField: CommandField.CStoreRQ, AffectedSOPClassUID: CTImageStorage, AffectedSOPInstanceUID: o.uids.sop, Priority: 0,
        }, datasetBytes(o.file))));
        assert.ok(results.some((r) => r.status === 'rejected'), 'the association was aborted');
        // Objects wholly received before the abort may still be committed (never acknowledged): let them settle.
        let last = -1;
        for (let n = await count(atrium); n !== last; n = await count(atrium)) {
          last = n;
          await new Promise((r) => setTimeout(r, 300));
        }
      } finally {
        await assoc.release();
      }
    });

    it('answers a dataset that does not parse with 0xC000 and indexes nothing', async () => {
      const source = syntheticInstance({ Rows: 8, Columns: 8 });
      const assoc = await rawAssociation(atrium, [{ id: 1, abstractSyntax: CTImageStorage, transferSyntaxes: [TransferSyntax.ExplicitVRLittleEndian] }]);
      try {
        // A valid start, then an element whose length runs past the end of the dataset.
        const good = datasetBytes(source.file);
        const broken = Buffer.concat([good.subarray(0, 200), Buffer.from([0x10, 0x00, 0x10, 0x00, 0x50, 0x4e, 0xff, 0x7f]), Buffer.from('abc')]);
        const rsp = await assoc.request(1, { CommandField: CommandField.CStoreRQ, AffectedSOPClassUID: CTImageStorage, AffectedSOPInstanceUID: '1.2.3.4.5', Priority: 0 }, broken);
        assert.equal(rsp.command.Status, Status.CannotUnderstand, rsp.command.ErrorComment);
        assert.ok((rsp.command.ErrorComment ?? '').length > 0);
        // The association is still usable.
        const echo = await rawAssociation(atrium, [{ id: 1, abstractSyntax: SOPClass.Verification, transferSyntaxes: [TransferSyntax.ImplicitVRLittleEndian] }]);
        assert.equal((await echo.request(1, { CommandField: CommandField.CEchoRQ, AffectedSOPClassUID: SOPClass.Verification })).command.Status, Status.Success);
        await echo.release();
      } finally {
        await assoc.release();
      }
      // Neither under the UID the command named nor under the dataset's own (a count of all
      // instances would also see the previous test's late commits on a loaded machine).
      assert.equal(await atrium.archive.index.findInstanceBySOPInstanceUID('1.2.3.4.5'), undefined);
      assert.equal(await atrium.archive.index.findInstanceBySOPInstanceUID(source.uids.sop), undefined);
      assert.equal(await atrium.archive.index.studyPatient(source.uids.study), undefined, 'no study row either');
    });

    it('leaves nothing behind when the peer aborts in the middle of a C-STORE', async () => {
      const blobsBefore = await blobKeys(atrium);
      const assoc = await rawAssociation(atrium, [{ id: 1, abstractSyntax: CTImageStorage, transferSyntaxes: [TransferSyntax.ExplicitVRLittleEndian] }]);
      const obj = syntheticInstance({ Rows: 512, Columns: 512 });
      const data = datasetBytes(obj.file);
      async function* half(): AsyncGenerator<Buffer> {
        yield data.subarray(0, data.length >> 1);
        await new Promise((r) => setTimeout(r, 100));
        assoc.abort();
        throw new Error('stop');
      }
      await assert.rejects(assoc.request(1, { CommandField: CommandField.CStoreRQ, AffectedSOPClassUID: CTImageStorage, AffectedSOPInstanceUID: obj.uids.sop, Priority: 0 }, half()));
      await new Promise((r) => setTimeout(r, 300));
      // Not a count of all instances: the previous tests' acknowledged objects may still be
      // reaching the index (group commit) on a loaded machine. Their blobs are written before
      // their acknowledgement, so the blob count is steady.
      assert.equal(await atrium.archive.index.findInstanceBySOPInstanceUID(obj.uids.sop), undefined);
      // Blobs that appeared meanwhile may be the previous test's objects, wholly received before its
      // abort and stored since (never acknowledged): none may hold this object's bytes.
      const sop = Buffer.from(obj.uids.sop, 'latin1');
      for (const key of await blobKeys(atrium)) {
        if (blobsBefore.has(key)) continue;
        assert.ok(!(await atrium.archive.store.readWhole(key)).includes(sop), `no blob is left from the aborted object (${key})`);
      }
      assert.equal((await dcmtk('echoscu', ['-aet', 'STORESCU', '-aec', 'ATRIUM', '127.0.0.1', port()])).code, 0);
    });

    it('aborts on a malformed PDU and keeps serving other associations', async () => {
      const reply = await new Promise<Buffer>((resolve, reject) => {
        const s = net.connect(atrium.dimse!.port, '127.0.0.1', () => s.write(Buffer.from([0x09, 0, 0, 0, 0, 4, 1, 2, 3, 4])));
        const got: Buffer[] = [];
        s.on('data', (d) => got.push(d));
        s.on('close', () => resolve(Buffer.concat(got)));
        s.on('error', reject);
      });
      assert.equal(reply[0], 0x07, 'an A-ABORT PDU');
      assert.equal(reply[9], 1, 'reason: unrecognized PDU');
      assert.equal((await dcmtk('echoscu', ['-aet', 'STORESCU', '-aec', 'ATRIUM', '127.0.0.1', port()])).code, 0);
    });

    it('drops a connection that never sends its A-ASSOCIATE-RQ, and an association left idle', async () => {
      const saved = atrium.dimse!.config.idleTimeoutMs;
      atrium.dimse!.config.idleTimeoutMs = 400;
      try {
        const started = Date.now();
        const silent = await new Promise<Buffer>((resolve, reject) => {
          const s = net.connect(atrium.dimse!.port, '127.0.0.1');
          const got: Buffer[] = [];
          s.on('data', (d) => got.push(d));
          s.on('close', () => resolve(Buffer.concat(got)));
          s.on('error', reject);
        });
        assert.ok(Date.now() - started < 5000);
        assert.equal(silent[0], 0x07, 'an A-ABORT before closing');
        const idle = await rawAssociation(atrium, [{ id: 1, abstractSyntax: SOPClass.Verification, transferSyntaxes: [TransferSyntax.ImplicitVRLittleEndian] }]);
        const aborted = await new Promise<boolean>((resolve) => {
          idle.once('aborted', () => resolve(true));
          setTimeout(() => resolve(false), 5000);
        });
        assert.ok(aborted, 'the idle association was aborted');
      } finally {
        atrium.dimse!.config.idleTimeoutMs = saved;
      }
    });

    it('rejects a presentation context whose transfer syntaxes are all unknown', async () => {
      const assoc = await rawAssociation(atrium, [
        { id: 1, abstractSyntax: CTImageStorage, transferSyntaxes: ['1.2.3.999'] },
        { id: 3, abstractSyntax: '1.2.840.10008.9.9.9', transferSyntaxes: [TransferSyntax.ExplicitVRLittleEndian] },
        { id: 5, abstractSyntax: SOPClass.Verification, transferSyntaxes: [TransferSyntax.ImplicitVRLittleEndian] },
      ]);
      try {
        assert.equal(assoc.presentationContext(1), undefined);
        assert.equal(assoc.presentationContext(3), undefined);
        assert.ok(assoc.presentationContext(5));
      } finally {
        await assoc.release();
      }
      void PresentationContextResult;
    });

    it('commits only to objects it holds (Storage Commitment, N-ACTION then N-EVENT-REPORT)', async () => {
      const report = await requestStorageCommitment(atrium, 'STORESCU', [
        { SOPClassUID: CTImageStorage, SOPInstanceUID: sopOf(files[0]!) }, { SOPClassUID: CTImageStorage, SOPInstanceUID: '1.2.3.404' },
      ]);
      assert.equal(report.actionStatus, Status.Success);
      assert.equal(report.eventType, 2, 'some failed');
      const body = report.body.toString('latin1');
      assert.ok(body.includes(sopOf(files[0]!)), 'the stored object is committed');
      assert.ok(body.includes('1.2.3.404'), 'the unknown one is listed as failed');
      const failedSeq = report.body.indexOf(Buffer.from([0x08, 0x00, 0x98, 0x11]));
      assert.ok(failedSeq > 0 && report.body.indexOf(Buffer.from('1.2.3.404')) > failedSeq, 'the unknown object is in FailedSOPSequence');
    });

    it('refuses associations beyond dimse.maxAssociations with "local limit exceeded"', async () => {
      const saved = atrium.dimse!.config.maxAssociations;
      atrium.dimse!.config.maxAssociations = 1;
      const held = await rawAssociation(atrium, [{ id: 1, abstractSyntax: SOPClass.Verification, transferSyntaxes: [TransferSyntax.ImplicitVRLittleEndian] }]);
      try {
        const r = await dcmtk('echoscu', ['-aet', 'STORESCU', '-aec', 'ATRIUM', '127.0.0.1', port()]);
        assert.notEqual(r.code, 0);
        assert.match(r.output, /Local Limit Exceeded/i, r.output);
      } finally {
        await held.release();
        atrium.dimse!.config.maxAssociations = saved;
      }
    });

  });
}
