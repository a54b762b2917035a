/**
 * The configuration of billing (src/billing/): per site, the services it subscribes to (from
 * which month) and its tariff for each: a set-up fee, a price per exam, and for the archive
 * an optional price per GB-month stored. Checked at start: a subscribed service without its
 * tariff is a configuration error naming the key to add. Amounts are in euros with at most
 * two decimals (cents); they are kept as whole cents so that no invoice rounds a price.
 */
import { ConfigError, mapping, onlyKeys } from './config.ts';

/**
 * What a site may subscribe to, and what each bills "per exam":
 * - archive: exams archived (a study counts once, when its first object arrives); storage per GB-month;
 * - sharing: exams shared (a share link or a share to a professional); links opened are counted, not billed;
 * - teleradiology: remote readings signed final (acts); second readings answered, at their own price;
 * - dmp: documents published in the DMP.
 */
export const billingServices = ['archive', 'sharing', 'teleradiology', 'dmp'] as const;
export type BillingService = (typeof billingServices)[number];

export interface ServiceTariff {
  /** Charged once, on the invoice of the month the subscription starts (cents). */
  setupFeeCents: number;
  /** Per exam of the service (cents). */
  perExamCents: number;
  /** teleradiology: per second reading answered (cents); default perExam. */
  perSecondReadingCents?: number;
  /** archive: per GB (10^9 bytes) stored at the end of the month (cents); absent: storage is not billed. */
  storagePerGBMonthCents?: number;
}

export interface SiteBilling {
  site: string;
  /** Subscribed services and the month (YYYY-MM) each starts. */
  services: Partial<Record<BillingService, string>>;
  tariffs: Partial<Record<BillingService, ServiceTariff>>;
}

export interface BillingConfig {
  /** ISO 4217 code printed on invoices. */
  currency: string;
  /** Invoice issuer's name, printed on the PDF. */
  issuer: string;
  /** The time zone (IANA) whose calendar months the invoices follow; default Europe/Paris. */
  timeZone: string;
  sites: SiteBilling[];
}

export function defaultBillingConfig(): BillingConfig {
  return { currency: 'EUR', issuer: 'Atrium', timeZone: 'Europe/Paris', sites: [] };
}

const monthPattern = /^[0-9]{4}-(0[1-9]|1[0-2])$/;

export function isMonth(s: unknown): s is string {
  return typeof s === 'string' && monthPattern.test(s);
}


/** An amount in euros (at most two decimals, 0 to 1,000,000) as whole cents. */
function cents(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1_000_000) throw new ConfigError(`${where} must be an amount between 0 and 1000000`);
  const c = Math.round(v * 100);
  if (Math.abs(c - v * 100) > 1e-6) throw new ConfigError(`${where} must have at most two decimals (cents)`);
  return c;
}

function isService(s: string): s is BillingService {
  return (billingServices as readonly string[]).includes(s);
}

export function parseBilling(raw: unknown, siteCodes: readonly string[]): BillingConfig {
  const d = mapping(raw, 'billing');
  onlyKeys(d, ['currency', 'issuer', 'timeZone', 'sites'], 'billing');
  const c = defaultBillingConfig();
  if (d.currency !== undefined) {
    if (typeof d.currency !== 'string' || !/^[A-Z]{3}$/.test(d.currency)) throw new ConfigError('billing.currency must be an ISO 4217 code such as EUR');
    c.currency = d.currency;
  }
  if (d.issuer !== undefined) {
    if (typeof d.issuer !== 'string' || d.issuer.trim() === '') throw new ConfigError('billing.issuer must be a name');
    c.issuer = d.issuer;
  }
  if (d.timeZone !== undefined) {
    try {
      if (typeof d.timeZone !== 'string') throw new Error();
      new Intl.DateTimeFormat('en', { timeZone: d.timeZone });
    } catch {
      throw new ConfigError(`billing.timeZone: ${String(d.timeZone)} is not an IANA time zone (e.g. Europe/Paris)`);
    }
    c.timeZone = d.timeZone as string;
  }
  const sites = mapping(d.sites, 'billing.sites');
  for (const [code, entry] of Object.entries(sites)) {
    const at = `billing.sites.${code}`;
    if (!siteCodes.includes(code)) throw new ConfigError(`${at}: ${code} is not a site of sites[]`);
    const e = mapping(entry, at);
    onlyKeys(e, ['services', 'tariffs'], at);
    const services: SiteBilling['services'] = {};
    for (const [name, from] of Object.entries(mapping(e.services, `${at}.services`))) {
      if (!isService(name)) throw new ConfigError(`${at}.services.${name} is not a service (${billingServices.join(', ')})`);
      if (!isMonth(from)) throw new ConfigError(`${at}.services.${name} must be the month the subscription starts, as 'YYYY-MM' (quoted)`);
      services[name] = from;
    }
    const tariffs: SiteBilling['tariffs'] = {};
    for (const [name, value] of Object.entries(mapping(e.tariffs, `${at}.tariffs`))) {
      const tat = `${at}.tariffs.${name}`;
      if (!isService(name)) throw new ConfigError(`${tat}: ${name} is not a service (${billingServices.join(', ')})`);
      const t = mapping(value, tat);
      const keys = ['setupFee', 'perExam', ...(name === 'teleradiology' ? ['perSecondReading'] : []), ...(name === 'archive' ? ['storagePerGBMonth'] : [])];
      onlyKeys(t, keys, tat);
      if (t.setupFee === undefined || t.perExam === undefined) throw new ConfigError(`${tat} needs setupFee and perExam (0 when free)`);
      const tariff: ServiceTariff = { setupFeeCents: cents(t.setupFee, `${tat}.setupFee`), perExamCents: cents(t.perExam, `${tat}.perExam`) };
      if (t.perSecondReading !== undefined) tariff.perSecondReadingCents = cents(t.perSecondReading, `${tat}.perSecondReading`);
      if (t.storagePerGBMonth !== undefined) tariff.storagePerGBMonthCents = cents(t.storagePerGBMonth, `${tat}.storagePerGBMonth`);
      tariffs[name] = tariff;
    }
    const missing = (Object.keys(services) as BillingService[]).filter((s) => tariffs[s] === undefined);
    if (missing.length > 0) {
      throw new ConfigError(`${at}: ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} subscribed without a tariff: add ${missing.map((s) => `${at}.tariffs.${s} (setupFee, perExam)`).join(' and ')}`);
    }
    c.sites.push({ site: code, services, tariffs });
  }
  return c;
}
