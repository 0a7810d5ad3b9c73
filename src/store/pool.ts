/**
 * The pg pool tsm builds for saves (SessionStore's own, and test-write's and bench's). pg-pool's
 * `connectionTimeoutMillis` does two things: it bounds the opening of a new connection, and it
 * arms and clears a timer on EVERY checkout of an idle one (a few µs per save). Here the bound on
 * opening moves into the client (pg.Client honours `connectionTimeoutMillis` itself, and destroys
 * the socket when it fires, so no pool slot is lost to a server that never answers), and the
 * pool's own is 0: the wait for a free slot is bounded by SessionStore's connect deadline instead.
 * Public pg/pg-pool API only (pg-pool's documented `Client` option).
 */
import pg from 'pg';
import type { ClientConfig, PoolConfig } from 'pg';

/** A pg.Client class whose connect gives up after `connectTimeoutMs`. */
export function clientWithConnectTimeout(connectTimeoutMs: number): typeof pg.Client {
  return class TimedClient extends pg.Client {
    constructor(config?: string | ClientConfig) {
      const c = typeof config === 'string' ? { connectionString: config } : (config ?? {});
      // pg-pool hides the password (a non-enumerable property): copy it by name.
      super({ ...c, password: c.password, connectionTimeoutMillis: connectTimeoutMs });
    }
  };
}

/**
 * Pool settings for saves: `config` (resolved by tsm, with libpq semantics) and `extra`, the
 * connect timeout in the client rather than on every checkout. A `Client` of the caller's own in
 * `extra` keeps pg-pool's timeout as it is.
 */
export function savePoolConfig(config: ClientConfig, connectTimeoutMs: number, extra: PoolConfig = {}): PoolConfig {
  if (extra.Client) return { ...config, ...extra, connectionTimeoutMillis: connectTimeoutMs };
  return { ...config, ...extra, connectionTimeoutMillis: 0, Client: clientWithConnectTimeout(connectTimeoutMs) };
}
