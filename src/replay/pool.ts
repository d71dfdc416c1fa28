/**
 * The session pool of a replay run: each worker holds one LMTP session at a time and reuses it for many
 * messages. The pool opens sessions (connect, greeting, LHLO, STARTTLS, LHLO again), reconnects with
 * exponential backoff while the server is away, decides when a session is closed (QUIT after
 * --messages-per-connection, or after every message on a server that allows one transaction per session), and
 * counts how every session ended. It gives up (RunAbort) when the very first connection fails or no connection
 * succeeds for --reconnect-for.
 */
import {performance} from 'node:perf_hooks'
import type {AuthCredentials} from '../client/auth.js'
import {exitCodeForSessionError} from '../client/outcome.js'
import {openSession, type PhaseEvent, SessionOpenError} from '../client/session.js'
import {formatTarget, type Target} from '../net/target.js'
import type {Capabilities} from '../protocol/capabilities.js'
import type {ClientTimeouts, LmtpClient} from '../protocol/client.js'
import type {ExitCode} from '../util/exit-codes.js'
import type {LatencyRecorder} from './latency.js'
import {sleep} from './scheduler.js'
import {TransactionClock} from './timing.js'

/** Why a run had to stop; carries its exit code. */
export class RunAbort extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
  ) {
    super(message)
    this.name = 'RunAbort'
  }
}

/** How sessions are opened and kept. */
export interface PoolOptions {
  target: Target
  lhloName: string
  starttls?: boolean
  tlsInsecure?: boolean
  /** CA certificates (PEM) for the server's certificate. */
  tlsCa?: Buffer
  /** LMTP AUTH on every session. */
  auth?: AuthCredentials
  /** The session must offer CHUNKING (--bdat). */
  needChunking?: boolean
  timeouts?: Partial<ClientTimeouts>
  /** QUIT and reconnect after this many messages. */
  messagesPerConnection?: number
  /** Give up when no connection succeeds for this long (default 30 s). */
  reconnectForMs?: number
  /** Ends backoff waits early (Ctrl-C). */
  signal?: AbortSignal
}

/** One open session and what the pool knows about it. */
export interface PooledSession {
  client: LmtpClient
  capabilities: Capabilities
  clock: TransactionClock
  /** Transactions run on it. */
  sent: number
  /** Set when the server broke the protocol on it (the client then drops it). */
  violated: boolean
  /** Set once the pool counted how it ended (closed, lost or dropped). */
  counted: boolean
  /** Set when the client sent QUIT itself at the end of a transaction (the marker): closed by replay. */
  quit: boolean
  /** QUIT after this many transactions (--messages-per-connection, or 1 once the server wants one per session). */
  limit: () => number | undefined
}

/** True when the next transaction on `s` is its last: the pool QUITs the session after it. */
export function lastInSession(s: PooledSession): boolean {
  const limit = s.limit()
  return limit !== undefined && s.sent + 1 >= limit
}

/** How the sessions of a run ended (see ReplaySummary.connections). */
export interface ConnectionCounts {
  opened: number
  closed: number
  lost: number
  dropped: number
  failedAttempts: number
}

/** Opens, keeps and closes the sessions of one run. */
export class SessionPool {
  readonly counts: ConnectionCounts = {opened: 0, closed: 0, lost: 0, dropped: 0, failedAttempts: 0}
  /** Why this server gets one session per transaction, once learned. */
  oneTransactionPerSession: string | undefined
  /** Set once the pool gave up; every later acquire throws it. */
  abort: RunAbort | undefined
  readonly server: string
  private everConnected = false
  private downSince: number | undefined

  constructor(
    private readonly o: PoolOptions,
    private readonly latency: LatencyRecorder,
  ) {
    this.server = formatTarget(o.target)
  }

  /** True once any session was opened. */
  get connected(): boolean {
    return this.everConnected
  }

  /** A session ready for the next message: `current` when still open, else a new one (counting how it ended). */
  async ready(current: PooledSession | undefined): Promise<PooledSession> {
    if (current && !current.client.closed) return current
    if (current) this.ended(current)
    return this.connect()
  }

  /** After a message: keeps the session, or QUITs it when the policy says so (returns undefined then). */
  async after(s: PooledSession): Promise<PooledSession | undefined> {
    if (s.client.closed) return s
    const limit = s.limit()
    if (limit !== undefined && s.sent >= limit) {
      await this.close(s)
      return undefined
    }
    return s
  }

  /** QUITs a session replay is done with (not lost: replay ended it). */
  async close(s: PooledSession): Promise<void> {
    if (s.counted) return
    if (s.client.closed) return this.ended(s)
    s.counted = true
    await s.client.quit()
    this.counts.closed++
  }

  /** Ends a worker's session at the end of the run. */
  async finish(s: PooledSession | undefined): Promise<void> {
    if (s) await this.close(s)
  }

  /** From now on, one session per transaction (the server refused a second MAIL in a session). */
  learnOneTransactionPerSession(why: string): void {
    this.oneTransactionPerSession ??= why
  }

  /** Counts a session that ended without replay closing it. */
  private ended(s: PooledSession): void {
    if (s.counted) return
    s.counted = true
    if (s.quit && !s.violated) this.counts.closed++
    else if (s.violated) this.counts.dropped++
    else this.counts.lost++
  }

  /** Connects, retrying with backoff while the server is away; throws RunAbort when it is time to give up. */
  private async connect(): Promise<PooledSession> {
    const reconnectFor = this.o.reconnectForMs ?? 30_000
    for (let attempt = 0; ; attempt++) {
      if (this.abort) throw this.abort
      try {
        const s = await this.open()
        this.everConnected = true
        this.downSince = undefined
        return s
      } catch (err) {
        if (!(err instanceof SessionOpenError)) throw err
        const code = exitCodeForSessionError(err)
        // What a retry cannot change (no STARTTLS, a certificate that does not verify, AUTH refused) stops the run.
        if (err.kind === 'capability' || err.kind === 'tls' || err.kind === 'auth') throw (this.abort ??= new RunAbort(err.message, code))
        this.counts.failedAttempts++
        if (!this.everConnected) throw (this.abort ??= new RunAbort(err.message, code))
        this.downSince ??= Date.now()
        if (Date.now() - this.downSince >= reconnectFor) {
          throw (this.abort ??= new RunAbort(`${err.message}; gave up after ${Math.round(reconnectFor / 1000)}s of failed reconnects`, code))
        }
        await sleep(Math.min(2000, 50 * 2 ** Math.min(attempt, 6)), this.o.signal)
      }
    }
  }

  /** Opens one session (the client core's openSession), timing connect+greeting and LHLO to the microsecond. */
  private async open(): Promise<PooledSession> {
    const o = this.o
    const clock = new TransactionClock()
    const started = new Map<string, number>()
    const onPhase = (e: PhaseEvent): void => {
      if (e.state === 'start') started.set(e.phase, performance.now())
      else if (e.phase === 'greeting') this.latency.record('connect', performance.now() - (started.get('connect') ?? 0))
      else if (e.phase === 'lhlo') this.latency.record('lhlo', performance.now() - (started.get('lhlo') ?? 0))
    }
    const session = await openSession(o.target, {
      lhloName: o.lhloName,
      starttls: o.starttls,
      tlsInsecure: o.tlsInsecure,
      tlsCa: o.tlsCa,
      auth: o.auth,
      requireChunking: o.needChunking,
      timeouts: o.timeouts,
      emit: clock.emit,
      onPhase,
    })
    this.counts.opened++
    const limit = (): number | undefined => (this.oneTransactionPerSession !== undefined ? 1 : o.messagesPerConnection)
    return {client: session.client, capabilities: session.capabilities, clock, sent: 0, violated: false, counted: false, quit: false, limit}
  }
}
