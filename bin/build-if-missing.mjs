#!/usr/bin/env node
// `npm start`'s first step (prestart): on a fresh clone, where neither the server's compiled
// code (dist/) nor the portal (web/dist/) has been built yet, builds both once with
// `npm run build`, so that `npm ci && npm start` gives the whole product. Does nothing when
// both are there (rebuilding after a change stays `npm run build`), and says what to do where
// the build tools were not installed (`npm ci --omit=dev`: build on a machine that has them).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const built = ['dist/cli/main.js', 'web/dist/index.html'].every((f) => existsSync(path.join(root, f)));
if (!built) {
  if (!existsSync(path.join(root, 'node_modules/typescript')) || !existsSync(path.join(root, 'node_modules/vite'))) {
    process.stderr.write('atrium: not built yet (dist/, web/dist/) and the build tools are not installed: run `npm ci` then `npm run build` (or copy dist/ and web/dist/ from a build machine).\n');
    process.exit(2);
  }
  process.stderr.write('atrium: first start on this copy: building the server and the portal (npm run build, about a minute)...\n');
  const npm = process.env.npm_execpath;
  const run = npm
    ? spawnSync(process.execPath, [npm, 'run', 'build'], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] })
    : spawnSync('npm', ['run', 'build'], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (run.status !== 0) {
    process.stderr.write('atrium: the build failed (above); `npm run build` shows it again.\n');
    process.exit(run.status ?? 1);
  }
}
