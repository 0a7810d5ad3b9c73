/**
 * Real production parts for tests: PgBouncer pools, private PostgreSQL clusters (plain or
 * TLS-only with a throwaway CA), hot standbys, and a TCP "blackhole" that accepts and never answers.
 *
 * Everything here is real: Debian's /usr/sbin/pgbouncer, the newest server binaries in
 * /usr/lib/postgresql/<version>/bin, openssl. Under root, PostgreSQL and PgBouncer refuse to
 * run, so they run as the `postgres` OS user in temp directories that user owns.
 *
 * Missing parts: `requirePart('pgbouncer')` returns a skip reason outside CI (use it as a test's
 * or describe's `skip` option) and throws under CI=true, so nothing silently skips in CI:
 *
 *   const skip = requirePart('pgbouncer');
 *   describe('through PgBouncer', { skip }, () => { ... });
 *
 * Lifetime: whatever a test file starts is stopped and its files deleted at the end of that file
 * (a node:test `after` hook), also when a test fails; a last-resort `exit` handler kills what is
 * left if the process ends abruptly. Each object also has its own stop().
 *
 *   const srv = await startServer({ tls: true });          // TLS-only, hostssl lines only
 *   srv.url('postgres')                                     // postgres://postgres:pw@127.0.0.1:port/postgres
 *   await srv.stop({ mode: 'immediate' }); await srv.start();   // crash and recover
 *   const standby = await startStandby(srv);               // pg_basebackup, streaming, in recovery
 *   await standby.promote();                                // failover: now a primary
 *   const pool = await startPgBouncer({ mode: 'transaction' });  // in front of TSM_TEST_DATABASE_URL
 *   pool.url(db.name)                                       // through the pooler
 *   const hole = await startBlackhole();                    // hole.url() never answers
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import pg from 'pg';
import { serverUrl } from './db.js';
import { sleep, waitFor } from './wait.js';
import { q } from './fixtures.js';
import { freePort } from '../../src/cli/commands/demo/embedded.js';

// ---------------------------------------------------------------------------------------------
// Parts

export type Part = 'pgbouncer' | 'postgres' | 'pg_basebackup' | 'openssl' | 'promtool' | 'machine-socket';

/** The machine's server socket (Debian's default directory and port). */
export const MACHINE_SOCKET_DIR = '/var/run/postgresql';

export const inCI = (): boolean => {
  const v = (process.env.CI ?? '').toLowerCase();
  return v !== '' && v !== 'false' && v !== '0';
};

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/usr/bin', '/sbin'])) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/** The newest /usr/lib/postgresql/<v>/bin that has initdb and postgres (TSM_TEST_PG_BIN overrides). */
export function serverBinDir(): string | undefined {
  const forced = process.env.TSM_TEST_PG_BIN;
  if (forced) return existsSync(join(forced, 'postgres')) ? forced : undefined;
  let versions: string[];
  try {
    versions = readdirSync('/usr/lib/postgresql');
  } catch {
    return undefined;
  }
  const sorted = versions.filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  for (const v of sorted) {
    const bin = `/usr/lib/postgresql/${v}/bin`;
    if (existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'postgres')) && existsSync(join(bin, 'pg_ctl'))) return bin;
  }
  return undefined;
}

/** Where a part is, or undefined. */
export function findPart(part: Part): string | undefined {
  switch (part) {
    case 'pgbouncer':
      return onPath('pgbouncer');
    case 'postgres':
      return serverBinDir();
    case 'pg_basebackup': {
      const bin = serverBinDir();
      return bin && existsSync(join(bin, 'pg_basebackup')) ? join(bin, 'pg_basebackup') : undefined;
    }
    case 'openssl':
      return onPath('openssl');
    case 'promtool':
      return onPath('promtool');
    case 'machine-socket':
      return existsSync(join(MACHINE_SOCKET_DIR, '.s.PGSQL.5432')) ? join(MACHINE_SOCKET_DIR, '.s.PGSQL.5432') : undefined;
  }
}

const HOW_TO_GET: Record<Part, string> = {
  pgbouncer: 'apt-get install pgbouncer',
  postgres: 'apt-get install postgresql (server binaries in /usr/lib/postgresql/<version>/bin)',
  pg_basebackup: 'apt-get install postgresql',
  openssl: 'apt-get install openssl',
  promtool: 'apt-get install prometheus',
  'machine-socket': `a PostgreSQL server listening on ${MACHINE_SOCKET_DIR}/.s.PGSQL.5432 (pg_ctlcluster <version> main start)`,
};

/**
 * undefined when every part is there; otherwise a skip reason (outside CI) — under CI=true a
 * missing part throws, failing the test file instead of skipping it.
 */
export function requirePart(...parts: Part[]): string | undefined {
  const missing = parts.filter((p) => findPart(p) === undefined);
  if (missing.length === 0) return undefined;
  const what = missing.map((p) => `${p} (${HOW_TO_GET[p]})`).join(', ');
  if (inCI()) throw new Error(`CI=true and a required part is missing: ${what}`);
  return `missing ${what}`;
}

// ---------------------------------------------------------------------------------------------
// Running things as the postgres OS user

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

interface RunAs {
  uid?: number;
  gid?: number;
}

let cachedRunAs: RunAs | undefined;
/** As root: the postgres user's uid/gid (initdb/postgres/pgbouncer refuse root); else nothing. */
export function runAs(): RunAs {
  if (!isRoot) return {};
  if (cachedRunAs) return cachedRunAs;
  const r = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const g = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (r.status !== 0 || g.status !== 0) throw new Error('running as root and there is no `postgres` OS user to run the server as');
  cachedRunAs = { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
  return cachedRunAs;
}

/** A temp dir the postgres user owns (when root) and others can enter. */
function ownedTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  giveToRunAs(dir);
  return dir;
}

function giveToRunAs(path: string): void {
  const u = runAs();
  if (u.uid !== undefined && u.gid !== undefined) chownSync(path, u.uid, u.gid);
}

/** A child environment without the caller's libpq settings. */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^PG[A-Z_]+$/.test(k) || k === 'DATABASE_URL') continue;
    env[k] = v;
  }
  env.LANG = 'C';
  env.LC_ALL = 'C';
  return { ...env, ...extra };
}

/** Runs a command to completion (as the postgres user when root); throws with its output on failure. */
function runTool(cmd: string, args: string[], opts: { env?: Record<string, string>; cwd?: string; asPostgres?: boolean; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      ...(opts.asPostgres === false ? {} : runAs()),
      env: childEnv(opts.env),
      cwd: opts.cwd ?? tmpdir(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${cmd}: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')} failed (${code ?? signal}): ${out.trim().split('\n').slice(-5).join(' | ')}`));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Cleanup registry

interface Resource {
  /** Graceful, awaited at the end of the file. */
  stop(): Promise<void>;
  /** Synchronous last resort for process exit. */
  kill(): void;
}

const resources = new Set<Resource>();
let hooked = false;

function register(r: Resource): void {
  resources.add(r);
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const res of resources) {
      try {
        res.kill();
      } catch {
        // best effort
      }
    }
  });
}

/** Stops everything this file started (most recent first). Runs by itself at the end of the file. */
export async function stopAll(): Promise<void> {
  const all = [...resources].reverse();
  for (const r of all) {
    await r.stop().catch(() => {});
    resources.delete(r);
  }
}

// Registered when the test file imports this module (top level), so it runs after all its tests.
after(() => stopAll());

/** A free TCP port on 127.0.0.1 (the same helper the demo's embedded server uses). */
export { freePort };

/** Resolves once something accepts TCP connections on 127.0.0.1:port. */
async function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s: Socket = netConnect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function tail(file: string, lines = 8): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join(' | ');
  } catch {
    return '(no log)';
  }
}

const randomSecret = (): string => 'pw-' + Math.random().toString(36).slice(2, 12);

// ---------------------------------------------------------------------------------------------
// TLS material

export interface TlsFiles {
  /** The throwaway CA that signed the server and client certificates. */
  readonly ca: string;
  /** Another CA that signed nothing here: a wrong sslrootcert. */
  readonly otherCa: string;
  /** Server certificate for 127.0.0.1 and localhost. */
  readonly serverCert: string;
  readonly serverKey: string;
  /** Client certificate whose CN is `certUser` (mode 0600, owned by the test process's user). */
  readonly clientCert: string;
  readonly clientKey: string;
  /** The role that logs in with the client certificate (pg_hba `cert`). */
  readonly certUser: string;
}

async function makeCa(dir: string, name: string): Promise<void> {
  await runTool('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', `/CN=${name}`, '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.crt`),
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ], { asPostgres: false });
}

async function makeLeaf(dir: string, ca: string, name: string, cn: string, ext: string): Promise<void> {
  writeFileSync(join(dir, `${name}.ext`), ext);
  await runTool('openssl', [
    'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-subj', `/CN=${cn}`, '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.csr`),
  ], { asPostgres: false });
  await runTool('openssl', [
    'x509', '-req', '-in', join(dir, `${name}.csr`), '-CA', join(dir, `${ca}.crt`), '-CAkey', join(dir, `${ca}.key`),
    '-CAcreateserial', '-days', '2', '-out', join(dir, `${name}.crt`), '-extfile', join(dir, `${name}.ext`),
  ], { asPostgres: false });
}

/** A CA, a server certificate (IP:127.0.0.1, DNS:localhost), a client certificate, another CA. */
export async function makeTlsFiles(dir: string, certUser = 'tsm_cert'): Promise<TlsFiles> {
  await makeCa(dir, 'ca');
  await makeCa(dir, 'other-ca');
  await makeLeaf(dir, 'ca', 'server', 'localhost',
    'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await makeLeaf(dir, 'ca', 'client', certUser,
    'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n');
  for (const f of readdirSync(dir)) chmodSync(join(dir, f), f.endsWith('.key') ? 0o600 : 0o644);
  // The server's key must belong to the server's OS user (PostgreSQL refuses it otherwise).
  giveToRunAs(join(dir, 'server.key'));
  return {
    ca: join(dir, 'ca.crt'),
    otherCa: join(dir, 'other-ca.crt'),
    serverCert: join(dir, 'server.crt'),
    serverKey: join(dir, 'server.key'),
    clientCert: join(dir, 'client.crt'),
    clientKey: join(dir, 'client.key'),
    certUser,
  };
}

// ---------------------------------------------------------------------------------------------
// Private PostgreSQL servers

export interface ServerOptions {
  /** TLS-only: a throwaway CA, `ssl = on`, and only `hostssl` lines in pg_hba.conf. */
  tls?: boolean;
  /** Extra settings (`-c name=value`), e.g. { max_connections: '20' }. */
  settings?: Record<string, string>;
  /** pg_hba.conf lines placed before the defaults. */
  hba?: string[];
}

export interface PrivateServer {
  readonly host: '127.0.0.1';
  readonly port: number;
  /** Superuser `postgres` and its password (password authentication, scram-sha-256). */
  readonly user: 'postgres';
  readonly password: string;
  readonly dir: string;
  readonly dataDir: string;
  /** The server's own socket directory (not the machine's). */
  readonly socketDir: string;
  readonly binDir: string;
  readonly version: number;
  /** Set for a TLS-only server. */
  readonly tls?: TlsFiles;
  /** postgres://user:password@127.0.0.1:port/database (no sslmode: add what the test needs). */
  url(database?: string, auth?: { user: string; password?: string }): string;
  /** A pg.ClientConfig the harness itself uses (TLS without verification on a TLS server). */
  adminConfig(database?: string): pg.ClientConfig;
  /** Runs SQL as the superuser. */
  sql(text: string, values?: unknown[], database?: string): Promise<pg.QueryResult>;
  /** The postmaster's pid while running. */
  readonly pid: number | undefined;
  readonly running: boolean;
  /** `fast` (SIGINT, pg_ctl -m fast) or `immediate` (SIGQUIT, pg_ctl -m immediate: a crash). */
  stop(opts?: { mode?: 'fast' | 'immediate' }): Promise<void>;
  /** Starts it again (same port and data); resolves when it accepts connections. */
  start(): Promise<void>;
  /** Stops it and deletes its files. */
  remove(): Promise<void>;
  /** The last lines of the server log. */
  log(lines?: number): string;
}

function serverVersion(binDir: string): number {
  const r = spawnSync(join(binDir, 'postgres'), ['--version'], { encoding: 'utf8' });
  const m = /(\d+)(?:\.\d+)?/.exec(r.stdout ?? '');
  return m ? Number(m[1]) : 0;
}

class Cluster implements PrivateServer {
  readonly host = '127.0.0.1' as const;
  readonly user = 'postgres' as const;
  private child: ChildProcess | undefined;
  private exited: Promise<void> | undefined;
  readonly socketDir: string;
  readonly dataDir: string;

  constructor(
    readonly dir: string,
    readonly binDir: string,
    readonly version: number,
    public port: number,
    readonly password: string,
    private readonly args: string[],
    readonly tls?: TlsFiles,
  ) {
    this.socketDir = dir;
    this.dataDir = join(dir, 'data');
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }
  get running(): boolean {
    return this.child !== undefined;
  }

  url(database = 'postgres', auth?: { user: string; password?: string }): string {
    const user = encodeURIComponent(auth?.user ?? this.user);
    const pw = auth ? auth.password : this.password;
    return `postgres://${user}${pw ? ':' + encodeURIComponent(pw) : ''}@127.0.0.1:${this.port}/${encodeURIComponent(database)}`;
  }

  adminConfig(database = 'postgres'): pg.ClientConfig {
    return {
      host: '127.0.0.1',
      port: this.port,
      user: this.user,
      password: this.password,
      database,
      application_name: 'tsm-test',
      ssl: this.tls ? { rejectUnauthorized: false } : false,
      connectionTimeoutMillis: 5000,
    };
  }

  async sql(text: string, values?: unknown[], database = 'postgres'): Promise<pg.QueryResult> {
    const c = new pg.Client(this.adminConfig(database));
    c.on('error', () => {});
    await c.connect();
    try {
      return await c.query(text, values);
    } finally {
      await c.end().catch(() => {});
    }
  }

  log(lines = 8): string {
    return tail(join(this.dir, 'server.log'), lines);
  }

  async start(): Promise<void> {
    if (this.child) return;
    const logFd = openSync(join(this.dir, 'server.log'), 'a');
    giveToRunAs(join(this.dir, 'server.log'));
    const child = spawn(join(this.binDir, 'postgres'), ['-D', this.dataDir, '-p', String(this.port), ...this.args], {
      ...runAs(),
      env: childEnv(),
      cwd: this.dir,
      stdio: ['ignore', logFd, logFd],
    });
    closeSync(logFd);
    this.child = child;
    let exitedEarly = false;
    this.exited = new Promise((resolve) => {
      child.once('exit', () => {
        exitedEarly = true;
        if (this.child === child) this.child = undefined;
        resolve();
      });
      child.once('error', () => {
        exitedEarly = true;
        if (this.child === child) this.child = undefined;
        resolve();
      });
    });
    await waitFor(
      `PostgreSQL on 127.0.0.1:${this.port} accepting connections`,
      async () => {
        if (exitedEarly) throw new Error(`PostgreSQL exited during start: ${this.log()}`);
        try {
          await this.sql('SELECT 1');
          return true;
        } catch {
          return false;
        }
      },
      { timeoutMs: 60_000, everyMs: 100 },
    );
  }

  async stop({ mode = 'fast' }: { mode?: 'fast' | 'immediate' } = {}): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill(mode === 'immediate' ? 'SIGQUIT' : 'SIGINT');
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    await this.exited;
    clearTimeout(timer);
  }

  kill(): void {
    this.child?.kill('SIGQUIT');
    rmSync(this.dir, { recursive: true, force: true });
  }

  async remove(): Promise<void> {
    await this.stop({ mode: 'fast' });
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function baseArgs(dir: string, settings: Record<string, string>): string[] {
  const all: Record<string, string> = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: dir,
    fsync: 'off',
    full_page_writes: 'off',
    max_connections: '60',
    shared_buffers: '16MB',
    wal_level: 'replica',
    max_wal_senders: '5',
    hot_standby: 'on',
    logging_collector: 'off',
    ...settings,
  };
  return Object.entries(all).flatMap(([k, v]) => ['-c', `${k}=${v}`]);
}

/** Starts, retrying with a new port when the one picked was taken meanwhile. */
async function startOnFreePort(c: Cluster): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await c.start();
      return;
    } catch (err) {
      if (attempt >= 3 || !/could not (bind|create listen)|already in use/i.test(c.log(20))) throw err;
      c.port = await freePort();
    }
  }
}

/**
 * A private PostgreSQL cluster (initdb in a temp dir, random port on 127.0.0.1, superuser
 * `postgres` with a random password, scram-sha-256), from the newest server binaries installed.
 */
export async function startServer(opts: ServerOptions = {}): Promise<PrivateServer> {
  const binDir = serverBinDir();
  if (!binDir) throw new Error(`no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (${HOW_TO_GET.postgres})`);
  const dir = ownedTempDir('tsm-srv-');
  const password = randomSecret();
  let tls: TlsFiles | undefined;
  const cleanupOnFailure = (): void => rmSync(dir, { recursive: true, force: true });
  try {
    writeFileSync(join(dir, 'pwfile'), password + '\n', { mode: 0o600 });
    giveToRunAs(join(dir, 'pwfile'));
    await runTool(join(binDir, 'initdb'), [
      '-D', join(dir, 'data'), '-U', 'postgres', `--pwfile=${join(dir, 'pwfile')}`, '-A', 'scram-sha-256',
      '-E', 'UTF8', '--locale=C', '--no-sync',
    ]);
    rmSync(join(dir, 'pwfile'));
    const settings: Record<string, string> = { ...(opts.settings ?? {}) };
    let hba: string[];
    if (opts.tls) {
      const tlsDir = join(dir, 'tls');
      mkdirOwned(tlsDir);
      tls = await makeTlsFiles(tlsDir);
      Object.assign(settings, { ssl: 'on', ssl_cert_file: tls.serverCert, ssl_key_file: tls.serverKey, ssl_ca_file: tls.ca });
      hba = [
        `hostssl all ${tls.certUser} 127.0.0.1/32 cert`,
        'hostssl all all 127.0.0.1/32 scram-sha-256',
        'hostssl replication all 127.0.0.1/32 scram-sha-256',
      ];
    } else {
      hba = ['host all all 127.0.0.1/32 scram-sha-256', 'host replication all 127.0.0.1/32 scram-sha-256'];
    }
    writeFileSync(join(dir, 'data', 'pg_hba.conf'), ['local all all scram-sha-256', ...(opts.hba ?? []), ...hba].join('\n') + '\n');
    giveToRunAs(join(dir, 'data', 'pg_hba.conf'));
    const c = new Cluster(dir, binDir, serverVersion(binDir), await freePort(), password, baseArgs(dir, settings), tls);
    register({ stop: () => c.remove(), kill: () => c.kill() });
    await startOnFreePort(c);
    if (tls) await c.sql(`CREATE ROLE ${tls.certUser} LOGIN SUPERUSER`);
    return c;
  } catch (err) {
    cleanupOnFailure();
    throw err;
  }
}

function mkdirOwned(path: string): void {
  spawnSync('mkdir', ['-p', path]);
  chmodSync(path, 0o755);
  giveToRunAs(path);
}

/**
 * A hot standby of `primary` (a server from startServer): pg_basebackup -X stream -R, its own
 * port, streaming replication; resolves when it reports pg_is_in_recovery().
 */
export interface Standby extends PrivateServer {
  readonly primary: PrivateServer;
  /** Makes it a primary (SELECT pg_promote()); resolves when it has left recovery. */
  promote(): Promise<void>;
}

export async function startStandby(primary: PrivateServer): Promise<Standby> {
  const dir = ownedTempDir('tsm-standby-');
  try {
    const ssl = primary.tls ? ' sslmode=require' : '';
    await runTool(join(primary.binDir, 'pg_basebackup'), [
      '-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', '-D', join(dir, 'data'),
      '-X', 'stream', '-R', '--checkpoint=fast', '--no-sync',
    ], { env: { PGPASSWORD: primary.password, ...(primary.tls ? { PGSSLMODE: 'require' } : {}) } });
    const conninfo = `host=127.0.0.1 port=${primary.port} user=postgres password=${primary.password} application_name=tsm_standby${ssl}`;
    const settings: Record<string, string> = { primary_conninfo: conninfo };
    if (primary.tls) {
      Object.assign(settings, { ssl: 'on', ssl_cert_file: primary.tls.serverCert, ssl_key_file: primary.tls.serverKey, ssl_ca_file: primary.tls.ca });
    }
    const c = new Cluster(dir, primary.binDir, primary.version, await freePort(), primary.password, baseArgs(dir, settings), primary.tls);
    register({ stop: () => c.remove(), kill: () => c.kill() });
    await startOnFreePort(c);
    await waitFor('the standby reports pg_is_in_recovery()', async () => (await c.sql('SELECT pg_is_in_recovery() AS r')).rows[0].r === true, {
      timeoutMs: 30_000,
      everyMs: 100,
    });
    const promote = async (): Promise<void> => {
      await c.sql('SELECT pg_promote(true, 60)');
      await waitFor('the promoted standby leaves recovery', async () => (await c.sql('SELECT pg_is_in_recovery() AS r')).rows[0].r === false, {
        timeoutMs: 60_000,
        everyMs: 100,
      });
    };
    return Object.assign(c, { primary, promote });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// PgBouncer

export interface BouncerUser {
  readonly name: string;
  readonly password: string;
}

export interface BouncerOptions {
  mode: 'transaction' | 'session';
  /** The server behind it (default TSM_TEST_DATABASE_URL); its user becomes the admin user. */
  serverUrl?: string;
  /** More login roles (they must exist on the server); the admin is always there. */
  users?: { name: string; password?: string }[];
  /** Extra [pgbouncer] settings, e.g. { default_pool_size: '2' }. */
  settings?: Record<string, string>;
}

export interface PgBouncer {
  readonly mode: 'transaction' | 'session';
  readonly port: number;
  readonly dir: string;
  /** PgBouncer's pid while it runs (e.g. to kill it in a test). */
  readonly pid: number | undefined;
  /** The server user (from the server URL), also PgBouncer's admin user. */
  readonly admin: BouncerUser;
  /** postgres://user:password@127.0.0.1:<bouncer port>/<database>, as the admin unless a user is given. */
  url(database: string, user?: { name: string; password?: string }): string;
  /** Adds a login to the auth file and reloads (SIGHUP). */
  addUser(name: string, password?: string): Promise<BouncerUser>;
  /** Runs SQL on PgBouncer's admin console (SHOW POOLS, SHOW SERVERS, …). */
  admin_sql(text: string): Promise<pg.QueryResult>;
  stop(): Promise<void>;
  log(lines?: number): string;
}

/**
 * A PgBouncer in front of the test server (TSM_TEST_DATABASE_URL): random port on 127.0.0.1,
 * temp dir, auth file (scram-sha-256 towards clients, the real password towards the server),
 * `* = host port` so every database goes through, and
 * `ignore_startup_parameters = extra_float_digits,application_name` (issue 10).
 */
export async function startPgBouncer(opts: BouncerOptions): Promise<PgBouncer> {
  const exe = findPart('pgbouncer');
  if (!exe) throw new Error(`pgbouncer not found (${HOW_TO_GET.pgbouncer})`);
  const target = new URL(opts.serverUrl ?? serverUrl());
  const admin: BouncerUser = { name: decodeURIComponent(target.username || 'postgres'), password: decodeURIComponent(target.password) || randomSecret() };
  const users = new Map<string, BouncerUser>([[admin.name, admin]]);
  for (const u of opts.users ?? []) users.set(u.name, { name: u.name, password: u.password ?? randomSecret() });
  const dir = ownedTempDir('tsm-bouncer-');
  const authFile = join(dir, 'userlist.txt');
  const writeAuth = (): void => {
    writeFileSync(authFile, [...users.values()].map((u) => `${q(u.name)} ${q(u.password)}`).join('\n') + '\n', { mode: 0o600 });
    giveToRunAs(authFile);
  };
  writeAuth();
  const serverHost = target.hostname === 'localhost' ? '127.0.0.1' : target.hostname;
  const serverPort = target.port || '5432';
  let port = await freePort();
  const ini = (): string =>
    [
      '[databases]',
      `* = host=${serverHost} port=${serverPort}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = scram-sha-256',
      `auth_file = ${authFile}`,
      `admin_users = ${admin.name}`,
      `pool_mode = ${opts.mode}`,
      'max_client_conn = 500',
      'default_pool_size = 20',
      'server_login_retry = 1',
      'ignore_startup_parameters = extra_float_digits,application_name',
      `logfile = ${join(dir, 'pgbouncer.log')}`,
      `pidfile = ${join(dir, 'pgbouncer.pid')}`,
      ...Object.entries(opts.settings ?? {}).map(([k, v]) => `${k} = ${v}`),
    ].join('\n') + '\n';

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const launch = async (): Promise<void> => {
    writeFileSync(join(dir, 'pgbouncer.ini'), ini());
    giveToRunAs(join(dir, 'pgbouncer.ini'));
    const c = spawn(exe, [join(dir, 'pgbouncer.ini')], { ...runAs(), env: childEnv(), cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    let gone = false;
    let stderr = '';
    c.stderr?.on('data', (d) => (stderr += d));
    exited = new Promise((resolve) => {
      c.once('exit', () => {
        gone = true;
        resolve();
      });
      c.once('error', (err) => {
        stderr += err.message;
        gone = true;
        resolve();
      });
    });
    child = c;
    await waitFor(`PgBouncer listening on 127.0.0.1:${port}`, async () => {
      if (gone) throw new Error(`pgbouncer exited: ${stderr.trim() || tail(join(dir, 'pgbouncer.log'))}`);
      return tcpOpen(port);
    }, { timeoutMs: 15_000, everyMs: 50 });
  };
  const stop = async (): Promise<void> => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGINT');
      const c = child;
      const timer = setTimeout(() => c.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  register({ stop, kill: () => {
    child?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  } });
  for (let attempt = 1; ; attempt++) {
    try {
      await launch();
      break;
    } catch (err) {
      if (attempt >= 3 || !/address already in use|bind/i.test(String(err))) {
        await stop();
        throw err;
      }
      port = await freePort();
    }
  }
  const url = (database: string, user?: { name: string; password?: string }): string => {
    const u = user ? users.get(user.name) ?? { name: user.name, password: user.password ?? '' } : admin;
    return `postgres://${encodeURIComponent(u.name)}:${encodeURIComponent(u.password)}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
  };
  const bouncer: PgBouncer = {
    mode: opts.mode,
    get port() {
      return port;
    },
    get pid() {
      return child && child.exitCode === null && child.signalCode === null ? child.pid : undefined;
    },
    dir,
    admin,
    url,
    addUser: async (name, password) => {
      const u = { name, password: password ?? randomSecret() };
      users.set(name, u);
      writeAuth();
      child?.kill('SIGHUP');
      await sleep(100);
      return u;
    },
    admin_sql: async (text) => {
      const c = new pg.Client({ connectionString: url('pgbouncer'), application_name: 'tsm-test' });
      c.on('error', () => {});
      await c.connect();
      try {
        // The admin console speaks only the simple protocol.
        return await c.query(text);
      } finally {
        await c.end().catch(() => {});
      }
    },
    stop,
    log: (lines = 8) => tail(join(dir, 'pgbouncer.log'), lines),
  };
  // Ready when a query goes through to the server.
  await waitFor('a query through PgBouncer', async () => {
    const c = new pg.Client({ connectionString: url(decodeURIComponent(target.pathname.slice(1)) || 'postgres'), connectionTimeoutMillis: 5000 });
    c.on('error', () => {});
    try {
      await c.connect();
      await c.query('SELECT 1');
      return true;
    } catch {
      return false;
    } finally {
      await c.end().catch(() => {});
    }
  }, { timeoutMs: 15_000, everyMs: 100 }).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; pgbouncer log: ${bouncer.log()}`);
  });
  return bouncer;
}

// ---------------------------------------------------------------------------------------------
// Blackhole

export interface Blackhole {
  readonly port: number;
  /** postgres://tsm@127.0.0.1:<port>/<database>: connects at TCP level, then silence. */
  url(database?: string): string;
  /** How many connections it has accepted so far. */
  readonly accepted: number;
  stop(): Promise<void>;
}

/** A TCP listener on 127.0.0.1 that accepts connections and never sends a byte (for timeouts). */
export async function startBlackhole(): Promise<Blackhole> {
  const sockets = new Set<Socket>();
  let accepted = 0;
  const server: Server = createServer((s) => {
    accepted++;
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  register({ stop, kill: () => server.close() });
  return {
    port,
    url: (database = 'postgres') => `postgres://tsm@127.0.0.1:${port}/${database}`,
    get accepted() {
      return accepted;
    },
    stop,
  };
}
