#!/usr/bin/env node
// Entry point: the CLI is built into dist/ by `npm install` / `npm run build`.
import { existsSync } from 'node:fs';
const cli = new URL('../dist/src/cli.js', import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write('tsm: not built yet; run `npm install` (or `npm run build`) in the tsm folder first\n');
  process.exit(2);
}
await import(cli.href);
