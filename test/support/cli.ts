/**
 * How tests run Atrium's command line in a process. From the compiled code (bin/atrium.mjs
 * and dist/, as in production and as `npm test` builds it first) when dist/ is at least as
 * recent as every source file: no TypeScript compilation in each child process, which a
 * loaded CI machine feels with a hundred of them. Otherwise, from the sources through tsx,
 * so a test run right after an edit never runs stale compiled code.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

export const repoRoot = path.resolve(import.meta.dirname, '../..');

function newestSourceMs(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSourceMs(p));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

let decided: string[] | undefined;

/** The arguments after `node` that run the CLI (append the command and its options). */
export function atriumCliArgs(): string[] {
  if (decided) return [...decided];
  const compiled = path.join(repoRoot, 'dist/cli/main.js');
  const fresh = existsSync(compiled) && statSync(compiled).mtimeMs >= newestSourceMs(path.join(repoRoot, 'src'));
  decided = fresh ? [path.join(repoRoot, 'bin/atrium.mjs')] : ['--import', 'tsx', path.join(repoRoot, 'src/cli/main.ts')];
  return [...decided];
}
