/** Connection settings and URL masking (pure functions: no database). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { maskUrl, resolveConnection } from '../src/config.js';
import { UsageError } from '../src/errors.js';

describe('maskUrl', () => {
  it('replaces the password, keeps everything else', () => {
    assert.equal(maskUrl('postgres://app:s3cret@db:5432/app'), 'postgres://app:***@db:5432/app');
    assert.equal(maskUrl('postgres://app@db/app'), 'postgres://app@db/app');
  });
  it('masks a password given as a query parameter', () => {
    const out = maskUrl('postgresql://app@db/app?sslmode=require&password=s3cret');
    assert.ok(!out.includes('s3cret'), out);
    assert.ok(out.includes('sslmode=require'));
  });
  it('masks even an unparseable URL', () => {
    assert.ok(!maskUrl('postgres://app:s3 cr{et@db/app').includes('s3 cr{et'));
  });
});

describe('resolveConnection', () => {
  it('prefers --database-url over DATABASE_URL over PG* variables', () => {
    const env = { DATABASE_URL: 'postgres://b@h2/db', PGHOST: 'h3' };
    assert.equal(resolveConnection({ databaseUrl: 'postgres://a:pw@h1/db' }, env).display, 'postgres://a:***@h1/db');
    assert.equal(resolveConnection({}, env).source, 'DATABASE_URL');
    assert.equal(resolveConnection({}, { PGHOST: 'h3', PGUSER: 'postgres', PGPASSWORD: 'pw' }).display, 'postgres://postgres:***@h3:5432/postgres');
  });
  it('always sets application_name=tsm and the connect timeout', () => {
    const s = resolveConnection({ databaseUrl: 'postgres://a@h/db', connectTimeout: '3' }, {});
    assert.equal(s.pg.application_name, 'tsm');
    assert.equal(s.pg.connectionTimeoutMillis, 3000);
  });
  it('nothing configured → a usage error that mentions tsm demo', () => {
    assert.throws(() => resolveConnection({}, {}), (e: unknown) => e instanceof UsageError && /tsm demo/.test(e.message));
  });
  it('rejects malformed URLs, other schemes and bad timeouts as usage errors without echoing the password', () => {
    for (const url of ['nope', 'mysql://u:pw@h/db', 'postgres://u:pw@h:port/db']) {
      assert.throws(
        () => resolveConnection({ databaseUrl: url }, {}),
        (e: unknown) => e instanceof UsageError && !e.message.includes(':pw@'),
      );
    }
    assert.throws(() => resolveConnection({ databaseUrl: 'postgres://h/db', connectTimeout: 'abc' }, {}), UsageError);
  });
});
