/**
 * The configuration of the archive's lifecycle (retention rules, evaluated daily) and of
 * monitoring (who may scrape /metrics). Parsed here, called from config.ts, so that the
 * two sections keep their validation together.
 */
import { isIP } from 'node:net';
import { ConfigError, mapping, onlyKeys } from './config.ts';

/**
 * A retention rule: which studies it covers (sites, modalities; none given: every one) and
 * how long they are kept after the patient's last contact (stay, consultation, exam).
 * keepMinorsUntilAge: never before the patient's birthday of that age.
 */
export interface RetentionRule {
  name: string;
  sites?: string[];
  modalities?: string[];
  yearsAfterLastContact: number;
  keepMinorsUntilAge?: number;
}

export interface LifecycleConfig {
  /** Rules in order: the first that covers a study applies. */
  retention: RetentionRule[];
  /** How often `atrium serve` lists the studies past their retention (hours). */
  evaluateEveryHours: number;
}

export interface MonitoringConfig {
  /** Addresses (IPs or CIDR blocks) whose scrapes /metrics answers; others get 403. */
  allowFrom: string[];
}

/**
 * The French default for a hospital record (Code de la santé publique, art. R1112-7): 20
 * years after the last stay or outpatient consultation, and, when that ends sooner, until
 * the patient's 28th birthday.
 */
export const frenchHospitalRetention: RetentionRule = { name: 'CSP R1112-7', yearsAfterLastContact: 20, keepMinorsUntilAge: 28 };

export function defaultLifecycleConfig(): LifecycleConfig {
  return { retention: [{ ...frenchHospitalRetention }], evaluateEveryHours: 24 };
}

export function defaultMonitoringConfig(): MonitoringConfig {
  return { allowFrom: ['127.0.0.1/8', '::1/128'] };
}


function wholeNumber(v: unknown, where: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw new ConfigError(`${where} must be a whole number between ${min} and ${max}`);
  return v;
}

function stringList(v: unknown, where: string, valid: (s: string) => boolean): string[] {
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string' || !valid(s))) throw new ConfigError(`${where} must be a list of valid values`);
  return v as string[];
}

export function parseLifecycle(raw: unknown, siteCodes: readonly string[]): LifecycleConfig {
  const d = mapping(raw, 'lifecycle');
  onlyKeys(d, ['retention', 'evaluateEveryHours'], 'lifecycle');
  const c = defaultLifecycleConfig();
  if (d.evaluateEveryHours !== undefined) c.evaluateEveryHours = wholeNumber(d.evaluateEveryHours, 'lifecycle.evaluateEveryHours', 1, 24 * 31);
  if (d.retention === undefined) return c;
  if (!Array.isArray(d.retention) || d.retention.length === 0) throw new ConfigError('lifecycle.retention must be a non-empty list of rules');
  c.retention = d.retention.map((entry: unknown, i) => {
    const at = `lifecycle.retention[${i}]`;
    const e = mapping(entry, at);
    onlyKeys(e, ['name', 'sites', 'modalities', 'yearsAfterLastContact', 'keepMinorsUntilAge'], at);
    if (typeof e.name !== 'string' || e.name === '') throw new ConfigError(`${at}.name is required`);
    const rule: RetentionRule = { name: e.name, yearsAfterLastContact: wholeNumber(e.yearsAfterLastContact, `${at}.yearsAfterLastContact`, 1, 200) };
    if (e.sites !== undefined) {
      rule.sites = stringList(e.sites, `${at}.sites`, (s) => siteCodes.includes(s));
    }
    if (e.modalities !== undefined) rule.modalities = stringList(e.modalities, `${at}.modalities`, (s) => /^[A-Z0-9_]{1,16}$/.test(s));
    if (e.keepMinorsUntilAge !== undefined) rule.keepMinorsUntilAge = wholeNumber(e.keepMinorsUntilAge, `${at}.keepMinorsUntilAge`, 18, 150);
    return rule;
  });
  return c;
}

/** An address or CIDR block: "10.0.0.0/8", "::1/128", "192.0.2.7". */
export function isAddressBlock(s: string): boolean {
  const [address, bits, ...rest] = s.split('/');
  if (rest.length > 0 || address === undefined) return false;
  const family = isIP(address);
  if (family === 0) return false;
  if (bits === undefined) return true;
  return /^[0-9]{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}

export function parseMonitoring(raw: unknown): MonitoringConfig {
  const d = mapping(raw, 'monitoring');
  onlyKeys(d, ['allowFrom'], 'monitoring');
  const c = defaultMonitoringConfig();
  if (d.allowFrom !== undefined) c.allowFrom = stringList(d.allowFrom, 'monitoring.allowFrom', isAddressBlock);
  return c;
}
