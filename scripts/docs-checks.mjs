#!/usr/bin/env node
// Writes docs/checks.md from the doctor's check modules (build first: `npm run docs:checks` does both).
//   node scripts/docs-checks.mjs          write the page
//   node scripts/docs-checks.mjs --check  exit 1 when the committed page differs from what would be written
import { readFileSync, writeFileSync } from 'node:fs';

const root = new URL('..', import.meta.url);
const page = new URL('docs/checks.md', root);
let render;
try {
  ({ renderChecksPage: render } = await import(new URL('dist/src/doctor/checks-page.js', root).href));
} catch {
  process.stderr.write('docs:checks: build first (npm run build)\n');
  process.exit(2);
}
const text = render();
if (process.argv.includes('--check')) {
  let current = '';
  try {
    current = readFileSync(page, 'utf8');
  } catch {
    // missing counts as stale
  }
  if (current !== text) {
    process.stderr.write('docs/checks.md is stale: run npm run docs:checks\n');
    process.exit(1);
  }
  process.stdout.write('docs/checks.md is up to date\n');
} else {
  writeFileSync(page, text);
  process.stdout.write(`wrote docs/checks.md (${text.split('\n').length} lines)\n`);
}
