/**
 * teleradiology.mssante: sending signed reports over MSSanté (src/exchange/mssante/). Off
 * unless set. The operator's SMTP submission and IMAP servers, and per site its application
 * mailbox (BAL applicative) with the certificate that authenticates it; keys and passwords
 * never in the file (their passphrase or password named by an environment variable).
 */
import { existsSync } from 'node:fs';
import { ConfigError } from './config.ts';

export interface MssanteSiteConfig {
  site: string;
  /** The site's application mailbox at its MSSanté operator (From, Disposition-Notification-To). */
  address: string;
  certFile: string;
  keyFile: string;
  keyPassphraseEnv?: string;
  /** IMAP login (default: the address) and the variable holding its password, if the operator asks one beside the certificate. */
  imapUser?: string;
  imapPasswordEnv?: string;
  /** The site allows reports to go to the patient's own mailbox (<INS>@patient.mssante.fr), qualified INS only. */
  patients: boolean;
}

export interface MssanteConfig {
  /** SMTP submission, STARTTLS required. */
  smtp: { host: string; port: number };
  /** IMAP over TLS (implicit), for the MDNs and bounces. */
  imap: { host: string; port: number };
  /** The authorities the operator's servers are checked against (PEM file). */
  caFile?: string;
  /** The software's reference (product / approval number), sent as X-MSS-NIL. */
  productReference: string;
  /** The MSSanté addresses of professionals by RPPS: a JSON file [{ "rpps": "...", "address": "..." }]. */
  directoryFile?: string;
  /**
   * The Annuaire Santé FHIR API, asked for an RPPS the directory file lacks: Practitioner by
   * identifier (with its PractitionerRoles), the first mssante.fr address; its key from apiKeyEnv.
   */
  annuaire?: { baseUrl: string; apiKeyEnv?: string };
  timeoutMs: number;
  /** How often the mailboxes are read for answers. */
  pollMs: number;
  sites: MssanteSiteConfig[];
}

type Raw = Record<string, unknown>;

const asObj = (v: unknown, where: string): Raw => {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new ConfigError(`${where} must be a mapping`);
  return v as Raw;
};
const asStr = (raw: Raw, key: string, where: string): string | undefined => {
  const v = raw[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || v === '') throw new ConfigError(`${where}.${key} must be a non-empty string`);
  return v;
};
const need = (raw: Raw, key: string, where: string): string => {
  const v = asStr(raw, key, where);
  if (v === undefined) throw new ConfigError(`${where}.${key} is required`);
  return v;
};
const file = (raw: Raw, key: string, where: string): string => {
  const v = need(raw, key, where);
  if (!existsSync(v)) throw new ConfigError(`${where}.${key}: file not found: ${v}`);
  return v;
};
const port = (raw: Raw, where: string, dflt: number): number => {
  const v = raw.port ?? dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) throw new ConfigError(`${where}.port must be a TCP port`);
  return v;
};
const envName = (raw: Raw, key: string, where: string): string | undefined => {
  const v = asStr(raw, key, where);
  if (v !== undefined && !/^[A-Z_][A-Z0-9_]*$/.test(v)) throw new ConfigError(`${where}.${key} must name an environment variable`);
  return v;
};
const ADDRESS = /^[^\s@<>()",;]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$/;

/** Parses teleradiology.mssante; undefined when absent. `siteCodes`: the configured sites. */
export function parseMssante(value: unknown, siteCodes: readonly string[]): MssanteConfig | undefined {
  if (value === undefined || value === null) return undefined;
  const where = 'teleradiology.mssante';
  const m = asObj(value, where);
  const known = new Set(['smtp', 'imap', 'caFile', 'productReference', 'directoryFile', 'annuaire', 'timeoutMs', 'pollMs', 'sites']);
  const unknown = Object.keys(m).find((k) => !known.has(k));
  if (unknown) throw new ConfigError(`${where}.${unknown} is not a key of ${where} (${[...known].join(', ')})`);
  const smtp = asObj(m.smtp, `${where}.smtp`);
  const imap = asObj(m.imap, `${where}.imap`);
  const number = (key: string, dflt: number, min: number, max: number): number => {
    const v = m[key] ?? dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new ConfigError(`${where}.${key} must be a whole number between ${min} and ${max}`);
    return v;
  };
  const caFile = m.caFile === undefined ? undefined : file(m, 'caFile', where);
  const directoryFile = m.directoryFile === undefined ? undefined : file(m, 'directoryFile', where);
  let annuaire: MssanteConfig['annuaire'];
  if (m.annuaire !== undefined) {
    const a = asObj(m.annuaire, `${where}.annuaire`);
    const baseUrl = need(a, 'baseUrl', `${where}.annuaire`);
    let url: URL;
    try {
      url = new URL(baseUrl);
    } catch {
      throw new ConfigError(`${where}.annuaire.baseUrl is not a URL`);
    }
    const loopback = url.hostname === 'localhost' || url.hostname === '127.0.0.1' || url.hostname === '[::1]';
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) throw new ConfigError(`${where}.annuaire.baseUrl must be an https URL (http on loopback only)`);
    const apiKeyEnv = envName(a, 'apiKeyEnv', `${where}.annuaire`);
    annuaire = { baseUrl: baseUrl.replace(/\/+$/, ''), ...(apiKeyEnv ? { apiKeyEnv } : {}) };
  }
  if (!Array.isArray(m.sites) || m.sites.length === 0) throw new ConfigError(`${where}.sites must list at least one site's mailbox`);
  const siteKeys = new Set(['site', 'address', 'certFile', 'keyFile', 'keyPassphraseEnv', 'imapUser', 'imapPasswordEnv', 'patients']);
  const sites = m.sites.map((entry: unknown, i): MssanteSiteConfig => {
    const at = `${where}.sites[${i}]`;
    const e = asObj(entry, at);
    if (e.password !== undefined || e.keyPassphrase !== undefined || e.imapPassword !== undefined) throw new ConfigError(`${at}: a password or passphrase never goes in the file: name its environment variable (keyPassphraseEnv, imapPasswordEnv)`);
    const extra = Object.keys(e).find((k) => !siteKeys.has(k));
    if (extra) throw new ConfigError(`${at}.${extra} is not a key of ${at} (${[...siteKeys].join(', ')})`);
    const site = need(e, 'site', at);
    if (!siteCodes.includes(site)) throw new ConfigError(`${at}.site ${site} is not a configured site`);
    const address = need(e, 'address', at);
    if (!ADDRESS.test(address)) throw new ConfigError(`${at}.address must be a mail address`);
    if (e.patients !== undefined && typeof e.patients !== 'boolean') throw new ConfigError(`${at}.patients must be true or false`);
    const keyPassphraseEnv = envName(e, 'keyPassphraseEnv', at);
    const imapPasswordEnv = envName(e, 'imapPasswordEnv', at);
    const imapUser = asStr(e, 'imapUser', at);
    return {
      site, address, certFile: file(e, 'certFile', at), keyFile: file(e, 'keyFile', at), patients: e.patients === true,
      ...(keyPassphraseEnv ? { keyPassphraseEnv } : {}), ...(imapPasswordEnv ? { imapPasswordEnv } : {}), ...(imapUser ? { imapUser } : {}),
    };
  });
  const seen = new Set<string>();
  for (const s of sites) {
    if (seen.has(s.site)) throw new ConfigError(`${where}.sites names ${s.site} twice`);
    seen.add(s.site);
  }
  return {
    smtp: { host: need(smtp, 'host', `${where}.smtp`), port: port(smtp, `${where}.smtp`, 587) },
    imap: { host: need(imap, 'host', `${where}.imap`), port: port(imap, `${where}.imap`, 993) },
    ...(caFile ? { caFile } : {}), ...(directoryFile ? { directoryFile } : {}), ...(annuaire ? { annuaire } : {}),
    productReference: asStr(m, 'productReference', where) ?? 'Atrium',
    timeoutMs: number('timeoutMs', 30_000, 100, 600_000), pollMs: number('pollMs', 60_000, 10, 86_400_000), sites,
  };
}

export const isMailAddress = (s: string): boolean => ADDRESS.test(s);
