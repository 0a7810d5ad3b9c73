/**
 * TLS the way libpq does it, under node-postgres.
 *
 * node-postgres can only "always TLS, fail when the server declines" and verifies like
 * verify-full; libpq's sslmode has six meanings. So tsm gives pg `ssl: false` and a socket of its
 * own (pg's `stream` option): `LibpqSocket` connects, negotiates TLS itself (SSLRequest, then
 * `tls.connect` with the options the sslmode calls for, or plain), and then carries the protocol
 * bytes for pg. Because the whole decision lives in the socket, a `pg.ClientConfig` built here is
 * complete: `new pg.Client(config)` and `new pg.Pool(config)` both behave like libpq.
 *
 * - disable: plain. allow: plain; when the server refuses the plain startup, again with TLS.
 * - prefer (the default): TLS when the server offers it, else plain on the same connection;
 *   a failed TLS handshake is retried plain (like libpq).
 * - require: TLS, no verification — unless a root certificate is given (sslrootcert, or
 *   ~/.postgresql/root.crt exists), then like verify-ca.
 * - verify-ca: chain only. verify-full: chain and host name.
 * Unix sockets never use TLS (libpq ignores sslmode there).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { join } from 'node:path';
import { EventEmitter } from 'node:events';
import { checkServerIdentity, connect as tlsConnect, createSecureContext, type ConnectionOptions, type PeerCertificate, type TLSSocket } from 'node:tls';
import { ConnectError } from '../errors.js';
import type { LibpqParams, SslMode } from './conninfo.js';

/** What the socket needs to know; built once per configuration, shared by every connection. */
export interface TlsPlan {
  readonly sslmode: SslMode;
  /** Host name (or IP) for SNI and the host-name check. */
  readonly host: string;
  /** Where to connect instead of pg's host (libpq's hostaddr). */
  readonly hostaddr?: string;
  readonly verify: 'none' | 'ca' | 'full';
  /** The root certificate file, or 'system' (Node's bundled roots); undefined when verify is none. */
  readonly rootcert?: string;
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
  readonly crl?: Buffer;
}

/** An error of the TLS negotiation: SQLSTATE-like code 08001 (could not establish the connection). */
export class TlsError extends Error {
  readonly code = '08001';
  readonly tls = true;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TlsError';
  }
}

function readCredentialFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`;
    throw new ConnectError(`${what} file "${path}" ${reason}`);
  }
}

/**
 * Reads the certificate files the parameters name (or libpq's defaults in ~/.postgresql) and
 * decides the verification. Throws ConnectError (exit 3) with one line, as libpq fails the
 * connection, when a named file is missing or a private key is readable by others.
 */
export function buildTlsPlan(p: LibpqParams): TlsPlan {
  const base = { sslmode: p.sslmode, host: p.host, ...(p.hostaddr ? { hostaddr: p.hostaddr } : {}) };
  if (p.sslmode === 'disable' || p.host.startsWith('/')) return { ...base, verify: 'none' };
  const dir = join(p.home, '.postgresql');

  // Root certificate: named, or the default file when it exists.
  let rootcert: string | undefined;
  let ca: Buffer | undefined;
  if (p.sslrootcert === 'system') {
    rootcert = 'system';
  } else if (p.sslrootcert !== undefined) {
    rootcert = p.sslrootcert;
    ca = readCredentialFile(rootcert, 'root certificate');
  } else if (existsSync(join(dir, 'root.crt'))) {
    rootcert = join(dir, 'root.crt');
    ca = readCredentialFile(rootcert, 'root certificate');
  }
  if ((p.sslmode === 'verify-ca' || p.sslmode === 'verify-full') && rootcert === undefined) {
    throw new ConnectError(
      `sslmode=${p.sslmode} needs a root certificate: ${join(dir, 'root.crt')} does not exist (give sslrootcert=FILE or PGSSLROOTCERT, sslrootcert=system for the system's CAs, or use sslmode=require)`,
    );
  }
  const verify = p.sslmode === 'verify-full' ? 'full' : rootcert !== undefined ? 'ca' : 'none';

  // Client certificate: named, or the default pair when the certificate exists.
  let cert: Buffer | undefined;
  let key: Buffer | undefined;
  const certPath = p.sslcert ?? join(dir, 'postgresql.crt');
  if (p.explicit.sslcert || existsSync(certPath)) {
    cert = readCredentialFile(certPath, 'client certificate');
    const keyPath = p.sslkey ?? join(dir, 'postgresql.key');
    if (!existsSync(keyPath)) throw new ConnectError(`certificate present, but not private key file "${keyPath}" (give sslkey=FILE or PGSSLKEY)`);
    checkKeyPermissions(keyPath);
    key = readCredentialFile(keyPath, 'private key');
  } else if (p.explicit.sslkey) {
    readCredentialFile(p.sslkey!, 'private key');
  }
  const crl = p.sslcrl !== undefined ? readCredentialFile(p.sslcrl, 'certificate revocation list') : undefined;
  // Bad files fail here, in one line, rather than deep inside a handshake.
  try {
    createSecureContext({ ...(ca ? { ca } : {}), ...(cert ? { cert, key } : {}), ...(crl ? { crl } : {}) });
  } catch (err) {
    const files = [rootcert && rootcert !== 'system' ? `sslrootcert ${rootcert}` : '', cert ? `sslcert ${certPath}, sslkey ${p.sslkey ?? join(dir, 'postgresql.key')}` : '', p.sslcrl ? `sslcrl ${p.sslcrl}` : '']
      .filter(Boolean)
      .join(', ');
    throw new ConnectError(`cannot use the TLS files (${files}): ${firstLine((err as Error).message).replace(/^error:[0-9A-F]+:[^:]*::?/i, '')}`);
  }
  return {
    ...base,
    verify,
    ...(rootcert !== undefined ? { rootcert } : {}),
    ...(ca ? { ca } : {}),
    ...(cert ? { cert } : {}),
    ...(key ? { key } : {}),
    ...(crl ? { crl } : {}),
  };
}

/** libpq refuses a private key that group or others can read (0640 is allowed when root owns it). */
function checkKeyPermissions(path: string): void {
  if (process.platform === 'win32') return;
  const st = statSync(path);
  const uid = typeof process.getuid === 'function' ? process.getuid() : -1;
  const ok = st.uid === uid ? (st.mode & 0o077) === 0 : st.uid === 0 ? (st.mode & 0o037) === 0 : true;
  if (!ok) {
    throw new ConnectError(
      `private key file "${path}" has group or world access; it must have permissions u=rw (0600) or less if owned by the current user, or u=rw,g=r (0640) or less if owned by root`,
    );
  }
}

function tlsOptions(plan: TlsPlan, socket: Socket): ConnectionOptions {
  const opts: ConnectionOptions = {
    socket,
    rejectUnauthorized: plan.verify !== 'none',
    // libpq sends SNI for host names (sslsni=1), never for IP addresses (RFC 6066).
    ...(isIP(plan.host) === 0 && !plan.host.startsWith('/') ? { servername: plan.host } : {}),
    ...(plan.ca ? { ca: plan.ca } : {}),
    ...(plan.cert ? { cert: plan.cert } : {}),
    ...(plan.key ? { key: plan.key } : {}),
    ...(plan.crl ? { crl: plan.crl } : {}),
    checkServerIdentity:
      plan.verify === 'full' ? (_name: string, cert: PeerCertificate) => checkServerIdentity(plan.host, cert) : () => undefined,
  };
  return opts;
}

const CHAIN_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_CHAIN_TOO_LONG',
  'INVALID_CA',
]);

/** One plain line for a failed TLS handshake. */
export function describeTlsFailure(err: unknown, plan: TlsPlan): string {
  const e = err as NodeJS.ErrnoException & { cert?: PeerCertificate; reason?: string };
  const code = e?.code ?? '';
  const mode = `sslmode=${plan.sslmode}`;
  if (CHAIN_CODES.has(code)) {
    return plan.rootcert === 'system'
      ? `the server's certificate is not signed by a CA this system trusts (sslrootcert=system, ${mode})`
      : `the server's certificate is not signed by sslrootcert ${plan.rootcert ?? '(none)'} (${mode})`;
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    const names = (e.cert?.subjectaltname ?? '').replace(/(DNS|IP Address):/g, '').split(/,\s*/).filter(Boolean);
    const cn = e.cert?.subject?.CN;
    const list = names.length ? names.join(', ') : typeof cn === 'string' ? cn : 'other names';
    return `host name mismatch: the server's certificate is for ${list}, not ${plan.host} (${mode})`;
  }
  if (code === 'CERT_HAS_EXPIRED') return `the server's certificate has expired (${mode})`;
  if (code === 'CERT_NOT_YET_VALID') return `the server's certificate is not valid yet (${mode})`;
  if (code === 'CERT_REVOKED') return `the server's certificate is revoked (sslcrl, ${mode})`;
  if (/alert|certificate required|unknown ca|bad certificate/i.test(e?.message ?? '') && plan.cert === undefined) {
    return `TLS handshake refused by the server (it may require a client certificate: sslcert/sslkey): ${firstLine(e?.message)}`;
  }
  return `TLS handshake failed (${mode}): ${firstLine(e?.message ?? String(err))}`;
}

function firstLine(s: string | undefined): string {
  return (s ?? '').split('\n')[0];
}

/** The 8-byte SSLRequest message. */
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

type Target = { path: string } | { port: number; host: string };

/**
 * What pg drives like a net.Socket (connect, setNoDelay, setKeepAlive, ref, unref, write, end,
 * destroy, cork, uncork, the 'connect' / 'data' / 'end' / 'error' / 'close' events) and that
 * negotiates TLS as libpq would before it reports 'connect'. Deliberately not a stream.Duplex:
 * once connected, every chunk is handed straight through (one function call each way), so the
 * protocol costs no more client CPU than on a plain net.Socket.
 */
export class LibpqSocket extends EventEmitter {
  private inner: Socket | TLSSocket | undefined;
  private readonly sockets: Socket[] = [];
  private noDelay = false;
  private keepAlive: [boolean, number] | undefined;
  private refed = true;
  private closed = false;
  private target: Target | undefined;
  /** allow mode: the startup bytes pg sent, replayed over TLS if the plain startup is refused. */
  private replay: Buffer[] | undefined;
  /** Whether the protocol bytes travel over TLS (for tests and diagnostics). */
  encrypted = false;
  destroyed = false;

  constructor(private readonly plan: TlsPlan) {
    super();
  }

  // --- the net.Socket surface pg uses -------------------------------------------------------
  connect(portOrPath: number | string, host?: string): this {
    const target: Target =
      typeof portOrPath === 'string' && host === undefined
        ? { path: portOrPath }
        : { port: Number(portOrPath), host: this.plan.hostaddr ?? host ?? 'localhost' };
    this.target = target;
    this.establish(target).then(
      () => {
        if (!this.destroyed) this.emit('connect');
      },
      (err: unknown) => this.destroy(err instanceof Error ? err : new Error(String(err))),
    );
    return this;
  }
  get writable(): boolean {
    return !this.destroyed && this.inner !== undefined && this.inner.writable;
  }
  write(chunk: Buffer | string, cb?: (err?: Error | null) => void): boolean {
    const inner = this.inner;
    if (!inner || this.destroyed) {
      const err = new Error('write before the connection was established');
      if (cb) process.nextTick(cb, err);
      return false;
    }
    if (this.replay) this.replay.push(Buffer.from(chunk));
    return cb ? inner.write(chunk, cb) : inner.write(chunk);
  }
  end(cb?: () => void): this {
    if (this.inner && !this.destroyed) this.inner.end(cb);
    else this.destroy();
    return this;
  }
  destroy(err?: Error): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.inner?.destroy();
    for (const s of this.sockets) s.destroy();
    if (err) this.emit('error', err);
    this.emitClose();
    return this;
  }
  cork(): void {
    this.inner?.cork();
  }
  uncork(): void {
    this.inner?.uncork();
  }
  setNoDelay(noDelay = true): this {
    this.noDelay = noDelay;
    for (const s of this.sockets) s.setNoDelay(noDelay);
    return this;
  }
  setKeepAlive(enable = false, initialDelay = 0): this {
    this.keepAlive = [enable, initialDelay];
    for (const s of this.sockets) s.setKeepAlive(enable, initialDelay);
    return this;
  }
  ref(): this {
    this.refed = true;
    for (const s of this.sockets) s.ref();
    return this;
  }
  unref(): this {
    this.refed = false;
    for (const s of this.sockets) s.unref();
    return this;
  }
  /** The server's certificate when the connection is encrypted (channel binding uses it). */
  getPeerCertificate(detailed?: boolean): PeerCertificate | object {
    const t = this.inner as TLSSocket | undefined;
    return this.encrypted && t ? t.getPeerCertificate(detailed ?? false) : {};
  }

  private emitClose(): void {
    if (this.closed) return;
    this.closed = true;
    process.nextTick(() => this.emit('close', false));
  }

  // --- negotiation ----------------------------------------------------------------------------
  private openSocket(target: Target): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const s = 'path' in target ? netConnect(target.path) : netConnect(target.port, target.host);
      this.sockets.push(s);
      s.setNoDelay(this.noDelay);
      if (!this.refed) s.unref();
      const fail = (e: Error): void => reject(e);
      s.once('error', fail);
      s.once('close', () => reject(new Error('the connection was closed while connecting')));
      s.once('connect', () => {
        s.removeListener('error', fail);
        if (this.keepAlive) s.setKeepAlive(...this.keepAlive);
        resolve(s);
      });
    });
  }

  /** Sends SSLRequest and reads the one-byte answer ('S' or 'N'). */
  private askForTls(s: Socket): Promise<'S' | 'N'> {
    return new Promise((resolve, reject) => {
      const onData = (d: Buffer): void => {
        cleanup();
        const b = String.fromCharCode(d[0]);
        if (d.length > 1) s.unshift(d.subarray(1));
        if (b === 'S' || b === 'N') resolve(b);
        else reject(new TlsError(`the server answered the TLS request with '${b}' (is this a PostgreSQL server?)`));
      };
      const onError = (e: Error): void => {
        cleanup();
        reject(e);
      };
      const onClose = (): void => {
        cleanup();
        reject(new TlsError('the server closed the connection during the TLS request'));
      };
      const cleanup = (): void => {
        s.removeListener('data', onData);
        s.removeListener('error', onError);
        s.removeListener('close', onClose);
        s.pause();
      };
      s.on('data', onData);
      s.once('error', onError);
      s.once('close', onClose);
      s.write(SSL_REQUEST);
    });
  }

  private handshake(s: Socket): Promise<TLSSocket> {
    return new Promise((resolve, reject) => {
      let t: TLSSocket;
      try {
        t = tlsConnect(tlsOptions(this.plan, s));
      } catch (err) {
        s.destroy();
        reject(new TlsError(describeTlsFailure(err, this.plan), { cause: err }));
        return;
      }
      const onError = (e: Error): void => {
        t.destroy();
        s.destroy();
        reject(new TlsError(describeTlsFailure(e, this.plan), { cause: e }));
      };
      t.once('error', onError);
      t.once('secureConnect', () => {
        t.removeListener('error', onError);
        resolve(t);
      });
    });
  }

  /** TLS over a fresh connection; 'declined' when the server answered 'N' (socket left open, plain). */
  private async tryTls(target: Target): Promise<{ tls: TLSSocket } | { declined: Socket }> {
    const s = await this.openSocket(target);
    let answer: 'S' | 'N';
    try {
      answer = await this.askForTls(s);
    } catch (err) {
      s.destroy();
      throw err;
    }
    if (answer === 'N') return { declined: s };
    return { tls: await this.handshake(s) };
  }

  private attach(sock: Socket | TLSSocket, encrypted: boolean): void {
    if (this.destroyed) {
      sock.destroy();
      return;
    }
    this.inner = sock;
    this.encrypted = encrypted;
    sock.removeAllListeners('close');
    sock.removeAllListeners('error');
    sock.on('data', this.replay ? (d: Buffer) => this.onFirstData(d) : (d: Buffer) => this.emit('data', d));
    sock.on('end', () => this.emit('end'));
    sock.on('drain', () => this.emit('drain'));
    sock.on('error', (e: Error) => {
      if (this.inner === sock) this.destroy(e);
    });
    sock.on('close', () => {
      if (this.inner === sock && !this.destroyed) {
        this.destroyed = true;
        for (const s of this.sockets) s.destroy();
        this.emitClose();
      }
    });
    sock.resume();
  }

  /** allow: the server refused the plain startup (ErrorResponse first): start again with TLS. */
  private onFirstData(d: Buffer): void {
    const startup = this.replay ?? [];
    this.replay = undefined;
    const sock = this.inner!;
    sock.removeAllListeners('data');
    if (d[0] !== 0x45 /* 'E' */) {
      sock.on('data', (x: Buffer) => this.emit('data', x));
      this.emit('data', d);
      return;
    }
    this.inner = undefined;
    sock.removeAllListeners('close');
    sock.removeAllListeners('end');
    sock.destroy();
    this.retryAllowOverTls(startup).catch((err: unknown) => this.destroy(err instanceof Error ? err : new Error(String(err))));
  }

  private async retryAllowOverTls(startup: Buffer[]): Promise<void> {
    const r = await this.tryTls(this.target!);
    if ('declined' in r) {
      r.declined.destroy();
      throw new TlsError('the server refused the unencrypted connection and does not offer TLS (sslmode=allow)');
    }
    this.attach(r.tls, true);
    for (const b of startup) r.tls.write(b);
  }

  private async establish(target: Target): Promise<void> {
    const mode = this.plan.sslmode;
    if ('path' in target || mode === 'disable') {
      this.attach(await this.openSocket(target), false);
      return;
    }
    if (mode === 'allow') {
      this.replay = [];
      this.attach(await this.openSocket(target), false);
      return;
    }
    let r: { tls: TLSSocket } | { declined: Socket };
    try {
      r = await this.tryTls(target);
    } catch (err) {
      // prefer: a failed handshake is retried without TLS, as libpq does.
      if (mode === 'prefer' && err instanceof TlsError && !this.destroyed) {
        this.attach(await this.openSocket(target), false);
        return;
      }
      throw err;
    }
    if ('tls' in r) {
      this.attach(r.tls, true);
      return;
    }
    if (mode === 'prefer') {
      this.attach(r.declined, false);
      return;
    }
    r.declined.destroy();
    throw new TlsError(`the server does not accept TLS connections (sslmode=${mode}); use sslmode=prefer or disable to connect unencrypted`);
  }
}

/**
 * Asks the server whether it offers TLS (one SSLRequest, then hang up). Used to explain a refused
 * unencrypted connection; undefined when the question could not be asked in time.
 */
export function serverOffersTls(host: string, port: number, timeoutMs = 2000): Promise<boolean | undefined> {
  return new Promise((resolve) => {
    const s = netConnect(port, host);
    const done = (v: boolean | undefined): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    s.once('error', () => done(undefined));
    s.once('connect', () => s.write(SSL_REQUEST));
    s.once('data', (d: Buffer) => done(d[0] === 0x53 /* 'S' */));
  });
}
