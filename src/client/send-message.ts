/**
 * `sendMessage()`: one LMTP delivery from start to end — measure the message, connect, greeting, LHLO,
 * optional STARTTLS, preflight checks, one transaction, QUIT — returning a report with one result per
 * recipient in RCPT order and the exit code it implies. This is what `lmtp send` runs; tests and other
 * commands can call it directly. It draws nothing: rendering belongs to the caller.
 */
import type {Duplex} from 'node:stream'
import net from 'node:net'
import type {TLSSocket} from 'node:tls'
import {CliError, EXIT, type ExitCode} from '../cli/exit-codes.js'
import {type Target, connectTarget, explainConnectError, formatTarget} from '../net/target.js'
import type {Capabilities} from '../protocol/capabilities.js'
import {type RecipientResult, LmtpClient, LmtpClientError, uniformTimeouts} from '../protocol/client.js'
import type {MailParams} from '../protocol/command.js'
import {replyText} from '../protocol/reply.js'
import {type MessageInfo, type MessageSource, MessageSourceError} from './message-source.js'
import {preflight} from './preflight.js'

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
}

/** TLS facts of the session, when STARTTLS was used. */
export interface TlsInfo {
  protocol: string
  cipher: string
  /** True when the certificate verified against the system CAs or --tls-ca. */
  verified: boolean
  /** Why it did not verify (only with --tls-insecure, otherwise the send fails). */
  verifyError?: string
  subject?: string
  issuer?: string
  validTo?: string
}

/** Counts of outcomes. */
export interface SendSummary {
  total: number
  delivered: number
  deferred: number
  rejected: number
}

/** Timings, in milliseconds. */
export interface SendTimings {
  connectMs: number
  greetingMs: number
  lhloMs: number
  tlsMs: number
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
  timings: SendTimings
  /** 0 all delivered; 75 some deferred, none rejected; 69 any rejected; 76 protocol violation. */
  exitCode: ExitCode
}

/** The exit code a set of recipient results implies (a protocol violation wins over outcomes). */
export function exitCodeFor(recipients: readonly RecipientResult[], violation?: string | null): ExitCode {
  if (violation) return EXIT.protocol
  if (recipients.some((r) => r.outcome === 'rejected')) return EXIT.unavailable
  if (recipients.some((r) => r.outcome === 'deferred')) return EXIT.tempFail
  return EXIT.ok
}

/** Counts outcomes. */
export function summarize(recipients: readonly RecipientResult[]): SendSummary {
  const s: SendSummary = {total: recipients.length, delivered: 0, deferred: 0, rejected: 0}
  for (const r of recipients) s[r.outcome]++
  return s
}

const VERIFY_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
])

/** Turns a client failure before the transaction into a CliError with the right exit code and a next step. */
function clientFailure(server: string, what: string, err: unknown): CliError {
  if (err instanceof CliError) return err
  if (err instanceof MessageSourceError) return new CliError(err.message, EXIT.noInput)
  if (!(err instanceof LmtpClientError)) {
    const e = err as NodeJS.ErrnoException
    if (e.code && VERIFY_CODES.has(e.code)) {
      return new CliError(
        `TLS with ${server}: the server's certificate did not verify (${e.message}): pass --tls-ca FILE with the CA that signed it, or --tls-insecure to skip verification`,
        EXIT.ioErr,
      )
    }
    return new CliError(`${what} with ${server} failed: ${e.message}`, EXIT.ioErr)
  }
  switch (err.kind) {
    case 'timeout':
      return new CliError(
        `${server} stalled: ${err.message} (is it an LMTP server, and is it overloaded? raise --timeout to wait longer)`,
        EXIT.ioErr,
      )
    case 'connection-lost':
      return new CliError(`${server}: ${err.message} during ${what}`, EXIT.ioErr)
    case 'protocol':
      return new CliError(`${server} broke the protocol during ${what}: ${err.message}`, EXIT.protocol)
    case 'refused': {
      const code = err.reply?.code ?? 500
      let hint = ''
      if (what === 'LHLO' && code >= 500) hint = ' (is this an SMTP server? an LMTP server answers LHLO)'
      return new CliError(`${server}: ${err.message}${hint}`, code < 500 ? EXIT.tempFail : EXIT.unavailable)
    }
  }
}

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

function certName(name: unknown): string | undefined {
  if (!name || typeof name !== 'object') return undefined
  const n = name as Record<string, string | string[] | undefined>
  const cn = n.CN ?? n.O
  return Array.isArray(cn) ? cn.join(', ') : cn
}

/** Wraps a connected socket in TLS (client side) and resolves once the handshake is done. */
async function upgradeToTls(plain: Duplex, target: Target, options: SendOptions, timeoutMs: number): Promise<TLSSocket> {
  // Loaded only when needed: node:tls costs startup time that a plain send does not have to pay.
  const tls = await import('node:tls')
  return new Promise((resolve, reject) => {
    const host = target.kind === 'tcp' ? target.host : 'localhost'
    const secure = tls.connect({
      socket: plain,
      host,
      // SNI takes a host name only; an IP address is checked against the certificate's IP SANs instead.
      ...(net.isIP(host) ? {} : {servername: host}),
      rejectUnauthorized: !options.tlsInsecure,
      ...(options.tlsCa ? {ca: options.tlsCa} : {}),
    })
    const timer = setTimeout(() => {
      secure.destroy()
      reject(new CliError(`TLS with ${formatTarget(target)}: no handshake within ${timeoutMs / 1000}s`, EXIT.ioErr))
    }, timeoutMs)
    secure.once('secureConnect', () => {
      clearTimeout(timer)
      secure.off('error', onError)
      resolve(secure)
    })
    const onError = (err: Error): void => {
      clearTimeout(timer)
      reject(err)
    }
    secure.once('error', onError)
  })
}

/**
 * Sends one message. Resolves with the report whenever the transaction ran (whatever the recipients' outcomes
 * or a server's protocol violation during it); rejects with a CliError carrying the exit code when it could not
 * run: unreadable message (66), connection failure or stall before the transaction (74), a check that fails
 * before sending (65, nothing sent), a server that refuses the session (69/75) or breaks the protocol before
 * the transaction (76). Never leaves a message half-sent: a read error mid-body closes the connection before
 * the end of data, so the server discards it.
 */
export async function sendMessage(options: SendOptions): Promise<SendReport> {
  const t0 = Date.now()
  const server = formatTarget(options.target)
  const timeoutMs = options.timeoutMs ?? 300_000
  const progress = options.onProgress ?? (() => {})
  const note = (text: string): void => options.trace?.({direction: '*', text, ms: Date.now() - t0})
  const timings: SendTimings = {
    connectMs: 0,
    greetingMs: 0,
    lhloMs: 0,
    tlsMs: 0,
    mailMs: 0,
    rcptMs: 0,
    dataMs: 0,
    deliveryMs: 0,
    totalMs: 0,
  }

  progress(`reading the message (${options.source.description})`)
  let info: MessageInfo
  try {
    info = await options.source.scan()
  } catch (err) {
    throw clientFailure(server, 'reading the message', err)
  }

  progress(`connecting to ${server}`)
  let socket: net.Socket
  let at = Date.now()
  try {
    socket = await connectTarget(options.target, options.timeoutMs ?? 30_000)
  } catch (err) {
    throw new CliError(explainConnectError(options.target, err as NodeJS.ErrnoException), EXIT.ioErr)
  }
  timings.connectMs = Date.now() - at
  note(`connected to ${server} in ${timings.connectMs} ms`)

  let lastCommand = ''
  let bodyStarted = false
  const client = new LmtpClient(socket, {
    timeouts: options.timeoutMs === undefined ? undefined : uniformTimeouts(options.timeoutMs),
    emit: (event) => {
      if (event.type !== 'command') return
      if (event.verb === 'DATA' || event.verb === 'BDAT') bodyStarted = true
      // The LHLO pipelined after the body: everything is sent, only the per-recipient replies are due.
      else if (event.verb === 'LHLO' && bodyStarted) progress('message sent, waiting for the per-recipient replies')
    },
    trace: options.trace
      ? (direction, line) => {
          const ms = Date.now() - t0
          for (const l of line.split('\n')) options.trace!({direction, text: l, ms})
          if (direction === 'C') {
            if (line.startsWith('LHLO') && /^(DATA|BDAT \d+ LAST)$/.test(lastCommand)) {
              note('LHLO pipelined after the body: its reply marks the end of the per-recipient replies')
            }
            lastCommand = line
          } else if (lastCommand === 'DATA' && line.startsWith('354')) {
            note(`message body: ${info.size} octets, dot-stuffed, ended by <CRLF>.<CRLF>`)
          }
        }
      : undefined,
  })
  let stage = 'the greeting'
  let tlsInfo: TlsInfo | null = null
  let caps: Capabilities
  let greetingText: {code: number; text: string}
  try {
    progress(`waiting for the greeting of ${server}`)
    at = Date.now()
    const greeting = await client.start()
    timings.greetingMs = Date.now() - at
    greetingText = {code: greeting.code, text: replyText(greeting)}
    stage = 'LHLO'
    at = Date.now()
    caps = await client.lhlo(options.lhlo)
    timings.lhloMs = Date.now() - at
    if (options.starttls) {
      stage = 'STARTTLS'
      if (!caps.startTls) {
        throw new CliError(
          `${server} does not offer STARTTLS${options.target.kind === 'unix' ? ' (servers do not offer it on Unix sockets)' : ''}: configure TLS on the server, or drop --starttls`,
          EXIT.unavailable,
        )
      }
      progress(`starting TLS with ${server}`)
      at = Date.now()
      let secure: TLSSocket | undefined
      await client.startTls(async (plain) => {
        secure = await upgradeToTls(plain, options.target, options, timeoutMs)
        return secure
      })
      const s = secure!
      const cert = s.getPeerCertificate()
      tlsInfo = {
        protocol: s.getProtocol() ?? 'unknown',
        cipher: s.getCipher()?.name ?? 'unknown',
        verified: s.authorized,
        ...(s.authorized ? {} : {verifyError: String(s.authorizationError)}),
        ...(cert && Object.keys(cert).length > 0
          ? {subject: certName(cert.subject), issuer: certName(cert.issuer), validTo: cert.valid_to}
          : {}),
      }
      note(`TLS established: ${tlsInfo.protocol} ${tlsInfo.cipher}, certificate ${tlsInfo.verified ? 'verified' : `NOT verified (${tlsInfo.verifyError})`}`)
      stage = 'LHLO after STARTTLS'
      caps = await client.lhlo(options.lhlo)
      timings.tlsMs = Date.now() - at
    }
  } catch (err) {
    client.close()
    throw clientFailure(server, stage, err)
  }

  if (options.bdat && !caps.chunking) {
    await client.quit()
    throw new CliError(`${server} does not offer CHUNKING, so BDAT cannot be used: drop --bdat`, EXIT.unavailable)
  }
  const checked = preflight({capabilities: caps, message: info, from: options.from, to: options.to, server})
  if (checked.problems.length > 0) {
    await client.quit()
    throw new CliError(`nothing was sent: ${checked.problems.join('; and ')}`, EXIT.dataErr)
  }

  progress(`sending ${info.size} octets to ${options.to.length} recipient${options.to.length === 1 ? '' : 's'}`)
  let bodyError: Error | undefined
  async function* body(): AsyncIterable<Buffer> {
    try {
      yield* options.source.open()
    } catch (err) {
      bodyError = err as Error
      throw err
    }
  }
  const pipelined = (options.pipelining ?? true) && caps.pipelining
  const result = await client.send({
    from: options.from,
    to: options.to,
    params: checked.params,
    body: body(),
    bdat: options.bdat,
    chunkSize: options.chunkSize,
    pipelining: options.pipelining ?? true,
    verifyReplyCount: true,
  })
  if (bodyError) {
    // The end of data was never sent: closing now makes the server discard the partial message.
    client.close()
    throw new CliError(
      `${(bodyError as Error).message}; the message was not delivered (the connection was closed before the end of the message)`,
      bodyError instanceof MessageSourceError ? EXIT.noInput : EXIT.ioErr,
    )
  }
  if (result.violation) note(`protocol violation: ${result.violation}`)
  progress('closing')
  await client.quit()

  timings.mailMs = result.timings.mailMs
  timings.rcptMs = result.timings.rcptMs
  timings.dataMs = result.timings.dataMs
  timings.deliveryMs = result.timings.deliveryMs
  timings.totalMs = Date.now() - t0
  return {
    server,
    greeting: greetingText,
    capabilities: capabilitySummary(caps),
    tls: tlsInfo,
    message: {source: options.source.description, size: info.size, eightBit: info.has8bit},
    envelope: {from: options.from, to: options.to, params: checked.params},
    method: options.bdat ? 'BDAT' : 'DATA',
    pipelined,
    mail: {code: result.mail.code, enhanced: result.mail.enhanced, text: replyText(result.mail)},
    recipients: result.recipients,
    summary: summarize(result.recipients),
    violation: result.violation ?? null,
    timings,
    exitCode: exitCodeFor(result.recipients, result.violation),
  }
}

