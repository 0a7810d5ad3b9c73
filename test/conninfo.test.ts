/**
 * libpq's rules for URLs, keyword/value strings, the service file, the password file and the
 * PG* environment (pure functions and files in a temp dir: no database).
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { resolveConnection } from '../src/config.js';
import { parseConnectionString, passwordFromFile, resolveLibpq } from '../src/db/conninfo.js';
import { resolvePg } from '../src/db/resolve.js';
import { ConnectError, UsageError } from '../src/errors.js';

const home = mkdtempSync(join(tmpdir(), 'tsm-conninfo-'));
after(() => rmSync(home, { recursive: true, force: true }));
const file = (name: string, text: string, mode = 0o600): string => {
  const p = join(home, name);
  writeFileSync(p, text);
  chmodSync(p, mode);
  return p;
};
/** An environment with nothing but HOME (so the machine's ~/.pgpass etc. never leak in). */
const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({ HOME: home, PGSYSCONFDIR: join(home, 'nosys'), ...extra });
const resolve = (url: string | undefined, e: NodeJS.ProcessEnv = env()) => resolveLibpq({ explicit: url ? parseConnectionString(url, 'url') : {}, env: e, from: 'url' });

describe('URL parsing (libpq rules)', () => {
  it('reads user, password, host, port and database, percent-decoded', () => {
    const c = parseConnectionString('postgresql://app%40corp:p%3Ass@db.example.com:6432/my%20db?sslmode=verify-full', 'url');
    assert.deepEqual(c, { user: 'app@corp', password: 'p:ss', host: 'db.example.com', port: '6432', dbname: 'my db', sslmode: 'verify-full' });
  });
  it('accepts socket URLs: an empty host with ?host=/dir, or a percent-encoded directory as the host', () => {
    assert.deepEqual(parseConnectionString('postgres://postgres@/postgres?host=/var/run/postgresql', 'url'), {
      user: 'postgres',
      dbname: 'postgres',
      host: '/var/run/postgresql',
    });
    assert.equal(parseConnectionString('postgres://%2Fvar%2Frun%2Fpostgresql/db', 'url').host, '/var/run/postgresql');
    assert.deepEqual(parseConnectionString('postgresql:///db', 'url'), { dbname: 'db' });
    const r = resolve('postgres://postgres@/postgres?host=/tmp/sockets&port=5433');
    assert.equal(r.params.host, '/tmp/sockets');
    assert.equal(r.params.port, 5433);
  });
  it('reads IPv6 hosts in brackets', () => {
    assert.deepEqual(parseConnectionString('postgres://[::1]:5433/db', 'url'), { host: '::1', port: '5433', dbname: 'db' });
  });
  it('reads libpq keyword/value strings with quoting', () => {
    assert.deepEqual(parseConnectionString("host=db port=5433 dbname='my db' password='it\\'s' sslmode = require", 'url'), {
      host: 'db',
      port: '5433',
      dbname: 'my db',
      password: "it's",
      sslmode: 'require',
    });
  });
  it('maps ssl=true to sslmode=require (libpq) and accepts node-postgres’ uselibpqcompat', () => {
    assert.equal(resolve('postgres://u@h/db?ssl=true&uselibpqcompat=true').params.sslmode, 'require');
  });
  it('refuses what libpq refuses, in one line, without echoing the password', () => {
    for (const bad of [
      'postgres://u:secret@h/db?foo=1',
      'postgres://u:secret@h:port/db',
      'postgres://u:secret@h/db?sslmode=sometimes',
      'postgres://u:secret@h1,h2/db',
      'postgres://u:secret@h/db?target_session_attrs=read-write',
      'postgres://u:secret@h/db?connect_timeout=soon',
      'host=h password=secret nonsense',
    ]) {
      assert.throws(
        () => resolve(bad),
        (e: unknown) => e instanceof UsageError && !e.message.includes('secret') && !e.message.includes('\n'),
        bad,
      );
    }
  });
});

describe('defaults and the environment', () => {
  it('user defaults to the OS user name (not $USER), database to the user, sslmode to prefer', () => {
    const r = resolve('postgres://h/', env({ USER: 'somebody-else' }));
    assert.equal(r.params.user, userInfo().username);
    assert.equal(r.params.dbname, userInfo().username);
    assert.equal(r.params.sslmode, 'prefer');
    assert.equal(r.params.port, 5432);
  });
  it('the URL wins over PG* variables, which fill what the URL leaves out', () => {
    const r = resolve('postgres://u@h/db', env({ PGHOST: 'other', PGPORT: '6000', PGPASSWORD: 'envpw', PGSSLMODE: 'require', PGUSER: 'x' }));
    assert.equal(r.params.host, 'h');
    assert.equal(r.params.user, 'u');
    assert.equal(r.params.port, 6000);
    assert.equal(r.params.sslmode, 'require');
    assert.equal(r.password, 'envpw');
  });
  it('connect_timeout: --connect-timeout, then the URL, then PGCONNECT_TIMEOUT, then 10 s; libpq’s minimum of 2 s', () => {
    const e = env({ PGCONNECT_TIMEOUT: '7' });
    assert.equal(resolvePg('postgres://h/db?connect_timeout=3', { env: e, connectTimeout: 1 }).connectTimeout, 1);
    assert.equal(resolvePg('postgres://h/db?connect_timeout=3', { env: e }).connectTimeout, 3);
    assert.equal(resolvePg('postgres://h/db', { env: e }).connectTimeout, 7);
    assert.equal(resolvePg('postgres://h/db', { env: env() }).connectTimeout, 10);
    assert.equal(resolvePg('postgres://h/db?connect_timeout=1', { env: env() }).connectTimeout, 2);
    assert.equal(resolvePg('postgres://h/db?connect_timeout=0', { env: env() }).connectTimeout, 10, '0 (libpq: forever) keeps tsm’s bound');
    assert.equal(resolvePg('postgres://h/db?connect_timeout=3', { env: env() }).config.connectionTimeoutMillis, 3000);
  });
  it('resolveConnection: the CLI passes undefined when --connect-timeout was not given, so the URL speaks', () => {
    const s = resolveConnection({ databaseUrl: 'postgres://h/db?connect_timeout=4', connectTimeout: undefined }, env());
    assert.equal(s.pg.connectionTimeoutMillis, 4000);
    assert.equal(resolveConnection({ databaseUrl: 'postgres://h/db?connect_timeout=4', connectTimeout: '2' }, env()).pg.connectionTimeoutMillis, 2000);
  });
  it('a config node-postgres cannot second-guess: explicit fields, ssl off (tsm negotiates), a password function', () => {
    const c = resolvePg('postgres://u:pw@h:5433/db?sslmode=require', { env: env() }).config;
    assert.equal(c.host, 'h');
    assert.equal(c.port, 5433);
    assert.equal(c.user, 'u');
    assert.equal(c.database, 'db');
    assert.equal(c.ssl, false);
    assert.equal(c.application_name, 'tsm');
    assert.equal(typeof c.stream, 'function');
    assert.equal(typeof c.password, 'function');
    assert.equal((c.password as () => string)(), 'pw');
    assert.ok(!JSON.stringify(c).includes('pw'), 'the password is not in the serialisable config');
  });
});

describe('pg_service.conf', () => {
  const services = file('services.conf', '# comment\n[other]\nhost=wrong\n\n[tsmtest]\nhost=svc.example\nport=6543\ndbname=svcdb\nuser=svcuser\nsslmode=require\n');
  it('PGSERVICE with PGSERVICEFILE supplies host, port, database, user, sslmode', () => {
    const r = resolve(undefined, env({ PGSERVICE: 'tsmtest', PGSERVICEFILE: services }));
    assert.deepEqual([r.params.host, r.params.port, r.params.dbname, r.params.user, r.params.sslmode], ['svc.example', 6543, 'svcdb', 'svcuser', 'require']);
    assert.equal(r.params.service, 'tsmtest');
  });
  it('service= in the URL; the URL beats the service, the service beats PG* variables', () => {
    const r = resolve(`postgres://me@/?service=tsmtest`, env({ PGSERVICEFILE: services, PGHOST: 'envhost', PGPORT: '1111' }));
    assert.equal(r.params.user, 'me');
    assert.equal(r.params.host, 'svc.example');
    assert.equal(r.params.port, 6543);
  });
  it('~/.pg_service.conf, then PGSYSCONFDIR/pg_service.conf', () => {
    file('.pg_service.conf', '[mine]\nhost=home.example\n');
    assert.equal(resolve(undefined, env({ PGSERVICE: 'mine' })).params.host, 'home.example');
    const sys = mkdtempSync(join(home, 'sys-'));
    writeFileSync(join(sys, 'pg_service.conf'), '[sysonly]\nhost=sys.example\n');
    assert.equal(resolve(undefined, env({ PGSERVICE: 'sysonly', PGSYSCONFDIR: sys })).params.host, 'sys.example');
  });
  it('an unknown service is a usage error naming where tsm looked', () => {
    assert.throws(() => resolve(undefined, env({ PGSERVICE: 'nope', PGSERVICEFILE: services })), (e: unknown) => e instanceof UsageError && /service "nope" not found/.test(e.message));
  });
});

describe('the password file', () => {
  it('first matching line wins; * matches anything; \\: and \\\\ are escapes; a socket in the default directory is localhost', () => {
    const f = file('pgpass', ['# comment', 'db.example:5432:app:alice:first', '*:*:*:alice:wild\\:card', 'localhost:5432:*:bob:sock\\\\et'].join('\n'));
    const notes: string[] = [];
    assert.equal(passwordFromFile(f, { host: 'db.example', port: 5432, dbname: 'app', user: 'alice' }, notes), 'first');
    assert.equal(passwordFromFile(f, { host: 'other', port: 1, dbname: 'x', user: 'alice' }, notes), 'wild:card');
    assert.equal(passwordFromFile(f, { host: '/var/run/postgresql', port: 5432, dbname: 'x', user: 'bob' }, notes), 'sock\\et');
    assert.equal(passwordFromFile(f, { host: 'h', port: 5432, dbname: 'x', user: 'carol' }, notes), undefined);
  });
  it('PGPASSFILE, then ~/.pgpass; only when no password was given; a file others can read is ignored with a note', () => {
    const f = file('custom-pgpass', 'h:5432:db:u:frompassfile\n');
    assert.equal(resolve('postgres://u@h/db', env({ PGPASSFILE: f })).password, 'frompassfile');
    assert.equal(resolve('postgres://u:given@h/db', env({ PGPASSFILE: f })).password, 'given');
    file('.pgpass', 'h:5432:db:u:fromhome\n');
    assert.equal(resolve('postgres://u@h/db').password, 'fromhome');
    const open = file('open-pgpass', 'h:5432:db:u:leaky\n', 0o644);
    const r = resolve('postgres://u@h/db', env({ PGPASSFILE: open }));
    assert.equal(r.password, undefined);
    assert.match(r.params.notes.join(), /group or world access/);
  });
});

describe('TLS settings', () => {
  it('verify-ca/verify-full without a root certificate fail in one line (exit 3), like libpq', () => {
    assert.throws(() => resolvePg('postgres://h/db?sslmode=verify-full', { env: env() }), (e: unknown) => e instanceof ConnectError && /needs a root certificate/.test(e.message));
  });
  it('a certificate file that is named but missing is an error, not a silent downgrade', () => {
    assert.throws(() => resolvePg(`postgres://h/db?sslmode=require&sslrootcert=${join(home, 'nope.crt')}`, { env: env() }), (e: unknown) => e instanceof ConnectError && /does not exist/.test(e.message));
  });
  it('sslrootcert=system means verify-full, and weaker modes are refused', () => {
    assert.equal(resolve('postgres://h/db?sslrootcert=system').params.sslmode, 'verify-full');
    assert.throws(() => resolve('postgres://h/db?sslrootcert=system&sslmode=require'), UsageError);
  });
});

describe('display', () => {
  it('never shows a password, whatever the form', () => {
    for (const [url, e] of [
      ['postgres://u:topsecret@h/db', env()],
      ['host=h user=u password=topsecret', env()],
      ["host=h password='top secret'", env()],
      ['postgres://u@/db?host=/var/run/postgresql&password=topsecret', env()],
    ] as const) {
      const s = resolveConnection({ databaseUrl: url }, e);
      assert.ok(!s.display.includes('topsecret') && !s.display.includes('top secret'), s.display);
    }
    const fromEnv = resolveConnection({}, env({ PGHOST: 'h3', PGUSER: 'postgres', PGPASSWORD: 'topsecret' }));
    assert.equal(fromEnv.display, 'postgres://postgres:***@h3:5432/postgres');
  });
});
