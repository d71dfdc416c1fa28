/**
 * openSession(): the one way a client opens an LMTP session — connect, greeting, LHLO, STARTTLS (the one
 * upgrader, tls.ts), LHLO again, AUTH — with timestamped phase events and one typed error. send, probe and replay
 * all start here; what they do with the open session (one transaction, checks, a pool) is theirs.
 */
import type {Socket} from 'node:net'
import type {TLSSocket} from 'node:tls'
import {type Target, connectTarget, explainConnectError, formatTarget} from '../net/target.js'
import type {Capabilities} from '../protocol/capabilities.js'
import {type ClientOptions, type ClientTimeouts, DEFAULT_TIMEOUTS, LmtpClient, LmtpClientError} from '../protocol/client.js'
import type {Reply} from '../protocol/reply.js'
import {AuthError, type AuthCredentials, authMechanisms, authenticate} from './auth.js'
import {type TlsInfo, TlsUpgradeError, describeTls, tlsUpgrader} from './tls.js'

/** The phases of opening a session, in order (starttls, tls and lhlo-again only with STARTTLS; auth only with credentials). */
export type SessionPhase = 'connect' | 'greeting' | 'lhlo' | 'starttls' | 'tls' | 'lhlo-again' | 'auth'

/** A phase started or finished. */
export interface PhaseEvent {
  phase: SessionPhase
  state: 'start' | 'done'
  /** Milliseconds since the epoch. */
  at: number
  /** With `done`: how long the phase took, in milliseconds. */
  ms?: number
}

/** Why a session could not be opened (each maps to an exit code in outcome.ts). */
export type SessionErrorKind =
  /** The connection could not be made (refused, no socket file, timed out connecting). */
  | 'connect'
  /** The connection was lost while opening. */
  | 'lost'
  /** The server refused the session, LHLO or STARTTLS (the reply says how). */
  | 'refused'
  /** The TLS handshake failed or the certificate did not verify. */
  | 'tls'
  /** AUTH was refused, or credentials would have gone in clear text. */
  | 'auth'
  /** The server lacks something asked for (STARTTLS, CHUNKING, AUTH). */
  | 'capability'
  /** The server did not answer in time. */
  | 'timeout'
  /** The server broke the protocol (garbage, a reply out of turn, data after the STARTTLS reply). */
  | 'protocol'

/** Opening a session failed: in which phase, what kind of failure, and the server's reply when there was one. */
export class SessionOpenError extends Error {
  constructor(
    readonly phase: SessionPhase,
    readonly kind: SessionErrorKind,
    message: string,
    readonly reply?: Reply,
    /** For a TLS failure: Node's error code (e.g. DEPTH_ZERO_SELF_SIGNED_CERT). */
    readonly code?: string,
  ) {
    super(message)
    this.name = 'SessionOpenError'
  }
}

/** How to open a session. Option names are the ones send, probe and replay already used. */
export interface SessionOptions {
  /** The LHLO name. */
  lhloName: string
  /** STARTTLS, and fail when the server does not offer it. */
  starttls?: boolean
  /** Accept a certificate that does not verify. */
  tlsInsecure?: boolean
  /** CA certificates (PEM) to verify the server's certificate with. */
  tlsCa?: Buffer
  /** Name for SNI and certificate checks (default: the target's host name). */
  tlsServername?: string
  /** AUTH with these credentials after LHLO (after STARTTLS when both). */
  auth?: AuthCredentials
  /** Fail with `capability` when the server does not offer CHUNKING (for BDAT). */
  requireChunking?: boolean
  /** Client waits (default RFC 5321's); the TLS handshake is bounded by `command`. */
  timeouts?: Partial<ClientTimeouts>
  /** Connect timeout in milliseconds (default: timeouts.greeting, else 30 s). */
  connectTimeoutMs?: number
  /** The client's C:/S: trace. */
  trace?: ClientOptions['trace']
  /** The client's events. */
  emit?: ClientOptions['emit']
  /** Session id used in events. */
  sessionId?: string
  /** Longest reply line accepted. */
  maxReplyLineLength?: number
  /** Called when each phase starts and ends. */
  onPhase?: (event: PhaseEvent) => void
}

/** How long each phase took, in milliseconds (0 for phases that did not run). */
export interface SessionTimings {
  connectMs: number
  greetingMs: number
  lhloMs: number
  /** STARTTLS, the handshake and the LHLO after it. */
  tlsMs: number
  authMs: number
}

/** An open session, ready for transactions. */
export interface OpenSession {
  client: LmtpClient
  target: Target
  greeting: Reply
  /** Capabilities from the last LHLO. */
  capabilities: Capabilities
  /** What TLS negotiated, or null without STARTTLS. */
  tls: TlsInfo | null
  /** True when AUTH succeeded. */
  authenticated: boolean
  timings: SessionTimings
}

/** True for targets where credentials may go without TLS: Unix sockets and loopback addresses. */
export function isLocalTarget(target: Target): boolean {
  if (target.kind === 'unix') return true
  const h = target.host.toLowerCase()
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h) || /^::ffff:127\./.test(h)
}

/**
 * Opens a session: connects, reads the greeting, LHLO, then (when asked) STARTTLS, the handshake and LHLO
 * again, then AUTH. Resolves with the client ready for transactions; rejects with a SessionOpenError (the
 * connection is closed then). Nothing of a transaction is sent here.
 */
export async function openSession(target: Target, options: SessionOptions): Promise<OpenSession> {
  const where = formatTarget(target)
  const timeouts: ClientTimeouts = {...DEFAULT_TIMEOUTS, ...options.timeouts}
  const timings: SessionTimings = {connectMs: 0, greetingMs: 0, lhloMs: 0, tlsMs: 0, authMs: 0}
  let phase: SessionPhase = 'connect'
  let phaseAt = Date.now()
  const begin = (p: SessionPhase): void => {
    phase = p
    phaseAt = Date.now()
    options.onPhase?.({phase: p, state: 'start', at: phaseAt})
  }
  const done = (): number => {
    const at = Date.now()
    const ms = at - phaseAt
    options.onPhase?.({phase, state: 'done', at, ms})
    return ms
  }

  if (options.auth && !options.starttls && !isLocalTarget(target)) {
    throw new SessionOpenError(
      'auth',
      'auth',
      `AUTH to ${where} would send the password in clear text: add --starttls (AUTH without TLS is allowed only on loopback and unix: targets)`,
    )
  }

  begin('connect')
  let socket: Socket
  try {
    socket = await connectTarget(target, options.connectTimeoutMs ?? options.timeouts?.greeting ?? 30_000)
  } catch (err) {
    throw new SessionOpenError('connect', 'connect', explainConnectError(target, err as NodeJS.ErrnoException))
  }
  timings.connectMs = done()

  const client = new LmtpClient(socket, {
    timeouts: options.timeouts,
    emit: options.emit,
    sessionId: options.sessionId,
    trace: options.trace,
    maxReplyLineLength: options.maxReplyLineLength,
  })
  try {
    begin('greeting')
    const greeting = await client.start()
    timings.greetingMs = done()

    begin('lhlo')
    let caps = await client.lhlo(options.lhloName)
    timings.lhloMs = done()

    let tls: TlsInfo | null = null
    if (options.starttls) {
      const tlsStart = Date.now()
      begin('starttls')
      if (!caps.startTls) {
        throw new SessionOpenError(
          'starttls',
          'capability',
          `${where} does not offer STARTTLS${target.kind === 'unix' ? ' (servers do not offer it on Unix sockets)' : ''}: configure TLS on the server, or drop --starttls`,
        )
      }
      let secure: TLSSocket | undefined
      const upgrade = tlsUpgrader(target, {
        insecure: options.tlsInsecure,
        ca: options.tlsCa,
        servername: options.tlsServername,
        handshakeTimeoutMs: timeouts.command,
      })
      await client.startTls(async (plain) => {
        done()
        begin('tls')
        secure = await upgrade(plain)
        return secure
      })
      tls = describeTls(secure!)
      done()
      begin('lhlo-again')
      caps = await client.lhlo(options.lhloName)
      done()
      timings.tlsMs = Date.now() - tlsStart
    }

    let authenticated = false
    if (options.auth) {
      begin('auth')
      if (authMechanisms(caps) === undefined) {
        throw new SessionOpenError('auth', 'capability', `${where} does not offer AUTH: drop --auth (or enable AUTH on the server)`)
      }
      await authenticate(client, caps, options.auth)
      authenticated = true
      timings.authMs = done()
    }

    if (options.requireChunking && !caps.chunking) {
      throw new SessionOpenError(phase, 'capability', `${where} does not offer CHUNKING, so BDAT cannot be used: drop --bdat`)
    }
    return {client, target, greeting, capabilities: caps, tls, authenticated, timings}
  } catch (err) {
    client.close()
    throw sessionError(where, phase, err)
  }
}

/** Turns whatever a phase threw into a SessionOpenError with a next step in its message. */
function sessionError(where: string, phase: SessionPhase, err: unknown): SessionOpenError {
  if (err instanceof SessionOpenError) return err
  if (err instanceof TlsUpgradeError) {
    const next =
      err.kind === 'verify'
        ? ': pass --tls-ca FILE with the CA that signed it, or --tls-insecure to skip verification'
        : err.kind === 'timeout'
          ? ' (is TLS configured on the server? raise --timeout to wait longer)'
          : ''
    return new SessionOpenError(phase, err.kind === 'timeout' ? 'timeout' : 'tls', `TLS with ${where}: ${err.message}${next}`, undefined, err.code)
  }
  if (err instanceof AuthError) {
    return new SessionOpenError(
      'auth',
      err.kind === 'unsupported' ? 'capability' : 'auth',
      `${where}: ${err.message}${err.kind === 'refused' ? ' (check the user name and the password file, or LMTP_AUTH_PASSWORD)' : ''}`,
      err.reply,
    )
  }
  if (err instanceof LmtpClientError) {
    switch (err.kind) {
      case 'timeout':
        return new SessionOpenError(
          phase,
          'timeout',
          `${where} stalled: ${err.message} (is it an LMTP server, and is it overloaded? raise --timeout to wait longer)`,
        )
      case 'connection-lost':
        return new SessionOpenError(phase, 'lost', `${where}: ${err.message} during ${phaseName(phase)}`)
      case 'protocol':
        return new SessionOpenError(phase, 'protocol', `${where} broke the protocol during ${phaseName(phase)}: ${err.message}`)
      case 'refused': {
        const code = err.reply?.code ?? 500
        const hint =
          (phase === 'lhlo' || phase === 'lhlo-again') && code >= 500
            ? ' (is this an SMTP server? an LMTP server answers LHLO)'
            : ''
        return new SessionOpenError(phase, 'refused', `${where}: ${err.message}${hint}`, err.reply)
      }
    }
  }
  const e = err as Error
  return new SessionOpenError(phase, 'lost', `${phaseName(phase)} with ${where} failed: ${e?.message ?? String(err)}`)
}

const PHASE_NAMES: Record<SessionPhase, string> = {
  connect: 'connecting',
  greeting: 'the greeting',
  lhlo: 'LHLO',
  starttls: 'STARTTLS',
  tls: 'the TLS handshake',
  'lhlo-again': 'LHLO after STARTTLS',
  auth: 'AUTH',
}

/** A phase in words, for messages. */
export function phaseName(phase: SessionPhase): string {
  return PHASE_NAMES[phase]
}
