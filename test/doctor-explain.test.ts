/** tsm doctor --explain: every check explains itself, without any database. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runTsm } from './helpers/cli.js';
import { ALL_IDS } from './helpers/doctor.js';

describe('tsm doctor --explain', () => {
  it('every check: what it looks at, why it matters, its SQL and remedy; exit 0 with no database configured', async () => {
    await Promise.all(
      ALL_IDS.map(async (id) => {
        const r = await runTsm(['doctor', '--explain', id]);
        assert.equal(r.code, 0, `${id}: ${r.stderr}`);
        assert.equal(r.stderr, '');
        assert.ok(r.stdout.startsWith(`${id}: `), r.stdout);
        for (const section of ['What it looks at', 'Why it matters', 'SQL', 'Remedy when not ok']) {
          assert.match(r.stdout, new RegExp(`\\n${section}`), `${id} lacks ${section}`);
        }
        assert.match(r.stdout, /\b(SELECT|EXPLAIN)\b/, `${id} shows its SQL`);
      }),
    );
  });

  it('--json: one document; the SQL follows --schema', async () => {
    const r = await runTsm(['doctor', '--explain', 'index.on-conflict', '--json', '--schema', 'tg']);
    assert.equal(r.code, 0);
    const e = r.json();
    assert.equal(e.id, 'index.on-conflict');
    assert.equal(e.severity, 'fail');
    assert.match(e.sql, /^BEGIN READ ONLY;/);
    assert.match(e.sql, /EXPLAIN \(COSTS OFF\) INSERT INTO "tg"\."telegram_sessions" \(user_id\) VALUES \(NULL\) ON CONFLICT \(user_id\) WHERE user_id IS NOT NULL/);
    assert.match(e.sql, /\nROLLBACK;\n/);
    assert.match(e.sql, /WHERE n\.nspname = \$1::text AND c\.relname = 'telegram_sessions' AND NOT i\.indimmediate/, 'the deferrable indexes: the schema is a parameter');
    assert.deepEqual(e.parameters, { $1: 'tg' });
    assert.doesNotMatch(e.sql, /ANALYZE/);
    assert.match(e.remedy, /tsm migrate up --schema tg/);

    const catalog = (await runTsm(['doctor', '--explain', 'privileges', '--json', '--schema', 'tg'])).json();
    assert.deepEqual(catalog.parameters, { $1: 'tg' });
    assert.match(catalog.sql, /has_table_privilege\(c\.oid, 'INSERT'\)/);
  });
});
