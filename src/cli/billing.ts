import { writeFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { Archive } from '../archive/archive.ts';
import { ConfigError, type AtriumConfig } from '../config/config.ts';
import { isMonth } from '../config/billing-config.ts';
import { BillingError, invoiceCsv, invoiceFor, invoicePdf } from '../billing/invoice.ts';
import { MeteringConsumer, monthlyUsage } from '../billing/metering.ts';

/**
 * `atrium billing invoice --site CODE --month YYYY-MM [--pdf FILE]`: the site's invoice for
 * the month as CSV on stdout (one line per service and item), and as PDF into FILE.
 * `atrium billing usage --month YYYY-MM`: every site's counts for the month, as JSON.
 * Events not metered yet (no `atrium serve` running meanwhile) are metered first.
 */
export async function runBillingCommand(archive: Archive, config: AtriumConfig, logger: Logger, args: string[], o: { site?: string[]; month?: string; pdf?: string }): Promise<number> {
  const sub = args[0];
  if (sub !== 'invoice' && sub !== 'usage') throw new ConfigError('atrium billing invoice --site CODE --month YYYY-MM [--pdf FILE], or atrium billing usage --month YYYY-MM');
  if (!isMonth(o.month)) throw new ConfigError('--month must be a month YYYY-MM, e.g. --month 2026-11');
  await new MeteringConsumer(archive, config.billing.timeZone, logger).drain();
  if (sub === 'usage') {
    process.stdout.write(`${JSON.stringify({ month: o.month, sites: await monthlyUsage(archive, o.month, o.site) }, null, 2)}\n`);
    return 0;
  }
  if (o.site?.length !== 1) throw new ConfigError('atrium billing invoice needs one --site CODE');
  try {
    const invoice = await invoiceFor(archive, config.billing, o.site[0]!, o.month);
    process.stdout.write(invoiceCsv(invoice));
    if (o.pdf !== undefined) writeFileSync(o.pdf, await invoicePdf(invoice, { issuer: config.billing.issuer, generatedAt: new Date() }));
    return 0;
  } catch (e) {
    if (e instanceof BillingError) throw new ConfigError(e.message);
    throw e;
  }
}
