/**
 * INSi, the CNAM's identity teleservice (téléservice INSi): the INS and reference traits of a
 * person, searched by their traits (rechercherInsAvecTraitsIdentite), and the verification of
 * an INS already known (the same search, whose answer must name that INS). SOAP 1.2 over TLS
 * with the site's organisation certificate as client certificate.
 *
 * What the answer's code (CR/CodeCR) means for the identity:
 *   00 one identity found   the record's INS and traits become INSi's: "recovered", and
 *                           "qualified" only when a proof of identity is recorded with it (RNIV)
 *   01 none found           nothing changes
 *   02 several found        nothing changes; a review is opened (insi-several)
 * An answer that is no INSi answer (not SOAP, no CR, an INS that fails its key) changes nothing.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { createRequire } from 'node:module';
import type { DOMParser } from '@xmldom/xmldom';
import type { InsiConfig, InsiSiteConfig } from '../config/config.ts';
import { applyMigrations, type Migration } from '../index/migrations.ts';
import type { SqlDatabase } from '../index/sql.ts';

// @xmldom/xmldom is loaded at the first INSi answer read, not with the server.
const require = createRequire(import.meta.url);
let xmldomModule: typeof import('@xmldom/xmldom') | undefined;
const xmldom = (): typeof import('@xmldom/xmldom') => (xmldomModule ??= require('@xmldom/xmldom') as typeof import('@xmldom/xmldom'));
import { openReview, recordIdentity, ReviewNotFoundError, ReviewNotOpenError } from './identities.ts';
import { insValue, parseINS, sameINS, type INS, type ReferenceSex } from './ins.ts';

/** The traits INSi is asked with (those the record holds). */
export interface InsiQuery {
  birthName: string;
  firstName: string;
  sex: 'M' | 'F';
  /** YYYYMMDD */
  birthDate: string;
  birthPlace?: string;
}

export interface InsiIdentity {
  ins: INS;
  birthName: string;
  firstNames: string[];
  sex: ReferenceSex;
  /** YYYYMMDD */
  birthDate: string;
  birthPlace?: string;
}

export type InsiOutcome = { code: 'found'; identity: InsiIdentity } | { code: 'not-found' } | { code: 'several' };

/** An answer that is not one of INSi's (the call reached something, but not a usable answer). */
export class InsiMalformedAnswer extends Error {
  override readonly name = 'InsiMalformedAnswer';
}

/** INSi could not be reached or answered with a fault (retry later). */
export class InsiUnavailable extends Error {
  override readonly name = 'InsiUnavailable';
}

/** What Atrium asks INSi; one implementation speaks SOAP to the CNAM, tests give a double. */
export interface InsiClient {
  /** Searches by traits for a record of `site` (whose certificate authenticates the call). */
  search(site: string, query: InsiQuery): Promise<InsiOutcome>;
}

const soapNs = 'http://www.w3.org/2003/05/soap-envelope';
const action = 'urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite';
const xmlText = (v: string) => v.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');

/** The SOAP 1.2 request of rechercherInsAvecTraitsIdentite (body RECSANSVITALE, LPS context header). */
export function insiSearchEnvelope(query: InsiQuery, ctx: { software: InsiConfig['software']; emitter: string; messageId: string; at: Date }): string {
  const d = query.birthDate;
  return `<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="${soapNs}" xmlns:wsa="http://www.w3.org/2005/08/addressing" xmlns:ctxlps="urn:siram:lps" xmlns:rec="http://www.cnamts.fr/INSiRecSans">
<soap:Header>
<ctxlps:ContexteLPS Nature="CTXLPS"><ctxlps:Id>${ctx.messageId}</ctxlps:Id><ctxlps:Temps>${ctx.at.toISOString()}</ctxlps:Temps><ctxlps:Emetteur>${xmlText(ctx.emitter)}</ctxlps:Emetteur>
<ctxlps:LPS><ctxlps:IDAM R="4">${xmlText(ctx.software.approval)}</ctxlps:IDAM><ctxlps:Version>${xmlText(ctx.software.version)}</ctxlps:Version><ctxlps:Instance>${ctx.messageId}</ctxlps:Instance><ctxlps:Nom>urn:lps:${xmlText(ctx.software.name)}:${xmlText(ctx.software.version)}</ctxlps:Nom></ctxlps:LPS></ctxlps:ContexteLPS>
<wsa:Action>${action}</wsa:Action><wsa:MessageID>uuid:${ctx.messageId}</wsa:MessageID>
</soap:Header>
<soap:Body><rec:RECSANSVITALE><rec:NomNaissance>${xmlText(query.birthName)}</rec:NomNaissance><rec:Prenom>${xmlText(query.firstName)}</rec:Prenom><rec:Sexe>${query.sex}</rec:Sexe><rec:DateNaissance>${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6, 8)}</rec:DateNaissance>${query.birthPlace ? `<rec:LieuNaissance>${xmlText(query.birthPlace)}</rec:LieuNaissance>` : ''}</rec:RECSANSVITALE></soap:Body>
</soap:Envelope>`;
}

/** Reads an answer of rechercherInsAvecTraitsIdentite; throws InsiMalformedAnswer or InsiUnavailable (a SOAP fault). */
export function readInsiAnswer(xml: string): InsiOutcome {
  const errors: string[] = [];
  let doc: ReturnType<DOMParser['parseFromString']> | undefined;
  try {
    doc = new (xmldom().DOMParser)({ errorHandler: (level: string, message: unknown) => { if (level !== 'warning') errors.push(String(message)); } }).parseFromString(xml, 'text/xml');
  } catch (e) {
    // xmldom throws on a fatal error after reporting it.
    errors.push((e as Error).message);
  }
  const root = doc?.documentElement;
  if (!doc || errors.length > 0 || !root || root.localName !== 'Envelope' || root.namespaceURI !== soapNs) throw new InsiMalformedAnswer('the answer is not a SOAP 1.2 envelope');
  const first = (parent: { getElementsByTagNameNS(ns: string, name: string): { item(i: number): Element | null } }, name: string): Element | undefined => parent.getElementsByTagNameNS('*', name).item(0) ?? undefined;
  const textOf = (parent: Element | undefined, name: string): string | undefined => {
    const e = parent ? first(parent, name) : undefined;
    const t = e?.textContent?.trim();
    return t === undefined || t === '' ? undefined : t;
  };
  const fault = first(doc, 'Fault');
  if (fault) throw new InsiUnavailable(`INSi answered a SOAP fault: ${(textOf(fault, 'Text') ?? textOf(fault, 'Value') ?? '').slice(0, 200)}`);
  const cr = first(doc, 'CR');
  const code = textOf(cr, 'CodeCR');
  if (code === undefined) throw new InsiMalformedAnswer('the answer has no CR/CodeCR');
  if (code === '01') return { code: 'not-found' };
  if (code === '02') return { code: 'several' };
  if (code !== '00') throw new InsiMalformedAnswer(`CodeCR ${JSON.stringify(code.slice(0, 10))} is none of 00, 01, 02`);
  const individu = first(doc, 'INDIVIDU');
  const active = individu ? first(individu, 'INSACTIF') : undefined;
  const tiq = individu ? first(individu, 'TIQ') : undefined;
  const number = textOf(active, 'NumIdentifiant'), key = textOf(active, 'Cle'), oid = textOf(active, 'OID');
  const birthName = textOf(tiq, 'NomNaissance'), sex = textOf(tiq, 'Sexe'), birthDate = textOf(tiq, 'DateNaissance');
  if (!number || !key || !oid || !birthName || !sex || !birthDate) throw new InsiMalformedAnswer('an identity found (00) without its INS (NumIdentifiant, Cle, OID) or traits (NomNaissance, Sexe, DateNaissance)');
  let ins: INS;
  try {
    ins = parseINS(number + key, oid);
  } catch (e) {
    throw new InsiMalformedAnswer(`the INS returned is not valid: ${(e as Error).message}`);
  }
  if (sex !== 'M' && sex !== 'F') throw new InsiMalformedAnswer('Sexe is neither M nor F');
  // INSi writes unknown days and months as 00.
  const date = /^(\d{4})-(\d{2})-(\d{2})$/.exec(birthDate);
  if (!date) throw new InsiMalformedAnswer('DateNaissance is not YYYY-MM-DD');
  const firstNames = (textOf(tiq, 'ListePrenom') ?? textOf(tiq, 'Prenom') ?? '').split(/\s+/).filter((n) => n !== '');
  const birthPlace = textOf(tiq, 'LieuNaissance');
  return { code: 'found', identity: { ins, birthName, firstNames, sex, birthDate: `${date[1]}${date[2]}${date[3]}`, ...(birthPlace ? { birthPlace } : {}) } };
}

/** The CNAM's service: one TLS agent per site, its organisation certificate as client certificate. */
export class SoapInsiClient implements InsiClient {
  private readonly agents = new Map<string, https.Agent>();

  constructor(private readonly config: InsiConfig, env: Record<string, string | undefined> = process.env) {
    if (!config.endpoint) throw new Error('INSi needs insi.endpoint');
    const ca = config.caFile ? readFileSync(config.caFile) : undefined;
    for (const site of config.sites) this.agents.set(site.site, agentOf(site, ca, env));
  }

  async search(site: string, query: InsiQuery): Promise<InsiOutcome> {
    const agent = this.agents.get(site);
    if (!agent) throw new InsiUnavailable(`site ${site} has no INSi certificate configured (insi.sites)`);
    const messageId = randomUUID();
    const body = insiSearchEnvelope(query, { software: this.config.software, emitter: this.config.emitter ?? site, messageId, at: new Date() });
    const answer = await post(this.config.endpoint!, agent, body, this.config.timeoutMs);
    return readInsiAnswer(answer);
  }
}

function agentOf(site: InsiSiteConfig, ca: Buffer | undefined, env: Record<string, string | undefined>): https.Agent {
  const passphrase = site.keyPassphraseEnv ? env[site.keyPassphraseEnv] : undefined;
  return new https.Agent({
    cert: readFileSync(site.certFile), key: readFileSync(site.keyFile), ...(passphrase !== undefined ? { passphrase } : {}),
    ...(ca ? { ca } : {}), keepAlive: true, minVersion: 'TLSv1.2',
  });
}

function post(endpoint: string, agent: https.Agent, body: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = https.request(endpoint, {
      method: 'POST', agent, timeout: timeoutMs,
      headers: { 'content-type': `application/soap+xml; charset=utf-8; action="${action}"`, 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        // An identity answer is a few KiB: anything much larger is not one.
        if (size > 1024 * 1024) req.destroy(new InsiMalformedAnswer('the answer is larger than 1 MiB'));
        else chunks.push(c);
      });
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        // SOAP 1.2 faults come with 4xx/5xx; readInsiAnswer tells a fault from garbage.
        if ((res.statusCode ?? 500) >= 500 && !text.includes('Fault')) reject(new InsiUnavailable(`INSi answered HTTP ${res.statusCode}`));
        else resolve(text);
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new InsiUnavailable(`no answer from INSi within ${timeoutMs} ms`)));
    req.on('error', (e) => reject(e instanceof InsiMalformedAnswer || e instanceof InsiUnavailable ? e : new InsiUnavailable(`INSi could not be reached: ${e.message}`)));
    req.end(body);
  });
}

/** Documents the RNIV accepts as proof of identity (high trust). */
export const proofsOfIdentity = ['passport', 'identity-card', 'residence-permit', 'family-record-book', 'birth-certificate'] as const;
export type ProofOfIdentity = (typeof proofsOfIdentity)[number];

export const insiMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'proofs of identity recorded by the identitovigilance team',
    sql: `
CREATE TABLE identity_proofs (
  id {id},
  patient_id BIGINT NOT NULL REFERENCES patients (id),
  kind {text} NOT NULL,
  recorded_by {text} NOT NULL,
  recorded_at {text} NOT NULL
);
CREATE INDEX identity_proofs_patient ON identity_proofs (patient_id);
`,
  },
];

export async function migrateInsi(db: SqlDatabase): Promise<void> {
  await applyMigrations(db, insiMigrations, 'insi_migrations');
}

/** The record lacks a trait INSi must be asked with. */
export class InsiTraitsMissing extends Error {
  override readonly name = 'InsiTraitsMissing';
}

export interface InsiCheck {
  outcome: InsiOutcome['code'] | 'ins-mismatch';
  /** The status of the record's identity after the check. */
  status: string;
  mode: 'search' | 'verify';
  /** Reviews the check opened. */
  reviews: string[];
}

/**
 * Checks the identity of a review's patient record against INSi and applies the answer (see
 * the top of this file). `inSites` are the sites the caller acts for (undefined: every site);
 * another site's review is answered as one that does not exist. The INSi call runs outside any
 * transaction; what it changes is written in one.
 */
export async function checkReviewAgainstInsi(db: SqlDatabase, client: InsiClient | undefined, reviewId: number, proof: ProofOfIdentity | undefined, by: string,
  inSites: readonly number[] | undefined): Promise<InsiCheck> {
  const r = await db.get<{ patient_id: number; state: string; site_id: number; site_code: string; ins: string | null; ins_oid: string | null; birth_name: string | null; first_names: string | null;
    sex: string | null; birth_date: string | null; birth_place: string | null; patient_name: string | null; p_sex: string | null; p_birth_date: string | null }>(
    `SELECT r.patient_id, r.state, p.site_id, s.code AS site_code, i.ins, i.ins_oid, i.birth_name, i.first_names, i.sex, i.birth_date, i.birth_place,
            p.patient_name, p.sex AS p_sex, p.birth_date AS p_birth_date
       FROM identity_reviews r JOIN patients p ON p.id = r.patient_id JOIN sites s ON s.id = p.site_id
       LEFT JOIN patient_identities i ON i.patient_id = r.patient_id WHERE r.id = ?`, [reviewId]);
  if (!r || (inSites !== undefined && !inSites.includes(Number(r.site_id)))) throw new ReviewNotFoundError(`review ${reviewId} does not exist`);
  if (r.state !== 'open') throw new ReviewNotOpenError(`review ${reviewId} is not open`);
  if (!client) throw new InsiUnavailable('INSi is not configured (insi.endpoint)');
  const [family = '', given = ''] = (r.patient_name ?? '').split('^');
  const query = {
    birthName: r.birth_name ?? family,
    firstName: (r.first_names ?? given).split(' ')[0] ?? '',
    sex: r.sex ?? r.p_sex ?? '',
    birthDate: r.birth_date ?? r.p_birth_date ?? '',
    ...(r.birth_place ? { birthPlace: r.birth_place } : {}),
  };
  const lacking = [query.birthName === '' && 'birth name', query.firstName === '' && 'first name', query.sex !== 'M' && query.sex !== 'F' && 'sex (M or F)',
    !/^\d{8}$/.test(query.birthDate) && 'birth date'].filter((v): v is string => typeof v === 'string');
  if (lacking.length > 0) throw new InsiTraitsMissing(`the record lacks what INSi is asked with: ${lacking.join(', ')}`);
  const known = r.ins && r.ins_oid ? safeINS(r.ins, r.ins_oid) : undefined;
  const mode = known ? 'verify' : 'search';
  const answer = await client.search(r.site_code, query as InsiQuery);
  const patientId = Number(r.patient_id);
  return db.transaction(async (tx) => {
    const reviews: string[] = [];
    const statusNow = async () => (await tx.get<{ status: string }>('SELECT status FROM patient_identities WHERE patient_id = ?', [patientId]))?.status ?? 'provisional';
    if (answer.code === 'several') {
      if (await openReview(tx, 'insi-several', patientId, null, 'INSi: several identities answer these traits; check them with an identity document')) reviews.push('insi-several');
      return { outcome: 'several', status: await statusNow(), mode, reviews };
    }
    if (answer.code === 'not-found') return { outcome: 'not-found', status: await statusNow(), mode, reviews };
    const found = answer.identity;
    // Verifying: INSi must answer the INS the record holds, else the record names someone else.
    if (known && !sameINS(known, found.ins)) {
      if (await openReview(tx, 'ins-conflict', patientId, null, `INSi answers another INS (ending ${insValue(found.ins).slice(-4)}) than the record's (ending ${insValue(known).slice(-4)})`)) reviews.push('ins-conflict');
      return { outcome: 'ins-mismatch', status: await statusNow(), mode, reviews };
    }
    if (proof) {
      await tx.run('INSERT INTO identity_proofs (patient_id, kind, recorded_by, recorded_at) VALUES (?, ?, ?, ?)', [patientId, proof, by, new Date().toISOString()]);
    }
    // A proof recorded now or before makes the identity INSi recovered a qualified one; nothing else does.
    const proven = proof !== undefined || (await tx.get<{ id: number }>('SELECT id FROM identity_proofs WHERE patient_id = ? LIMIT 1', [patientId])) !== undefined;
    const status = proven ? 'qualified' : 'recovered';
    const outcome = await recordIdentity(tx, patientId, {
      ins: found.ins, status, source: 'insi', birthName: found.birthName, firstNames: found.firstNames, sex: found.sex,
      birthDate: found.birthDate, ...(found.birthPlace ? { birthPlace: found.birthPlace } : {}),
    });
    reviews.push(...outcome.reviews);
    return { outcome: 'found', status: await statusNow(), mode, reviews };
  });
}

function safeINS(value: string, oid: string): INS | undefined {
  try {
    return parseINS(value, oid);
  } catch {
    return undefined;
  }
}
