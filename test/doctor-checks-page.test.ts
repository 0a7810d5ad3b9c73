/**
 * docs/checks.md is generated from the check modules (issue 13): it fails when the committed page
 * differs from what `npm run docs:checks` writes, and the page says what --explain says.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { renderChecksPage } from '../src/doctor/checks-page.js';
import { runTsm } from './helpers/cli.js';
import { ALL_IDS } from './helpers/doctor.js';

const PAGE = fileURLToPath(new URL('../../docs/checks.md', import.meta.url));

describe('docs/checks.md', () => {
  it('is what `npm run docs:checks` generates (run it after changing a check)', () => {
    const committed = readFileSync(PAGE, 'utf8');
    assert.ok(committed === renderChecksPage(), 'docs/checks.md is stale: run `npm run docs:checks` and commit it');
  });

  it('has one section per check, each with the text --explain prints', async () => {
    const page = readFileSync(PAGE, 'utf8');
    assert.deepEqual([...page.matchAll(/^## (\S+)$/gm)].map((m) => m[1]), ALL_IDS);
    for (const id of ['index.invalid', 'server.writable', 'data.null-user-id']) {
      const e = (await runTsm(['doctor', '--explain', id, '--json'])).json();
      const section = page.split(`\n## ${id}\n`)[1]!.split('\n## ')[0]!;
      for (const text of [e.looks_at, e.why, e.remedy, e.sql, e.example.bad, e.example.good]) {
        assert.ok(section.includes(text), `${id}: the page lacks ${JSON.stringify(text.slice(0, 60))}`);
      }
    }
  });
});
