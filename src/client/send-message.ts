/**
 * `sendMessage()`: one LMTP delivery from start to end — measure the message, open the session (openSession:
 * connect, greeting, LHLO, STARTTLS, AUTH), preflight checks, one transaction, QUIT — returning a report with
 * one result per recipient in RCPT order and the exit code it implies. This is what `lmtp send` runs; tests and
 * other commands can call it directly. It draws nothing and knows nothing of the CLI: failures before the
 * transaction are SendErrors carrying their exit code.
 */
import {type Target, formatTarget} from '../net/target.js'
import type {Capabilities} from '../protocol/capabilities.js'
import {type RecipientResult, type TransactionResult, uniformTimeouts} from '../protocol/client.js'
import type {MailParams} from '../protocol/command.js'
import {replyText} from '../protocol/reply.js'
import {EXIT, type ExitCode} from '../util/exit-codes.js'
import type {AuthCredentials} from './auth.js'
import {type MessageInfo, type MessageSource, MessageSourceError} from './message-source.js'
import {AUTH_REQUIRED_HINT, type OutcomeCounts, countOutcomes, exitCodeFor, exitCodeForSessionError, requiresAuth} from './outcome.js'
import {preflight} from './preflight.js'
import {type OpenSession, type SessionPhase, SessionOpenError, openSession} from './session.js'
import type {TlsInfo} from './tls.js'

export type {TlsInfo} from './tls.js'

/** One line of the dialogue: what the client sent (C), what the server answered (S), or a note (*). */
export interface TranscriptLine {
  direction: 'C' | 'S' | '*'
  text: string
  /** Milliseconds since sendMessage() started. */
  ms: number
}

/** What to send, where, and how. */
export interface SendOptions {
  target: Target
  /** Envelope sender; '' sends `<>`. */
  from: string
  /** Recipients in order, duplicates kept. */
  to: string[]
  source: MessageSource
  /** The LHLO name. */
  lhlo: string
  /** Require STARTTLS (fail when the server does not offer it). */
  starttls?: boolean
  /** Do not verify the server's certificate. */
  tlsInsecure?: boolean
  /** CA certificates (PEM) to verify the server's certificate with, instead of the system's. */
  tlsCa?: Buffer
  /** LMTP AUTH credentials. */
  auth?: AuthCredentials
  /** Send the body with BDAT (fails when the server does not offer CHUNKING). */
  bdat?: boolean
  /** BDAT chunk size in octets (default 1 MiB). */
  chunkSize?: number
  /** Pipeline when the server offers PIPELINING (default true). */
  pipelining?: boolean
  /** One timeout for every wait (connect, greeting, each command, each reply); default RFC 5321's. */
  timeoutMs?: number
  /** Receives the dialogue as it happens (for --transcript). */
  trace?: (line: TranscriptLine) => void
  /** Receives a short description of what is happening now (for a spinner). */
  onProgress?: (text: string) => void
  /** Called once the end of the message has been sent: from then on the server may have delivered. */
  onBodySent?: () => void
}

/** Counts of outcomes. */
export type SendSummary = OutcomeCounts

/** Timings, in milliseconds. */
export interface SendTimings {
  connectMs: number
  greetingMs: number
  lhloMs: number
  tlsMs: number
  authMs: number
  mailMs: number
  rcptMs: number
  dataMs: number
  /** From the end of data to the last per-recipient reply. */
  deliveryMs: number
  totalMs: number
}

/** The result of a send: also `lmtp send --json`'s output. */
export interface SendReport {
  /** The server as text (`127.0.0.1:24`, `unix:/path`). */
  server: string
  greeting: {code: number; text: string}
  capabilities: {
    keywords: string[]
    pipelining: boolean
    chunking: boolean
    eightBitMime: boolean
    smtputf8: boolean
    startTls: boolean
    enhancedStatusCodes: boolean
    /** Advertised SIZE limit in octets (0: no limit given); absent when SIZE is not advertised. */
    size?: number
  }
  tls: TlsInfo | null
  /** True when AUTH succeeded. */
  authenticated: boolean
  message: {source: string; size: number; eightBit: boolean}
  envelope: {from: string; to: string[]; params: MailParams}
  /** How the body went: DATA or BDAT; and whether commands were pipelined. */
  method: 'DATA' | 'BDAT'
  pipelined: boolean
  /** The reply to MAIL FROM. */
  mail: {code: number; enhanced?: string; text: string}
  /** One result per recipient, in RCPT order, duplicates kept. */
  recipients: RecipientResult[]
  summary: SendSummary
  /** What the server did wrong (wrong number of replies, garbage), or null. */
  violation: string | null
  /** Set when the server refused MAIL because it requires authentication and none was given. */
  authRequired?: string
  timings: SendTimings
  /** 0 all delivered; 75 some deferred, none rejected; 69 any rejected; 76 protocol violation; 78 AUTH required. */
  exitCode: ExitCode
}

/** A send that could not run (nothing was delivered); the message has the next step, exitCode the exit code. */
export class SendError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
  ) {
    super(message)
    this.name = 'SendError'
  }
}

/** The exit code a set of recipient results implies (see outcome.ts). */
export {exitCodeFor} from './outcome.js'

/** Counts outcomes (see outcome.ts). */
export const summarize = countOutcomes

function capabilitySummary(caps: Capabilities): SendReport['capabilities'] {
  return {
    keywords: caps.keywords,
    pipelining: caps.pipelining,
    chunking: caps.chunking,
    eightBitMime: caps.eightBitMime,
    smtputf8: caps.smtputf8,
    startTls: caps.startTls,
    enhancedStatusCodes: caps.enhancedStatusCodes,
    ...(caps.size === undefined ? {} : {size: caps.size}),
  }
}

const PROGRESS: Partial<Record<SessionPhase, (server: string) => string>> = {
  connect: (s) => `connecting to ${s}`,
  greeting: (s) => `waiting for the greeting of ${s}`,
  starttls: (s) => `starting TLS with ${s}`,
  auth: (s) => `authenticating with ${s}`,
}

/** Where sendMessage reports what happens: transcript notes and the spinner's text. */
interface Narrator {
  t0: number
  server: string
  note: (text: string) => void
  progress: (text: string) => void
}

/** Measures the message (size, 8-bit) before anything is sent; an unreadable one is a SendError (66/74). */
async function scanMessage(options: SendOptions, n: Narrator): Promise<MessageInfo> {
  n.progress(`reading the message (${options.source.description})`)
  try {
    return await options.source.scan()
  } catch (err) {
    if (err instanceof MessageSourceError) throw new SendError(err.message, EXIT.noInput)
    throw new SendError(`reading the message failed: ${(err as Error).message}`, EXIT.ioErr)
  }
}

/** Opens the session with send's options; a session that cannot be opened is a SendError with its exit code. */
async function openFor(options: SendOptions, n: Narrator): Promise<OpenSession> {
  try {
    const session = await openSession(options.target, {
      lhloName: options.lhlo,
      starttls: options.starttls,
      tlsInsecure: options.tlsInsecure,
      tlsCa: options.tlsCa,
      auth: options.auth,
      requireChunking: options.bdat,
      timeouts: options.timeoutMs === undefined ? undefined : uniformTimeouts(options.timeoutMs),
      connectTimeoutMs: options.timeoutMs ?? 30_000,
      trace: options.trace
        ? (direction, line) => {
            const ms = Date.now() - n.t0
            for (const l of line.split('\n')) options.trace!({direction, text: l, ms})
          }
        : undefined,
      onPhase: (e) => {
        if (e.state === 'start') {
          const text = PROGRESS[e.phase]?.(n.server)
          if (text) n.progress(text)
        } else if (e.phase === 'connect') n.note(`connected to ${n.server} in ${e.ms} ms`)
        else if (e.phase === 'tls') n.note(`TLS handshake done in ${e.ms} ms`)
      },
    })
    const t = session.tls
    if (t) n.note(`TLS established: ${t.protocol} ${t.cipher}, certificate ${t.verified ? 'verified' : `NOT verified (${t.verifyError})`}`)
    return session
  } catch (err) {
    if (err instanceof SessionOpenError) throw new SendError(err.message, exitCodeForSessionError(err))
    throw err
  }
}

/** The one transaction, as the session's last (QUIT is the reply-count marker); a body read error is a SendError. */
async function transact(options: SendOptions, session: OpenSession, info: MessageInfo, params: MailParams, n: Narrator): Promise<TransactionResult> {
  const {client} = session
  n.progress(`sending ${info.size} octets to ${options.to.length} recipient${options.to.length === 1 ? '' : 's'}`)
  let bodyError: Error | undefined
  async function* body(): AsyncIterable<Buffer> {
    try {
      yield* options.source.open()
    } catch (err) {
      bodyError = err as Error
      throw err
    }
  }
  const result = await client.send({
    from: options.from,
    to: options.to,
    params,
    body: body(),
    bdat: options.bdat,
    chunkSize: options.chunkSize,
    pipelining: options.pipelining ?? true,
    verifyReplyCount: true,
    lastInSession: true,
    onPhase: (phase) => {
      if (phase === 'body') n.note(`message body: ${info.size} octets${options.bdat ? ' in BDAT chunks' : ', dot-stuffed, ended by <CRLF>.<CRLF>'}`)
      else {
        options.onBodySent?.()
        n.progress('message sent, waiting for the per-recipient replies')
      }
    },
  })
  if (bodyError) {
    // The end of data was never sent: closing now makes the server discard the partial message.
    client.close()
    throw new SendError(
      `${bodyError.message}; the message was not delivered (the connection was closed before the end of the message)`,
      bodyError instanceof MessageSourceError ? EXIT.noInput : EXIT.ioErr,
    )
  }
  return result
}

/**
 * Sends one message. Resolves with the report whenever the transaction ran (whatever the recipients' outcomes
 * or a server's protocol violation during it); rejects with a SendError carrying the exit code when it could
 * not run: unreadable message (66), connection failure or stall before the transaction (74), a check that fails
 * before sending (65, nothing sent), a server that refuses the session (69/75), lacks what was asked for (69),
 * refuses the credentials (78) or breaks the protocol before the transaction (76). Never leaves a message
 * half-sent: a read error mid-body closes the connection before the end of data, so the server discards it.
 */
export async function sendMessage(options: SendOptions): Promise<SendReport> {
  const t0 = Date.now()
  const n: Narrator = {
    t0,
    server: formatTarget(options.target),
    note: (text) => options.trace?.({direction: '*', text, ms: Date.now() - t0}),
    progress: options.onProgress ?? (() => {}),
  }
  const info = await scanMessage(options, n)
  const session = await openFor(options, n)
  const caps = session.capabilities
  const checked = preflight({capabilities: caps, message: info, from: options.from, to: options.to, server: n.server})
  if (checked.problems.length > 0) {
    await session.client.quit()
    throw new SendError(`nothing was sent: ${checked.problems.join('; and ')}`, EXIT.dataErr)
  }
  const result = await transact(options, session, info, checked.params, n)
  if (result.violation) n.note(`protocol violation: ${result.violation}`)
  const authRequired = !options.auth && requiresAuth(result.mail) ? AUTH_REQUIRED_HINT : undefined
  if (authRequired) n.note(authRequired)
  n.progress('closing')
  await session.client.quit()

  const s = session.timings
  const r = result.timings
  return {
    server: n.server,
    greeting: {code: session.greeting.code, text: replyText(session.greeting)},
    capabilities: capabilitySummary(caps),
    tls: session.tls,
    authenticated: session.authenticated,
    message: {source: options.source.description, size: info.size, eightBit: info.has8bit},
    envelope: {from: options.from, to: options.to, params: checked.params},
    method: options.bdat ? 'BDAT' : 'DATA',
    pipelined: (options.pipelining ?? true) && caps.pipelining,
    mail: {code: result.mail.code, enhanced: result.mail.enhanced, text: replyText(result.mail)},
    recipients: result.recipients,
    summary: countOutcomes(result.recipients),
    violation: result.violation ?? null,
    ...(authRequired ? {authRequired} : {}),
    timings: {...s, mailMs: r.mailMs, rcptMs: r.rcptMs, dataMs: r.dataMs, deliveryMs: r.deliveryMs, totalMs: Date.now() - t0},
    exitCode: exitCodeFor(result.recipients, result.violation, {authRequired: authRequired !== undefined}),
  }
}

