#!/usr/bin/env node
// Entry point, and the only module of tsm that runs code on import: the CLI (built into dist/ by
// `npm install` / `npm run build`) exports main(); this file runs it and sets the exit code.
import { existsSync } from 'node:fs';
const cli = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write('tsm: not built yet; run `npm install` (or `npm run build`) in the tsm folder first\n');
  process.exit(2);
}
const { main } = await import(cli.href);
process.exitCode = await main(process.argv);
