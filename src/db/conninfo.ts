/**
 * libpq's connection parameters, resolved the way libpq resolves them, so that a URL or an
 * environment that works with `psql` works with tsm (node-postgres alone differs: it reads only
 * some PG* variables, no service file, and treats sslmode=require as verify-full).
 *
 * Precedence (libpq's): what the URL / conninfo string says, then the service (`service=` or
 * PGSERVICE) from pg_service.conf, then the PG* environment variables, then the defaults.
 * Pure apart from reading the service file and the password file; throws UsageError (exit 2).
 */
import { readFileSync, statSync, existsSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import { UsageError } from '../errors.js';

/** The libpq keywords tsm understands (others that libpq knows are accepted and ignored). */
const KEYWORDS = [
  'host',
  'hostaddr',
  'port',
  'dbname',
  'user',
  'password',
  'passfile',
  'connect_timeout',
  'client_encoding',
  'options',
  'application_name',
  'fallback_application_name',
  'keepalives',
  'keepalives_idle',
  'keepalives_interval',
  'keepalives_count',
  'tcp_user_timeout',
  'sslmode',
  'requiressl',
  'sslcompression',
  'sslcert',
  'sslkey',
  'sslpassword',
  'sslrootcert',
  'sslcrl',
  'sslcrldir',
  'sslsni',
  'sslnegotiation',
  'sslcertmode',
  'ssl_min_protocol_version',
  'ssl_max_protocol_version',
  'requirepeer',
  'gssencmode',
  'gsslib',
  'gssdelegation',
  'krbsrvname',
  'service',
  'servicefile',
  'target_session_attrs',
  'load_balance_hosts',
  'channel_binding',
  'require_auth',
  'replication',
  // node-postgres' own URL parameters, accepted so URLs written for it keep working.
  'ssl',
  'uselibpqcompat',
] as const;
export type Keyword = (typeof KEYWORDS)[number];
export type Conninfo = Partial<Record<Keyword, string>>;
const KNOWN = new Set<string>(KEYWORDS);

/** libpq's environment variables and the keyword each one stands for. */
const ENV_VARS: Record<string, Keyword> = {
  PGHOST: 'host',
  PGHOSTADDR: 'hostaddr',
  PGPORT: 'port',
  PGDATABASE: 'dbname',
  PGUSER: 'user',
  PGPASSWORD: 'password',
  PGPASSFILE: 'passfile',
  PGSERVICEFILE: 'servicefile',
  PGOPTIONS: 'options',
  PGSSLMODE: 'sslmode',
  PGREQUIRESSL: 'requiressl',
  PGSSLCERT: 'sslcert',
  PGSSLKEY: 'sslkey',
  PGSSLROOTCERT: 'sslrootcert',
  PGSSLCRL: 'sslcrl',
  PGSSLSNI: 'sslsni',
  PGCONNECT_TIMEOUT: 'connect_timeout',
  PGCLIENTENCODING: 'client_encoding',
  PGTARGETSESSIONATTRS: 'target_session_attrs',
  PGCHANNELBINDING: 'channel_binding',
  PGREQUIREAUTH: 'require_auth',
};

export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

/** Where libpq (Debian's build) puts sockets and looks when no host is given. */
export const DEFAULT_SOCKET_DIRS = ['/var/run/postgresql', '/run/postgresql', '/tmp'];
/** Debian's libpq SYSCONFDIR, where the system-wide pg_service.conf lives. */
const DEFAULT_SYSCONFDIR = '/etc/postgresql-common';

/** Everything needed to connect, resolved; the password is kept apart so it is never printed. */
export interface LibpqParams {
  /** A host name, an IP address, or a socket directory (starts with `/`). */
  readonly host: string;
  /** libpq's hostaddr: the address actually connected to; `host` is then used for TLS checks. */
  readonly hostaddr?: string;
  readonly port: number;
  readonly user: string;
  readonly dbname: string;
  readonly sslmode: SslMode;
  /** `system` or a file path; undefined: ~/.postgresql/root.crt when it exists. */
  readonly sslrootcert?: string;
  readonly sslcert?: string;
  readonly sslkey?: string;
  readonly sslcrl?: string;
  /** True when the file paths above were named explicitly (they must then exist). */
  readonly explicit: { readonly sslrootcert: boolean; readonly sslcert: boolean; readonly sslkey: boolean };
  /** Seconds, from the URL or PGCONNECT_TIMEOUT (libpq: below 2 means 2); undefined when unset or ≤ 0. */
  readonly connectTimeout?: number;
  readonly options?: string;
  readonly clientEncoding?: string;
  readonly keepalives: boolean;
  readonly keepalivesIdle?: number;
  /** The service used, if any (for messages). */
  readonly service?: string;
  /** Notes for error messages (e.g. a password file that was ignored, and why). */
  readonly notes: readonly string[];
  /** The home directory used for ~/.postgresql and ~/.pgpass. */
  readonly home: string;
}

export interface Resolved {
  readonly params: LibpqParams;
  /** Undefined when none was given and none was found in the password file. */
  readonly password?: string;
}

// ---------------------------------------------------------------------------------------------
// Parsing

/** `postgres://user:***@host:5432/db`: the password, if any, replaced. Never throws. */
export function maskUrl(url: string): string {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(url.trim()) && /=/.test(url)) {
    // libpq's keyword/value form: mask password='…' / password=…
    return url.replace(/(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)/gi, '$1***');
  }
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    // Query parameters may carry a password too (libpq's `password=`).
    for (const key of [...u.searchParams.keys()]) {
      if (/pass/i.test(key)) u.searchParams.set(key, '***');
    }
    return u.toString().replace('%2A%2A%2A', '***').replace(/password=%2A%2A%2A/gi, 'password=***');
  } catch {
    // Unparseable (a socket URL with an empty host, say): drop anything between ':' and '@' and
    // any password parameter.
    return url.replace(/:\/\/([^:@/]*):[^@/]*@/, '://$1:***@').replace(/([?&][^=&]*pass[^=&]*=)[^&]*/gi, '$1***');
  }
}

function decode(text: string, what: string, from: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new UsageError(`${from}: invalid percent-encoding in the ${what}`);
  }
}

function put(into: Conninfo, key: string, value: string, from: string): void {
  if (!KNOWN.has(key)) throw new UsageError(`${from}: unknown connection parameter '${key}' (libpq would refuse it too)`);
  into[key as Keyword] = value;
}

/**
 * A postgres:// or postgresql:// URI, parsed as libpq does (percent-decoding; an empty host means
 * the default socket; `?host=/var/run/postgresql` etc. override what the URI's parts say).
 */
export function parseUri(uri: string, from: string): Conninfo {
  const m = /^postgres(?:ql)?:\/\//i.exec(uri);
  if (!m) throw new UsageError(`${from} must start with postgres:// or postgresql://`);
  const invalid = (reason: string): UsageError => new UsageError(`${from} is not a valid URL: ${maskUrl(uri)} (${reason})`);
  const out: Conninfo = {};
  let rest = uri.slice(m[0].length);
  const q = rest.indexOf('?');
  const query = q >= 0 ? rest.slice(q + 1) : undefined;
  if (q >= 0) rest = rest.slice(0, q);
  // libpq looks for the credentials designator before the first '/'.
  const slash = rest.indexOf('/');
  const head = slash >= 0 ? rest.slice(0, slash) : rest;
  const path = slash >= 0 ? rest.slice(slash + 1) : undefined;
  let netloc = head;
  const at = head.lastIndexOf('@');
  if (at >= 0) {
    const cred = head.slice(0, at);
    netloc = head.slice(at + 1);
    const colon = cred.indexOf(':');
    const user = colon >= 0 ? cred.slice(0, colon) : cred;
    if (user !== '') out.user = decode(user, 'user name', from);
    if (colon >= 0) out.password = decode(cred.slice(colon + 1), 'password', from);
  }
  if (netloc !== '') {
    if (/,/.test(netloc)) {
      throw new UsageError(`${from}: several hosts are not supported; give one host`);
    }
    let host: string;
    let port: string | undefined;
    if (netloc.startsWith('[')) {
      const close = netloc.indexOf(']');
      if (close < 0) throw invalid("unterminated IPv6 address: missing ']'");
      host = netloc.slice(1, close);
      const after = netloc.slice(close + 1);
      if (after !== '' && !after.startsWith(':')) throw invalid('unexpected characters after the IPv6 address');
      if (after !== '') port = after.slice(1);
    } else {
      const colon = netloc.lastIndexOf(':');
      host = colon >= 0 ? netloc.slice(0, colon) : netloc;
      if (colon >= 0) port = netloc.slice(colon + 1);
    }
    if (host !== '') out.host = decode(host, 'host', from);
    if (port !== undefined && port !== '') {
      if (!/^\d{1,5}$/.test(port)) throw invalid('the port must be a number');
      out.port = port;
    }
  }
  if (path !== undefined && path !== '') out.dbname = decode(path, 'database name', from);
  if (query !== undefined && query !== '') {
    for (const pair of query.split('&')) {
      if (pair === '') continue;
      const eq = pair.indexOf('=');
      if (eq < 0) throw new UsageError(`${from}: URL parameter '${decode(pair, 'parameters', from)}' has no '=value'`);
      const key = decode(pair.slice(0, eq), 'parameters', from);
      const value = decode(pair.slice(eq + 1), 'parameters', from);
      // libpq (JDBC compatibility): ssl=true means sslmode=require.
      if (key === 'ssl') {
        if (value === 'true' || value === '1') out.sslmode ??= 'require';
        else if (value === 'false' || value === '0') out.sslmode ??= 'disable';
        continue;
      }
      put(out, key, value, from);
    }
  }
  return out;
}

/** libpq's `key=value key2='quoted value'` form (backslash escapes, single quotes). */
export function parseKeywordValue(text: string, from: string): Conninfo {
  const out: Conninfo = {};
  let i = 0;
  const n = text.length;
  const ws = (c: string | undefined): boolean => c !== undefined && /\s/.test(c);
  while (i < n) {
    while (ws(text[i])) i++;
    if (i >= n) break;
    let key = '';
    while (i < n && text[i] !== '=' && !ws(text[i])) key += text[i++];
    while (ws(text[i])) i++;
    if (text[i] !== '=') throw new UsageError(`${from}: missing '=' after '${key}' in the connection string`);
    i++;
    while (ws(text[i])) i++;
    let value = '';
    if (text[i] === "'") {
      i++;
      for (;;) {
        if (i >= n) throw new UsageError(`${from}: unterminated quoted string in the connection string`);
        const c = text[i++];
        if (c === '\\' && i < n) value += text[i++];
        else if (c === "'") break;
        else value += c;
      }
    } else {
      while (i < n && !ws(text[i])) {
        const c = text[i++];
        if (c === '\\' && i < n) value += text[i++];
        else value += c;
      }
    }
    put(out, key, value, from);
  }
  return out;
}

/** A URL or a keyword/value string; `from` names its origin in messages. */
export function parseConnectionString(text: string, from: string): Conninfo {
  const s = text.trim();
  if (s === '') throw new UsageError(`${from} is empty`);
  if (/^postgres(?:ql)?:\/\//i.test(s)) return parseUri(s, from);
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(s);
  if (scheme) throw new UsageError(`${from} must start with postgres:// or postgresql://, got ${scheme[1]}://…`);
  if (/^\s*[a-z_]+\s*=/i.test(s)) return parseKeywordValue(s, from);
  throw new UsageError(`${from} is not a valid URL (expected postgres://user:password@host:5432/database)`);
}

/** The libpq keywords the PG* variables of `env` set. */
export function conninfoFromEnv(env: NodeJS.ProcessEnv): Conninfo {
  const out: Conninfo = {};
  for (const [name, key] of Object.entries(ENV_VARS)) {
    const v = env[name];
    if (v !== undefined && v !== '') out[key] = v;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// pg_service.conf

/** The section `service` of a pg_service.conf file; undefined when the file or section is absent. */
export function readServiceFile(file: string, service: string): Conninfo | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  let inside = false;
  let found = false;
  const out: Conninfo = {};
  text.split(/\r?\n/).forEach((raw, idx) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    if (line.startsWith('[')) {
      if (!line.endsWith(']')) throw new UsageError(`syntax error in service file "${file}", line ${idx + 1}`);
      inside = line.slice(1, -1) === service;
      if (inside) found = true;
      return;
    }
    if (!inside) return;
    const eq = line.indexOf('=');
    if (eq < 0) throw new UsageError(`syntax error in service file "${file}", line ${idx + 1}`);
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    if (key === 'service') throw new UsageError(`nested service specifications are not supported in service file "${file}", line ${idx + 1}`);
    if (!KNOWN.has(key)) throw new UsageError(`syntax error in service file "${file}", line ${idx + 1}: unknown parameter '${key}'`);
    if (!(key in out)) out[key as Keyword] = value;
  });
  return found ? out : undefined;
}

function serviceParams(service: string, servicefile: string | undefined, env: NodeJS.ProcessEnv, home: string): Conninfo {
  const userFile = servicefile ?? join(home, '.pg_service.conf');
  const fromUser = readServiceFile(userFile, service);
  if (fromUser) return fromUser;
  const sysFile = join(env.PGSYSCONFDIR ?? DEFAULT_SYSCONFDIR, 'pg_service.conf');
  const fromSys = readServiceFile(sysFile, service);
  if (fromSys) return fromSys;
  const where = servicefile !== undefined ? `${servicefile} or ${sysFile}` : `${userFile} or ${sysFile}`;
  throw new UsageError(`service "${service}" not found (looked in ${where}; set PGSERVICEFILE or PGSYSCONFDIR)`);
}

// ---------------------------------------------------------------------------------------------
// The password file

function pgpassFields(line: string): string[] {
  const fields: string[] = [];
  let cur = '';
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === '\\' && i + 1 < line.length) cur += line[++i];
    else if (c === ':' && fields.length < 4) {
      fields.push(cur);
      cur = '';
    } else cur += c;
  }
  fields.push(cur);
  return fields;
}

/**
 * The password for (host, port, dbname, user) from a .pgpass file, as libpq reads it: the first
 * matching line wins, `*` matches anything, a socket connection to the default directory matches
 * `localhost`, a file readable by group or others is ignored (noted, never printed).
 */
export function passwordFromFile(
  file: string,
  key: { host: string; port: number; dbname: string; user: string },
  notes: string[],
): string | undefined {
  let st;
  try {
    st = statSync(file);
  } catch {
    return undefined;
  }
  if (!st.isFile()) return undefined;
  if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
    notes.push(`password file ${file} was ignored: it has group or world access (chmod 0600 ${file})`);
    return undefined;
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const host = key.host.startsWith('/') && DEFAULT_SOCKET_DIRS.includes(key.host) ? 'localhost' : key.host;
  const want = [host, String(key.port), key.dbname, key.user];
  for (const raw of text.split(/\r?\n/)) {
    if (raw === '' || raw.startsWith('#')) continue;
    const f = pgpassFields(raw);
    if (f.length < 5) continue;
    if (want.every((w, i) => f[i] === '*' || f[i] === w)) return f[4];
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Resolution

/** The OS user name (libpq uses the effective user, not $USER). */
export function osUserName(env: NodeJS.ProcessEnv): string {
  try {
    return userInfo().username;
  } catch {
    const u = env.USER ?? env.LOGNAME;
    if (u) return u;
    throw new UsageError('cannot tell the OS user name: give a user in the URL or set PGUSER');
  }
}

/** libpq's default host: the socket directory when a server's socket is there, else localhost. */
export function defaultHost(port: number): string {
  for (const dir of DEFAULT_SOCKET_DIRS) {
    if (existsSync(join(dir, `.s.PGSQL.${port}`))) return dir;
  }
  return 'localhost';
}

function int(key: string, value: string, from: string, min: number, max: number): number {
  if (!/^\s*-?\d+\s*$/.test(value)) throw new UsageError(`${from}: invalid integer value "${value}" for ${key}`);
  const n = Number(value);
  if (n < min || n > max) throw new UsageError(`${from}: ${key} ${n} is out of range (${min} … ${max})`);
  return n;
}

export interface ResolveInput {
  /** What the URL / conninfo string said (already parsed). */
  explicit: Conninfo;
  env: NodeJS.ProcessEnv;
  /** Names the origin in messages (`--database-url`, `DATABASE_URL`, `the environment`). */
  from: string;
}

/** Explicit → service → environment → defaults, then the password file. */
export function resolveLibpq({ explicit, env, from }: ResolveInput): Resolved {
  const home = env.HOME || homedir();
  const fromEnv = conninfoFromEnv(env);
  const service = explicit.service ?? env.PGSERVICE;
  let fromService: Conninfo = {};
  if (service !== undefined && service !== '') {
    fromService = serviceParams(service, explicit.servicefile ?? fromEnv.servicefile, env, home);
  }
  const c: Conninfo = { ...fromEnv, ...fromService, ...explicit };
  const pick = (k: Keyword): string | undefined => {
    const v = c[k];
    return v === undefined || v === '' ? undefined : v;
  };
  const origin = (k: Keyword): string =>
    explicit[k] !== undefined ? from : fromService[k] !== undefined ? `service "${service}"` : 'the environment';

  if ((pick('host') ?? '').includes(',') || (pick('hostaddr') ?? '').includes(',') || (pick('port') ?? '').includes(',')) {
    throw new UsageError(`${origin('host')}: several hosts are not supported; give one host`);
  }
  const tsa = pick('target_session_attrs');
  if (tsa !== undefined && tsa !== 'any') {
    throw new UsageError(`${origin('target_session_attrs')}: target_session_attrs=${tsa} is not supported (tsm checks whether the server is writable itself)`);
  }
  const cb = pick('channel_binding');
  if (cb === 'require') throw new UsageError(`${origin('channel_binding')}: channel_binding=require is not supported`);
  if (pick('require_auth') !== undefined) throw new UsageError(`${origin('require_auth')}: require_auth is not supported`);
  if (pick('replication') !== undefined) throw new UsageError(`${origin('replication')}: replication connections are not supported`);

  const portText = pick('port');
  const port = portText === undefined ? 5432 : int('port', portText, origin('port'), 1, 65535);
  const user = pick('user') ?? osUserName(env);
  const dbname = pick('dbname') ?? user;
  const hostaddr = pick('hostaddr');
  const host = pick('host') ?? hostaddr ?? defaultHost(port);

  let sslrootcert = pick('sslrootcert');
  let modeText = pick('sslmode');
  if (modeText === undefined && pick('requiressl') === '1') modeText = 'require';
  // node-postgres' name for "encrypt, verify nothing".
  const noVerify = modeText === 'no-verify';
  if (noVerify) modeText = 'require';
  if (modeText === undefined) modeText = sslrootcert === 'system' ? 'verify-full' : 'prefer';
  if (!(SSL_MODES as readonly string[]).includes(modeText)) {
    throw new UsageError(`${origin('sslmode')}: invalid sslmode "${modeText}" (expected one of ${SSL_MODES.join(', ')})`);
  }
  const sslmode = modeText as SslMode;
  if (sslrootcert === 'system' && sslmode !== 'verify-full') {
    throw new UsageError(`${origin('sslmode')}: sslmode=${sslmode} may not be used with sslrootcert=system (use verify-full)`);
  }
  if (noVerify) sslrootcert = undefined;

  let connectTimeout: number | undefined;
  const ct = pick('connect_timeout');
  if (ct !== undefined) {
    const n = int('connect_timeout', ct, origin('connect_timeout'), -2147483648, 2147483647);
    connectTimeout = n <= 0 ? undefined : Math.max(2, n);
  }
  const keepalives = pick('keepalives') !== '0';
  const idle = pick('keepalives_idle');

  const notes: string[] = [];
  const params: LibpqParams = {
    host,
    ...(hostaddr !== undefined && hostaddr !== host ? { hostaddr } : {}),
    port,
    user,
    dbname,
    sslmode,
    ...(sslrootcert !== undefined ? { sslrootcert } : {}),
    ...(pick('sslcert') !== undefined ? { sslcert: pick('sslcert') } : {}),
    ...(pick('sslkey') !== undefined ? { sslkey: pick('sslkey') } : {}),
    ...(pick('sslcrl') !== undefined ? { sslcrl: pick('sslcrl') } : {}),
    explicit: {
      sslrootcert: sslrootcert !== undefined,
      sslcert: pick('sslcert') !== undefined,
      sslkey: pick('sslkey') !== undefined,
    },
    ...(connectTimeout !== undefined ? { connectTimeout } : {}),
    ...(pick('options') !== undefined ? { options: pick('options') } : {}),
    ...(pick('client_encoding') !== undefined ? { clientEncoding: pick('client_encoding') } : {}),
    keepalives,
    ...(idle !== undefined ? { keepalivesIdle: int('keepalives_idle', idle, origin('keepalives_idle'), 0, 86400) } : {}),
    ...(service ? { service } : {}),
    notes,
    home,
  };

  // libpq takes the password as given (even empty); otherwise it looks in the password file.
  let password = c.password;
  if (password === undefined || password === '') {
    const file = pick('passfile') ?? join(home, '.pgpass');
    const fromFile = passwordFromFile(file, { host: hostaddr !== undefined && pick('host') === undefined ? hostaddr : host, port, dbname, user }, notes);
    if (fromFile !== undefined) password = fromFile;
  }
  return { params, ...(password !== undefined && password !== '' ? { password } : {}) };
}

/** A printable URL for resolved parameters (never the password: `***` when there is one). */
export function displayUrl(params: LibpqParams, hasPassword: boolean): string {
  const user = encodeURIComponent(params.user) + (hasPassword ? ':***' : '');
  const db = encodeURIComponent(params.dbname);
  const query: string[] = [];
  let hostPart: string;
  if (params.host.startsWith('/')) {
    hostPart = '';
    query.push(`host=${params.host}`);
    if (params.port !== 5432) query.push(`port=${params.port}`);
  } else {
    const h = params.host.includes(':') ? `[${params.host}]` : params.host;
    hostPart = `${h}:${params.port}`;
  }
  if (params.hostaddr) query.push(`hostaddr=${params.hostaddr}`);
  if (params.sslmode !== 'prefer') query.push(`sslmode=${params.sslmode}`);
  return `postgres://${user}@${hostPart}/${db}${query.length ? '?' + query.join('&') : ''}`;
}
