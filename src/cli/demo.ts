import type { Logger } from 'pino';
import type { AtriumConfig } from '../config/config.ts';
import { DemoRefused, demoUsers, loadDemoTerritory } from '../demo/territory.ts';
import { firstAdministratorLogin } from './first-admin.ts';

/** `atrium demo [--force]`: the report on stdout (JSON), what to do next on stderr. */
export async function runDemoCommand(config: AtriumConfig, file: string | undefined, force: boolean, logger: Logger): Promise<number> {
  let report;
  try {
    // Warnings only: stdout carries the JSON report.
    const quiet = logger.child({ component: 'demo' }, { level: 'warn' });
    report = await loadDemoTerritory(config, { file, force, logger: quiet, writeSecret: (t) => process.stderr.write(t) });
  } catch (e) {
    if (!(e instanceof DemoRefused)) throw e;
    process.stderr.write(`atrium: ${e.message}\n`);
    return 2;
  }
  process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  const start = report.configFile !== undefined
    ? `npm start -- --config ${report.configFile}   (or: node bin/atrium.mjs serve --config ${report.configFile})`
    : 'npm start';
  process.stderr.write([
    '',
    `  The demo territory is loaded (sites ${report.sites.join(', ')}). Next:`,
    `    ${start}`,
    `  then open the portal (http://${config.http.host}:${config.http.port}/app/) as "${demoUsers.radiologist}" (teleradiology worklist, viewer,`,
    `  priors of the other site), "${demoUsers.technologist}" (the request), or "${firstAdministratorLogin}" (everything). See docs/usage.md.`,
    '',
    '',
  ].join('\n'));
  return 0;
}
