/**
 * `atrium demo`: a small, realistic territory for a newcomer to see every screen in two
 * minutes. Two sites; a patient known at both under her INS (a test INS, linked across
 * sites), with today's CT at one and priors at the other; an urgent head CT sent for
 * teleradiology; a radiologist and a technologist to log in as. Loading it twice changes
 * nothing (fixed UIDs and bytes, rows made once); a database holding anything else is left
 * alone unless forced.
 */
import { Readable } from 'node:stream';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import YAML from 'yaml';
import { ConfigError, loadConfig, type AtriumConfig } from '../config/config.ts';
import { openArchive, type Archive } from '../archive/archive.ts';
import { INS_OIDS, insKeyOf, parseINS, type INS } from '../patients/ins.ts';
import { UserDirectory, UserError } from '../access/users.ts';
import { IdentityFromImages } from '../workflow/identities-from-images.ts';
import { TeleRequests } from '../workflow/tele-requests.ts';
import { addUser } from '../cli/users.ts';
import type { NewSite } from '../index/records.ts';
import { demoSeriesFiles, demoStudyUID, type DemoPatient, type DemoSeries } from './images.ts';

/** Every demo record's PatientID starts so: what tells demo data from real data. */
export const demoPatientIDPrefix = 'DEMO-';

/** The two sites the demo configuration adds when the configuration has fewer than two. */
export const demoSites: readonly NewSite[] = [
  { code: 'CHU-NORD', name: 'CHU Nord (démo)', finess: '000000001', issuerOfPatientID: 'DEMO-CHU-NORD' },
  { code: 'CLIN-SUD', name: 'Clinique du Sud (démo)', finess: '000000002', issuerOfPatientID: 'DEMO-CLIN-SUD' },
];

export const demoUsers = { radiologist: 'demo.radiologue', technologist: 'demo.manip' } as const;

/** A test INS (the INS-NIR-TEST authority): valid key, never a real person's. */
function testINS(matricule: string): INS {
  return parseINS(matricule + insKeyOf(matricule), INS_OIDS.NIR_TEST);
}

function territory(siteA: string, siteB: string): { series: Array<DemoSeries & { site: string }>; tele: { site: string; key: string } } {
  const elodieINS = testINS('2780475113042');
  const elodieA: DemoPatient = { PatientID: 'DEMO-A-1001', PatientName: 'MARTIN^Élodie', PatientBirthDate: '19780412', PatientSex: 'F', ins: elodieINS };
  // The same person at the other site, under its own PatientID: the INS links the two records.
  const elodieB: DemoPatient = { PatientID: 'DEMO-B-2001', PatientName: 'MARTIN^Elodie', PatientBirthDate: '19780412', PatientSex: 'F', ins: elodieINS };
  const jean: DemoPatient = { PatientID: 'DEMO-A-1002', PatientName: 'BERNARD^Jean', PatientBirthDate: '19520923', PatientSex: 'M', ins: testINS('1520959350017') };
  const louis: DemoPatient = { PatientID: 'DEMO-B-2002', PatientName: 'PETIT^Louis', PatientBirthDate: '19901130', PatientSex: 'M' };
  const head = { BodyPartExamined: 'HEAD', slices: 24, size: 128 } as const;
  const series: Array<DemoSeries & { site: string }> = [
    { site: siteA, key: 'elodie-ct-2026', patient: elodieA, StudyDate: '20261130', StudyTime: '101500', AccessionNumber: 'DEMOA2026001',
      StudyDescription: 'TDM cérébrale sans injection', SeriesDescription: 'Cerveau 5 mm', InstitutionName: 'CHU Nord',
      ReferringPhysicianName: 'DURAND^Claire^^Dr', ...head },
    { site: siteB, key: 'elodie-ct-2024', patient: elodieB, StudyDate: '20240612', StudyTime: '143000', AccessionNumber: 'DEMOB2024001',
      StudyDescription: 'TDM cérébrale', SeriesDescription: 'Cerveau 5 mm', InstitutionName: 'Clinique du Sud',
      ReferringPhysicianName: 'LEROY^Paul^^Dr', ...head },
    { site: siteB, key: 'elodie-ct-2022', patient: elodieB, StudyDate: '20220305', StudyTime: '091000', AccessionNumber: 'DEMOB2022001',
      StudyDescription: 'TDM cérébrale', SeriesDescription: 'Cerveau 5 mm', InstitutionName: 'Clinique du Sud',
      ReferringPhysicianName: 'LEROY^Paul^^Dr', ...head },
    { site: siteA, key: 'jean-ct-urgent', patient: jean, StudyDate: '20261206', StudyTime: '031200', AccessionNumber: 'DEMOA2026002',
      StudyDescription: 'TDM cérébrale urgente', SeriesDescription: 'Cerveau 5 mm', InstitutionName: 'CHU Nord',
      ReferringPhysicianName: 'DURAND^Claire^^Dr', bleed: true, ...head },
    { site: siteB, key: 'louis-ct-2025', patient: louis, StudyDate: '20251020', StudyTime: '160500', AccessionNumber: 'DEMOB2025001',
      StudyDescription: 'TDM cérébrale', SeriesDescription: 'Cerveau 5 mm', InstitutionName: 'Clinique du Sud',
      ReferringPhysicianName: 'LEROY^Paul^^Dr', ...head },
  ];
  return { series, tele: { site: siteA, key: 'jean-ct-urgent' } };
}

export interface DemoOptions {
  /** The configuration file given (--config or ATRIUM_CONFIG), if any. */
  file?: string;
  force: boolean;
  logger: Logger;
  /** Where the one-time passwords go (stderr): never the logger. */
  writeSecret: (text: string) => void;
}

export interface DemoReport {
  configFile?: string;
  sites: string[];
  studies: Array<{ site: string; StudyInstanceUID: string; description: string }>;
  stored: number;
  alreadyStored: number;
  teleradiologyRequest: number;
  users: string[];
}

/**
 * The configuration the demo runs with: the given one when it has two sites; on embedded
 * defaults, a file in the data folder with the demo's two sites (written once, reused).
 */
export function demoConfiguration(config: AtriumConfig, file: string | undefined): { config: AtriumConfig; file?: string } {
  if (config.sites.length >= 2) return { config, ...(file !== undefined ? { file } : {}) };
  if (file !== undefined) throw new ConfigError(`the demo fills two sites and ${file} configures one: add a second site under sites: (see atrium.example.yaml), or run atrium demo without a configuration file`);
  const demoFile = path.join(config.dataDir, 'demo.yaml');
  if (!existsSync(demoFile)) {
    const doc = new YAML.Document({ dataDir: config.dataDir, sites: [...demoSites, ...config.sites] });
    doc.commentBefore = ' Written by `atrium demo`: the embedded defaults, with the demonstration territory\'s two sites first.\n Start with: atrium serve --config <this file> (npm start -- --config <this file>).';
    writeFileSync(demoFile, doc.toString());
  }
  return { config: loadConfig({ file: demoFile, dataDir: config.dataDir }), file: demoFile };
}

/** Patient records that are not the demo's: the demo refuses to mix with them. */
async function otherPatientRecords(archive: Archive): Promise<number> {
  const row = await archive.index.sql.get<{ n: number | string }>(`SELECT COUNT(*) AS n FROM patients WHERE patient_id NOT LIKE '${demoPatientIDPrefix}%'`);
  return Number(row?.n ?? 0);
}

export async function loadDemoTerritory(given: AtriumConfig, options: DemoOptions): Promise<DemoReport> {
  const { config, file } = demoConfiguration(given, options.file);
  const [siteA, siteB] = [config.sites[0]!.code, config.sites[1]!.code];
  const archive = await openArchive(config, options.logger);
  try {
    const others = await otherPatientRecords(archive);
    if (others > 0 && !options.force) {
      throw new DemoRefused(`this database already holds ${others} patient record(s) that are not the demo's: the demo loads into an empty platform (or one holding only the demo); --force adds it anyway`);
    }
    const { series, tele } = territory(siteA, siteB);
    let stored = 0, alreadyStored = 0;
    for (const s of series) {
      const site = archive.sites.get(s.site)!;
      for (const { file: bytes } of demoSeriesFiles(s)) {
        const result = await archive.ingestor.ingestInstance(Readable.from([bytes]), { site, via: 'import' });
        if (!result.ok) throw new Error(`the demo's own object was refused: ${result.error.message}`);
        if (result.instance.status === 'identical') alreadyStored++;
        else stored++;
      }
    }
    // The INS read from the images now, rather than by serve's worker later: the records are linked when the demo ends.
    const identities = new IdentityFromImages(archive, options.logger.child({ component: 'identities' }));
    while ((await identities.drain()) > 0) { /* until the outbox is read */ }

    const users = await ensureDemoUsers(archive, siteA, siteB, options.writeSecret);
    const teleradiologyRequest = await ensureTeleRequest(archive, config, tele.site, demoStudyUID(tele.key));
    return {
      ...(file !== undefined ? { configFile: file } : {}),
      sites: [siteA, siteB],
      studies: series.map((s) => ({ site: s.site, StudyInstanceUID: demoStudyUID(s.key), description: `${s.StudyDescription} (${s.StudyDate})` })),
      stored, alreadyStored, teleradiologyRequest, users,
    };
  } finally {
    await archive.close();
  }
}

export class DemoRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DemoRefused';
  }
}

/** A radiologist of both sites and a technologist of the requesting one, with one password shown once. */
async function ensureDemoUsers(archive: Archive, siteA: string, siteB: string, writeSecret: (text: string) => void): Promise<string[]> {
  const directory = new UserDirectory(archive.index.sql, archive.sites, archive.siteById);
  const wanted = [
    { login: demoUsers.radiologist, displayName: 'Dr Sophie Laurent (démo)', roles: ['radiologist' as const], sites: [siteA, siteB] },
    { login: demoUsers.technologist, displayName: 'Marc Dubois, manipulateur (démo)', roles: ['technologist' as const], sites: [siteA] },
  ];
  const missing = [];
  for (const u of wanted) if (!(await directory.findByLogin(u.login))) missing.push(u);
  if (missing.length > 0) {
    const password = randomBytes(12).toString('base64url');
    for (const u of missing) {
      try {
        await addUser(archive, { ...u, password }, { actor: 'system:demo', via: 'cli' });
      } catch (e) {
        if (!(e instanceof UserError)) throw e;
      }
    }
    writeSecret(`\n  Demo accounts ${missing.map((u) => `"${u.login}"`).join(' and ')}: password, shown this once: ${password}\n\n`);
  }
  return wanted.map((u) => u.login);
}

/** The urgent head CT sent for remote reading by the technologist, once. */
async function ensureTeleRequest(archive: Archive, config: AtriumConfig, site: string, StudyInstanceUID: string): Promise<number> {
  const existing = await archive.index.sql.get<{ id: number | string }>('SELECT id FROM tele_requests WHERE study_instance_uid = ? ORDER BY id LIMIT 1', [StudyInstanceUID]);
  if (existing) return Number(existing.id);
  const directory = new UserDirectory(archive.index.sql, archive.sites, archive.siteById);
  const technologist = await directory.findByLogin(demoUsers.technologist);
  if (!technologist) throw new Error(`the demo technologist ${demoUsers.technologist} is missing`);
  const requests = new TeleRequests(archive, config.teleradiology);
  const created = await requests.createRequest(directory.principalOf(technologist, 'session'), {
    site, patient: { PatientID: 'DEMO-A-1002' }, StudyInstanceUID, urgency: 'urgent', modality: 'CT', bodyPart: 'HEAD', specialty: 'neuro',
    clinicalContext: 'Céphalées brutales depuis 2 h, patient sous anticoagulant.', clinicalQuestion: 'Hémorragie intracrânienne ?',
    requestingPhysician: { name: 'Dr Claire Durand' }, proposedProtocol: 'TDM cérébrale sans injection',
  }, { via: 'cli' });
  return created.id;
}
