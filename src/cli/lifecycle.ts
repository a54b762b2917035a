import type { Archive } from '../archive/archive.ts';
import type { AtriumConfig } from '../config/config.ts';
import { ConfigError } from '../config/config.ts';
import { evaluateRetention, findDueStudies, type DueStudy } from '../archive/lifecycle.ts';

/**
 * `atrium lifecycle [--dry-run] [--now YYYY-MM-DD] [--site CODE]`: the studies past their
 * retention and why (rule, last contact, the day they could go, a minor kept longer, a legal
 * hold). --dry-run changes nothing; without it the list for review (GET /api/lifecycle/due)
 * is replaced, as the daily evaluation does. Nothing is ever deleted here: an administrator
 * approves each deletion.
 */
export async function runLifecycleCommand(archive: Archive, config: AtriumConfig, o: { dryRun: boolean; now?: string; sites?: string[] }): Promise<number> {
  let now = new Date();
  if (o.now !== undefined) {
    if (!/^[0-9]{4}-[0-9]{2}-[0-9]{2}$/.test(o.now) || Number.isNaN(Date.parse(o.now))) throw new ConfigError('--now must be a date YYYY-MM-DD');
    now = new Date(`${o.now}T12:00:00Z`);
  }
  const siteIds = o.sites?.map((code) => {
    const site = archive.sites.get(code);
    if (!site) throw new ConfigError(`--site ${code} is not a configured site`);
    return site.id;
  });
  const options = { rules: config.lifecycle.retention, now, ...(siteIds ? { siteIds } : {}) };
  const due = o.dryRun ? await findDueStudies(archive, options) : await evaluateRetention(archive, options);
  const why = (d: DueStudy) => `rule "${d.rule}": last contact ${d.lastContact}, kept until ${d.keepUntil}${d.keptForMinor ? ' (a minor: kept until the age the rule says)' : ''}`;
  for (const d of due) {
    process.stdout.write(`${d.held ? 'kept (legal hold)' : o.dryRun ? 'would go' : 'due'}\t${d.site}\t${d.StudyInstanceUID}\t${why(d)}\n`);
  }
  const going = due.filter((d) => !d.held).length;
  process.stdout.write(`${going} ${o.dryRun ? 'would go' : 'listed for review'}, ${due.length - going} kept by a legal hold${o.dryRun ? ' (dry run: nothing changed)' : ''}\n`);
  return 0;
}
