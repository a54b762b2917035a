#!/usr/bin/env node
// Atrium's command line in production: the compiled JavaScript of `npm run build` (dist/).
// Development runs the TypeScript sources through tsx instead (`npm run atrium`).
import { existsSync } from 'node:fs';
import { isSupportedNode, supportedNodeRange } from './node-version.mjs';

if (!isSupportedNode(process.versions.node)) {
  process.stderr.write(`atrium: Node.js ${process.versions.node} is not supported; Atrium needs Node.js ${supportedNodeRange}.\n`);
  process.exit(2);
}
const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write('atrium: the compiled code is missing (dist/cli/main.js): run `npm run build` first.\n');
  process.exit(2);
}
await import(main.href);
