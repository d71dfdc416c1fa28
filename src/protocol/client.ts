/**
 * The LMTP client: drives any connected byte stream (a TCP or Unix socket, or a TLS socket after STARTTLS)
 * through greeting, LHLO and transactions, and returns one result per recipient in RCPT order. It keeps a
 * queue of expected replies, so pipelined commands and the N replies after the body are matched exactly.
 * It opens no sockets and reads no files: the caller supplies the stream and the message bytes.
 */
import type {Duplex} from 'node:stream'
import {type Capabilities, parseCapabilities} from './capabilities.js'
import {type MailParams, type OutgoingCommand, formatCommand} from './command.js'
import type {LmtpEvent, Outcome} from './events.js'
import {outcomeOf} from './events.js'
import {type Reply, ReplyParser, type ReplySyntaxError, replyText} from './reply.js'
import {DataEncoder} from './wire/dot-stuffing.js'

/** Client waits, in milliseconds (RFC 5321 section 4.5.3.2 defaults). */
export interface ClientTimeouts {
  /** Waiting for the 220 greeting (5 min). */
  greeting: number
  /** MAIL, RCPT, LHLO and other commands (5 min). */
  command: number
  /** Waiting for the 354 after DATA (2 min). */
  dataInit: number
  /** Each block of body data, i.e. how long a write may stay blocked (3 min). */
  dataBlock: number
  /** After the end of data, for each per-recipient reply; restarts after each reply (10 min). */
  dataEnd: number
}

/** RFC 5321's recommended client timeouts. */
export const DEFAULT_TIMEOUTS: ClientTimeouts = {
  greeting: 300_000,
  command: 300_000,
  dataInit: 120_000,
  dataBlock: 180_000,
  dataEnd: 600_000,
}

/** Sets every timeout to the same value (a command-line `--timeout`). */
export function uniformTimeouts(ms: number): ClientTimeouts {
  return {greeting: ms, command: ms, dataInit: ms, dataBlock: ms, dataEnd: ms}
}

/** Why the client gave up on a session. */
export type ClientErrorKind = 'timeout' | 'connection-lost' | 'protocol' | 'refused'

/** A client-side failure; `kind` tells timeouts, lost connections and server protocol violations apart. */
export class LmtpClientError extends Error {
  constructor(
    readonly kind: ClientErrorKind,
    message: string,
    readonly reply?: Reply,
  ) {
    super(message)
    this.name = 'LmtpClientError'
  }
}

/** Options of a client. */
export interface ClientOptions {
  timeouts?: Partial<ClientTimeouts>
  /** Receives the client's events (commands sent, replies received, per-recipient results). */
  emit?: (event: LmtpEvent) => void
  /** Session id used in events. */
  sessionId?: string
  /** Longest reply line accepted (default 4096 octets): a hostile server cannot make us buffer more. */
  maxReplyLineLength?: number
  /** Called with every line sent and received (C:/S: transcripts), with the time since the session started. */
  trace?: (direction: 'C' | 'S', line: string, elapsedMs: number) => void
}

/** Where a recipient's outcome was decided. */
export type Stage = 'RCPT' | 'DATA'

/** One recipient's outcome, in RCPT order. */
export interface RecipientResult {
  /** Position in the RCPT sequence (0-based), duplicates kept. */
  index: number
  recipient: string
  stage: Stage
  outcome: Outcome
  code: number
  enhanced?: string
  text: string
  /** Milliseconds from the command (RCPT) or from the end of data to this reply. */
  latencyMs: number
  /** True when the server never answered for this recipient (connection lost, timeout): treated as deferred. */
  synthetic?: boolean
}

/** What to send in one transaction. */
export interface TransactionRequest {
  /** Envelope sender; '' sends `<>`. */
  from: string
  /** Recipients in order; duplicates are sent as given. */
  to: string[]
  /** MAIL parameters (SIZE, BODY, SMTPUTF8). */
  params?: MailParams
  /** The message bytes, any line ends; read once, streamed. */
  body: AsyncIterable<Buffer | Uint8Array | string> | Iterable<Buffer | Uint8Array | string>
  /** Send with BDAT chunks (the server must offer CHUNKING). */
  bdat?: boolean
  /** BDAT chunk size in octets (default 1 MiB). */
  chunkSize?: number
  /** Pipeline MAIL, RCPT and DATA when the server offers PIPELINING (default true). */
  pipelining?: boolean
  /**
   * With pipelining, send DATA in the same group as MAIL and the RCPTs (RFC 2920 lets DATA end a group) instead
   * of waiting for their replies first: one round trip less per message, for load tools. When every recipient
   * was refused the server answers DATA with 503 and no body is sent; a server that answers 354 anyway has
   * broken the protocol and the session is closed. Default false (DATA waits, and is never sent when every
   * recipient was refused). Ignored with BDAT.
   */
  pipelineData?: boolean
  /**
   * After the body, pipeline an LHLO whose well-known reply marks the end of the per-recipient replies, so a
   * server that sends fewer replies than recipients is caught at once instead of after a timeout.
   */
  verifyReplyCount?: boolean
  /**
   * Called as the transaction moves on: `body` when the message data starts (after 354, or before the first
   * BDAT), `replies` once the end of data is written and only the per-recipient replies are due.
   */
  onPhase?: (phase: 'body' | 'replies') => void
}

/** Timings of one transaction, in milliseconds. */
export interface TransactionTimings {
  mailMs: number
  rcptMs: number
  dataMs: number
  /** From the end of data to the last per-recipient reply. */
  deliveryMs: number
  totalMs: number
}

/** The result of one transaction. */
export interface TransactionResult {
  /** The reply to MAIL FROM. */
  mail: Reply
  /** The reply to DATA (354 or a refusal) or to the first failing BDAT chunk; absent when no body was started. */
  data?: Reply
  recipients: RecipientResult[]
  /** Octets of message sent (after line-end normalisation, before dot-stuffing). */
  bytes: number
  timings: TransactionTimings
  /** Set when the server broke the protocol (wrong number of replies, garbage, reply out of turn). */
  violation?: string
}

interface Waiter {
  resolve: (r: Reply) => void
  reject: (e: Error) => void
  timer?: NodeJS.Timeout
}

const CRLF = '\r\n'

/** Body octets gathered before a write (smaller messages go out whole, with their end mark). */
const BODY_BATCH = 256 * 1024
/** Up to this size gathered pieces are copied into one buffer; above it they go out in one writev, uncopied. */
const COPY_LIMIT = 16 * 1024

/** The synthesized result for a recipient the server never answered for: deferred (421 4.4.2), marked synthetic. */
export function lostResult(index: number, recipient: string, stage: Stage, why: string): RecipientResult {
  return {
    index,
    recipient,
    stage,
    outcome: 'deferred',
    code: 421,
    enhanced: '4.4.2',
    text: why,
    latencyMs: 0,
    synthetic: true,
  }
}

/** An LMTP client session over a connected stream. */
export class LmtpClient {
  /** The greeting, once received. */
  greeting: Reply | undefined
  /** Capabilities from the last LHLO. */
  capabilities: Capabilities | undefined
  /** The LHLO reply lines (for the reply-count marker). */
  private lhloLines: string[] | undefined
  private lhloName = 'localhost'
  private readonly parser: ReplyParser
  private readonly received: Reply[] = []
  private readonly waiters: Waiter[] = []
  private failure: LmtpClientError | undefined
  private readonly timeouts: ClientTimeouts
  private readonly started = Date.now()
  private stream: Duplex
  private readonly sessionId: string
  private detach: () => void = () => {}

  constructor(
    stream: Duplex,
    private readonly options: ClientOptions = {},
  ) {
    this.stream = stream
    this.timeouts = {...DEFAULT_TIMEOUTS, ...options.timeouts}
    this.parser = new ReplyParser({maxLineLength: options.maxReplyLineLength ?? 4096})
    this.sessionId = options.sessionId ?? `c${process.pid}.${Date.now().toString(36)}`
    this.attach(stream)
  }

  /** Waits for the greeting; throws when it is not 220. */
  async start(): Promise<Reply> {
    const greeting = await this.next(this.timeouts.greeting, 'the greeting')
    this.greeting = greeting
    if (this.received.length > 0) throw this.outOfTurn('before any command was sent')
    if (greeting.code !== 220) {
      throw new LmtpClientError('refused', `server refused the session: ${greeting.code} ${replyText(greeting)}`, greeting)
    }
    return greeting
  }

  private attach(stream: Duplex): void {
    const onData = (chunk: Buffer): void => this.onData(chunk)
    const onEnd = (): void => this.lose(new LmtpClientError('connection-lost', 'the server closed the connection'))
    const onError = (err: Error): void =>
      this.lose(new LmtpClientError('connection-lost', `connection error: ${err.message}`))
    stream.on('data', onData)
    stream.on('end', onEnd)
    stream.on('close', onEnd)
    stream.on('error', onError)
    this.detach = () => {
      stream.off('data', onData)
      stream.off('end', onEnd)
      stream.off('close', onEnd)
      stream.off('error', onError)
    }
  }

  private onData(chunk: Buffer): void {
    let replies: Reply[]
    let malformed: ReplySyntaxError | undefined
    try {
      replies = this.parser.push(chunk)
    } catch (err) {
      // The replies before the malformed line are real (a 250 there means delivered): hand them out first.
      malformed = err as ReplySyntaxError
      replies = malformed.complete ?? []
    }
    for (const r of replies) {
      this.options.trace?.('S', formatTrace(r), Date.now() - this.started)
      this.options.emit?.({
        type: 'reply',
        at: Date.now(),
        sessionId: this.sessionId,
        role: 'client',
        code: r.code,
        enhanced: r.enhanced,
        text: replyText(r),
      })
      const w = this.waiters.shift()
      if (w) {
        if (w.timer) clearTimeout(w.timer)
        w.resolve(r)
      } else {
        // A reply nobody asked for yet (pipelined, or a server answering out of turn): keep it, bounded.
        this.received.push(r)
        if (this.received.length > 10_000) {
          this.lose(new LmtpClientError('protocol', 'the server sent far more replies than commands'))
          this.stream.destroy()
        }
      }
    }
    if (malformed) {
      this.lose(new LmtpClientError('protocol', `the server sent something that is not a reply: ${malformed.message}`))
      this.stream.destroy()
    }
  }

  private lose(err: LmtpClientError): void {
    if (this.failure) return
    this.failure = err
    for (const w of this.waiters.splice(0)) {
      if (w.timer) clearTimeout(w.timer)
      w.reject(err)
    }
  }

  /** Replies received but not yet consumed (a server that answers before being asked shows up here). */
  get unsolicited(): number {
    return this.received.length
  }

  /** Waits for the next reply. */
  private next(timeoutMs: number, what: string): Promise<Reply> {
    const ready = this.received.shift()
    if (ready) return Promise.resolve(ready)
    // Pipelined waits are awaited in order; when the connection is lost the later ones are abandoned after
    // the first rejection, so mark every wait as handled: callers that await it still see the error.
    const handled = (p: Promise<Reply>): Promise<Reply> => {
      p.catch(() => undefined)
      return p
    }
    if (this.failure) return handled(Promise.reject(this.failure))
    return handled(new Promise<Reply>((resolve, reject) => {
      const w: Waiter = {resolve, reject}
      w.timer = setTimeout(() => {
        const i = this.waiters.indexOf(w)
        if (i >= 0) this.waiters.splice(i, 1)
        const err = new LmtpClientError('timeout', `no reply from the server for ${what} within ${timeoutMs / 1000}s`)
        // The reply stream is now out of step: give up on the session.
        this.lose(err)
        this.stream.destroy()
        reject(err)
      }, timeoutMs)
      w.timer.unref?.()
      this.waiters.push(w)
    }))
  }

  /** Formats a command for the wire (with its CRLF), reporting it to trace and emit as sent. */
  private lineOf(cmd: OutgoingCommand): string {
    const line = formatCommand(cmd)
    this.report(cmd.verb, line)
    return line + CRLF
  }

  /** Reports a line as sent to trace and emit. */
  private report(verb: string, line: string): void {
    const {trace, emit} = this.options
    if (trace) trace('C', line, Date.now() - this.started)
    if (emit) {
      emit({
        type: 'command',
        at: Date.now(),
        sessionId: this.sessionId,
        role: 'client',
        verb,
        line: line.length > 512 ? line.slice(0, 512) : line,
      })
    }
  }

  private writeLine(cmd: OutgoingCommand): void {
    this.stream.write(this.lineOf(cmd))
  }

  /** Writes bytes, waiting for drain when the socket buffer is full (bounded by the data-block timeout). */
  private async writeBody(data: Buffer): Promise<void> {
    if (data.length === 0) return
    if (this.failure) throw this.failure
    if (this.stream.write(data)) return
    await this.drained()
  }

  /** Writes gathered pieces in one system call: copied together when small, else corked into one writev. */
  private async writePieces(pieces: Buffer[], total: number): Promise<void> {
    if (pieces.length === 1) return this.writeBody(pieces[0]!)
    if (total <= COPY_LIMIT) return this.writeBody(Buffer.concat(pieces, total))
    if (this.failure) throw this.failure
    this.stream.cork()
    let ok = true
    for (const p of pieces) ok = this.stream.write(p)
    this.stream.uncork()
    if (!ok) await this.drained()
  }

  /** Waits for the stream to drain (bounded by the data-block timeout). */
  private async drained(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup()
        const err = new LmtpClientError(
          'timeout',
          `the server accepted no data for ${this.timeouts.dataBlock / 1000}s`,
        )
        this.lose(err)
        this.stream.destroy()
        reject(err)
      }, this.timeouts.dataBlock)
      const onDrain = (): void => {
        cleanup()
        resolve()
      }
      const onClose = (): void => {
        cleanup()
        reject(this.failure ?? new LmtpClientError('connection-lost', 'the server closed the connection'))
      }
      const cleanup = (): void => {
        clearTimeout(timer)
        this.stream.off('drain', onDrain)
        this.stream.off('close', onClose)
      }
      this.stream.on('drain', onDrain)
      this.stream.on('close', onClose)
    })
  }

  /**
   * A reply arrived when none was due (every earlier reply was consumed, or the body was still being sent). The
   * reply stream can no longer be matched to commands (a 250 could be credited to the wrong recipient), so the
   * session ends; returns the error to throw.
   */
  private outOfTurn(when: string): LmtpClientError {
    return this.brokenSession(`the server sent a reply ${when} (out of turn): closing the session`)
  }

  /** Ends the session after a protocol violation; returns the error (the one every waiter now gets). */
  private brokenSession(message: string): LmtpClientError {
    const err = new LmtpClientError('protocol', message)
    this.lose(err)
    this.stream.destroy()
    return this.failure ?? err
  }

  /** Sends one command and waits for its reply. */
  async command(cmd: OutgoingCommand, timeoutMs = this.timeouts.command): Promise<Reply> {
    if (this.failure) throw this.failure
    if (this.received.length > 0) throw this.outOfTurn(`before ${cmd.verb} was sent`)
    this.writeLine(cmd)
    return this.next(timeoutMs, cmd.verb)
  }

  /**
   * Sends one line that is not a formatted command (an AUTH command, a SASL response) and waits for its reply.
   * Transcripts and events show `shown` instead of the line, so credentials never reach them.
   */
  async exchange(line: string, shown: string, timeoutMs = this.timeouts.command): Promise<Reply> {
    if (this.failure) throw this.failure
    if (this.received.length > 0) throw this.outOfTurn(`before ${shown} was sent`)
    if (/[\r\n]/.test(line)) throw new TypeError('a protocol line cannot contain CR or LF')
    this.report('AUTH', shown)
    this.stream.write(line + CRLF)
    return this.next(timeoutMs, shown)
  }

  /** LHLO; returns the capabilities. Throws when the server refuses it. */
  async lhlo(name: string): Promise<Capabilities> {
    this.lhloName = name
    const r = await this.command({verb: 'LHLO', domain: name})
    if (r.code !== 250) {
      throw new LmtpClientError('refused', `server refused LHLO: ${r.code} ${replyText(r)}`, r)
    }
    this.lhloLines = r.lines
    this.capabilities = parseCapabilities(r.lines)
    return this.capabilities
  }

  /**
   * STARTTLS: asks, then lets `upgrade` wrap the current stream (e.g. tls.connect({socket})) and continues
   * over the returned stream. Capabilities are forgotten: call lhlo() again.
   */
  async startTls(upgrade: (plain: Duplex) => Promise<Duplex>): Promise<Reply> {
    const r = await this.command({verb: 'STARTTLS'})
    if (r.code !== 220) throw new LmtpClientError('refused', `server refused STARTTLS: ${r.code} ${replyText(r)}`, r)
    if (this.received.length > 0 || this.parser.buffered > 0) {
      throw new LmtpClientError('protocol', 'the server sent data after its STARTTLS reply (possible injection)')
    }
    this.detach()
    const secure = await upgrade(this.stream)
    this.stream = secure
    this.attach(secure)
    this.capabilities = undefined
    this.lhloLines = undefined
    return r
  }

  /** QUIT and wait for 221 (errors ignored: the session is over either way), then close. */
  async quit(): Promise<void> {
    try {
      if (!this.failure) await this.command({verb: 'QUIT'}, Math.min(this.timeouts.command, 10_000))
    } catch {
      // the server may close without answering
    }
    this.close()
  }

  /** Closes the connection at once. */
  close(): void {
    this.detach()
    this.stream.destroy()
    for (const w of this.waiters.splice(0)) if (w.timer) clearTimeout(w.timer)
  }

  /** True once the connection failed or was closed. */
  get closed(): boolean {
    return this.failure !== undefined || this.stream.destroyed
  }

  /**
   * Runs one transaction: MAIL, the RCPTs (pipelined when offered), then the body by DATA or BDAT, and
   * returns one result per recipient in RCPT order. Recipients refused at RCPT get their RCPT reply; those
   * accepted get their reply after the body; those the server never answered for (connection lost) are
   * deferred with `synthetic: true`. Throws only when the session cannot even start the transaction.
   */
  async send(req: TransactionRequest): Promise<TransactionResult> {
    const caps = this.capabilities
    if (!caps) throw new LmtpClientError('protocol', 'send() before lhlo()')
    if (req.to.length === 0) throw new TypeError('at least one recipient is needed')
    const t0 = Date.now()
    const pipelining = (req.pipelining ?? true) && caps.pipelining
    const bdat = req.bdat === true
    if (bdat && !caps.chunking) throw new LmtpClientError('refused', 'the server does not offer CHUNKING (BDAT)')
    if (this.received.length > 0) throw this.outOfTurn('before MAIL was sent')
    const results: (RecipientResult | undefined)[] = new Array(req.to.length)
    const accepted: number[] = []
    const timings: TransactionTimings = {mailMs: 0, rcptMs: 0, dataMs: 0, deliveryMs: 0, totalMs: 0}
    const result: TransactionResult = {
      mail: {code: 0, lines: []},
      recipients: [],
      bytes: 0,
      timings,
    }
    const finish = (): TransactionResult => {
      result.recipients = results.map(
        (r, i) => r ?? lostResult(i, req.to[i]!, 'DATA', 'no reply from the server for this recipient'),
      )
      for (const r of result.recipients) this.emitResult(r)
      timings.totalMs = Date.now() - t0
      return result
    }

    // Envelope: MAIL and RCPTs pipelined (in one write) when offered. By default DATA waits for their replies,
    // so that no DATA is sent when every recipient was refused (and a broken server's 354 to zero recipients
    // cannot happen); with pipelineData it ends the same group, and its reply is checked below.
    const pipelineData = pipelining && !bdat && req.pipelineData === true
    const mailAt = Date.now()
    const rcptAt: number[] = []
    const pending: Promise<Reply>[] = []
    const envelopeReplies: Reply[] = []
    let dataPending: Promise<Reply> | undefined
    try {
      if (pipelining) {
        let group = this.lineOf({verb: 'MAIL', from: req.from, params: req.params})
        pending.push(this.next(this.timeouts.command, 'MAIL'))
        for (const to of req.to) {
          rcptAt.push(Date.now())
          group += this.lineOf({verb: 'RCPT', to})
          pending.push(this.next(this.timeouts.command, 'RCPT'))
        }
        if (pipelineData) {
          group += this.lineOf({verb: 'DATA'})
          dataPending = this.next(this.timeouts.dataInit, 'DATA')
        }
        this.stream.write(group)
        for (const p of pending) envelopeReplies.push(await p)
      } else {
        this.writeLine({verb: 'MAIL', from: req.from, params: req.params})
        envelopeReplies.push(await this.next(this.timeouts.command, 'MAIL'))
        if (envelopeReplies[0]!.code === 250) {
          for (const to of req.to) {
            rcptAt.push(Date.now())
            this.writeLine({verb: 'RCPT', to})
            envelopeReplies.push(await this.next(this.timeouts.command, 'RCPT'))
          }
        }
      }
    } catch (err) {
      // Lost during the envelope: whoever has no RCPT reply is deferred at RCPT.
      const e = err as LmtpClientError
      result.mail = envelopeReplies[0] ?? {code: 421, enhanced: '4.4.2', lines: [e.message]}
      envelopeReplies.slice(1).forEach((r, i) => {
      this.recordRcpt(results, accepted, req.to, i, r, rcptAt)
    })
      for (let i = 0; i < req.to.length; i++) {
        results[i] ??= lostResult(i, req.to[i]!, 'RCPT', e.message)
      }
      if (e.kind === 'protocol') result.violation = e.message
      return finish()
    }
    result.mail = envelopeReplies[0]!
    timings.mailMs = (rcptAt[0] ?? Date.now()) - mailAt
    // A pipelined DATA: its reply comes next, whatever happened to the envelope.
    let dataReply: Reply | undefined
    let dataLost: LmtpClientError | undefined
    if (dataPending) {
      try {
        dataReply = await dataPending
        result.data = dataReply
      } catch (err) {
        dataLost = err as LmtpClientError
        if (dataLost.kind === 'protocol') result.violation = dataLost.message
      }
      const anyAccepted = envelopeReplies.some((r, i) => i > 0 && r.code >= 200 && r.code < 300)
      if (dataReply && (result.mail.code !== 250 || !anyAccepted) && dataReply.code < 400) {
        // The server would now read a body for a transaction it refused: nothing it says can be trusted.
        const whom = result.mail.code !== 250 ? 'the sender' : 'every recipient'
        result.violation = `the server answered DATA with ${dataReply.code} after refusing ${whom}: closing the session`
        dataLost = this.brokenSession(result.violation)
      }
    }
    if (result.mail.code !== 250) {
      // The sender was refused: every recipient shares that outcome (their RCPTs, if pipelined, got 503s).
      req.to.forEach((to, i) => {
        results[i] = {
          index: i,
          recipient: to,
          stage: 'RCPT',
          outcome: outcomeOf(result.mail.code),
          code: result.mail.code,
          enhanced: result.mail.enhanced,
          text: replyText(result.mail),
          latencyMs: timings.mailMs,
        }
      })
      if (pipelining && !dataLost) await this.resetQuietly()
      return finish()
    }
    envelopeReplies.slice(1).forEach((r, i) => {
      this.recordRcpt(results, accepted, req.to, i, r, rcptAt)
    })
    timings.rcptMs = Date.now() - (rcptAt[0] ?? mailAt)
    if (accepted.length === 0) {
      if (!dataLost) await this.resetQuietly()
      return finish()
    }

    // Body.
    const dataAt = Date.now()
    let endAt: number
    try {
      if (bdat) {
        req.onPhase?.('body')
        const outcome = await this.sendBdat(req, result)
        if (outcome !== 'sent') {
          for (const i of accepted) results[i] = this.dataFailure(i, req.to[i]!, result.data!, dataAt)
          await this.resetQuietly()
          return finish()
        }
      } else {
        if (dataLost) throw dataLost
        if (dataReply && this.received.length > 0) throw this.outOfTurn('after the reply to DATA, before the message data was sent')
        const r = dataReply ?? (await this.command({verb: 'DATA'}, this.timeouts.dataInit))
        result.data = r
        if (r.code < 400 && r.code !== 354) {
          // A 2xx to DATA is not "delivered": no body was sent. Nobody's outcome is known.
          throw this.outOfTurn(`${r.code} to DATA instead of 354`)
        }
        if (r.code !== 354) {
          // No body is sent after a refused DATA.
          for (const i of accepted) results[i] = this.dataFailure(i, req.to[i]!, r, dataAt)
          return finish()
        }
        req.onPhase?.('body')
        // Small pieces are gathered so that a small message (with its end mark, and the LHLO marker) goes out
        // in one write: each write is a system call, and the dominant cost of sending many small messages.
        const enc = new DataEncoder()
        let held: Buffer[] = []
        let heldBytes = 0
        try {
          for await (const piece of req.body) {
            const out = enc.push(toBuffer(piece))
            if (out.length === 0) continue
            held.push(out)
            heldBytes += out.length
            if (heldBytes >= BODY_BATCH) {
              await this.writePieces(held, heldBytes)
              held = []
              heldBytes = 0
            }
          }
        } catch (err) {
          // The body could not be read to its end: what was read goes out as before (never an end of data).
          if (heldBytes > 0 && !this.failure) this.stream.write(Buffer.concat(held, heldBytes))
          throw err
        }
        // Replies that came while the body was being sent (before its end was even written) cannot be about it.
        if (this.received.length > 0) throw this.outOfTurn('before the end of the message data was sent')
        const tail = enc.end()
        held.push(tail)
        heldBytes += tail.length
        if (req.verifyReplyCount) {
          const marker = Buffer.from(this.lineOf({verb: 'LHLO', domain: this.lhloName}))
          held.push(marker)
          heldBytes += marker.length
        }
        await this.writePieces(held, heldBytes)
        result.bytes = enc.messageSize
      }
      endAt = Date.now()
      timings.dataMs = endAt - dataAt
      if (bdat && req.verifyReplyCount) this.writeLine({verb: 'LHLO', domain: this.lhloName})
      req.onPhase?.('replies')
    } catch (err) {
      const e = err as LmtpClientError
      if (e.kind === 'protocol') result.violation = e.message
      for (const i of accepted) results[i] ??= lostResult(i, req.to[i]!, 'DATA', e.message)
      return finish()
    }

    // One reply per accepted recipient, in RCPT order; the timer restarts after each.
    for (let k = 0; k < accepted.length; k++) {
      const i = accepted[k]!
      let r: Reply
      try {
        r = await this.next(this.timeouts.dataEnd, `recipient ${k + 1} of ${accepted.length} after the body`)
      } catch (err) {
        const e = err as LmtpClientError
        if (e.kind === 'protocol') result.violation = e.message
        for (const j of accepted.slice(k)) {
          results[j] = lostResult(
            j,
            req.to[j]!,
            'DATA',
            e.kind === 'connection-lost'
              ? `connection lost after ${k} of ${accepted.length} replies`
              : e.message,
          )
        }
        break
      }
      if (req.verifyReplyCount && this.isLhloReply(r)) {
        result.violation = `the server sent ${k} replies after the body for ${accepted.length} accepted recipients; RFC 2033 requires one per recipient`
        for (const j of accepted.slice(k)) {
          results[j] = lostResult(j, req.to[j]!, 'DATA', 'the server sent no reply for this recipient')
        }
        timings.deliveryMs = Date.now() - endAt
        return finish()
      }
      results[i] = {
        index: i,
        recipient: req.to[i]!,
        stage: 'DATA',
        outcome: outcomeOf(r.code),
        code: r.code,
        enhanced: r.enhanced,
        text: replyText(r),
        latencyMs: Date.now() - endAt,
      }
    }
    timings.deliveryMs = Date.now() - endAt
    // Garbage right after the last reply closes the session before the marker is read: still a violation.
    if (req.verifyReplyCount && this.failure?.kind === 'protocol') result.violation ??= this.failure.message
    if (req.verifyReplyCount && !this.closed) {
      try {
        const marker = await this.next(this.timeouts.command, 'LHLO after the body')
        if (!this.isLhloReply(marker)) {
          result.violation = `the server sent more replies after the body than the ${accepted.length} accepted recipients`
          // Drain until the marker so the session stays usable.
          for (let n = 0; n < 1000 && !this.isLhloReply(await this.next(this.timeouts.command, 'LHLO')); n++) {}
        }
      } catch (err) {
        const e = err as LmtpClientError
        result.violation ??= `no reply to LHLO after the body: ${e.message}`
      }
    }
    return finish()
  }

  private recordRcpt(
    results: (RecipientResult | undefined)[],
    accepted: number[],
    to: string[],
    i: number,
    r: Reply,
    rcptAt: number[],
  ): void {
    if (r.code >= 200 && r.code < 300) {
      accepted.push(i)
      return
    }
    results[i] = {
      index: i,
      recipient: to[i]!,
      stage: 'RCPT',
      outcome: outcomeOf(r.code),
      code: r.code,
      enhanced: r.enhanced,
      text: replyText(r),
      latencyMs: Date.now() - (rcptAt[i] ?? Date.now()),
    }
  }

  private dataFailure(i: number, recipient: string, r: Reply, since: number): RecipientResult {
    return {
      index: i,
      recipient,
      stage: 'DATA',
      outcome: outcomeOf(r.code),
      code: r.code,
      enhanced: r.enhanced,
      text: replyText(r),
      latencyMs: Date.now() - since,
    }
  }

  private isLhloReply(r: Reply): boolean {
    const expect = this.lhloLines
    if (!expect || r.code !== 250 || r.lines.length !== expect.length || r.lines.length < 2) return false
    return r.lines.slice(1).every((l, i) => l === expect[i + 1])
  }

  /** RSET after a failed transaction; a failure here does not matter to the result. */
  private async resetQuietly(): Promise<void> {
    try {
      if (!this.closed) await this.command({verb: 'RSET'})
    } catch {
      // the result already says what happened
    }
  }

  /**
   * Streams the body as BDAT chunks (line ends normalised, no stuffing). Chunk replies are read as they
   * come when pipelining, else after each chunk. Returns 'sent' after `BDAT n LAST`, or 'refused' when a
   * chunk was refused (result.data holds that reply).
   */
  private async sendBdat(req: TransactionRequest, result: TransactionResult): Promise<'sent' | 'refused'> {
    const enc = new DataEncoder({dotStuff: false})
    const chunkSize = req.chunkSize ?? 1024 * 1024
    const pipelining = (req.pipelining ?? true) && this.capabilities!.pipelining
    const outstanding: Promise<Reply>[] = []
    let held: Buffer[] = []
    let heldBytes = 0
    const checkReplies = async (all: boolean): Promise<boolean> => {
      while (outstanding.length > (all ? 0 : pipelining ? 8 : 0)) {
        const r = await outstanding.shift()!
        if (r.code !== 250) {
          result.data = r
          // Read (and drop) the replies of chunks already in flight.
          for (const p of outstanding.splice(0)) await p.catch(() => undefined)
          return false
        }
      }
      return true
    }
    const flushChunk = async (last: boolean): Promise<void> => {
      const data = held.length === 1 ? held[0]! : Buffer.concat(held, heldBytes)
      held = []
      heldBytes = 0
      this.writeLine({verb: 'BDAT', size: data.length, last})
      await this.writeBody(data)
      if (!last) outstanding.push(this.next(this.timeouts.dataBlock, 'BDAT chunk'))
    }
    for await (const piece of req.body) {
      const out = enc.push(toBuffer(piece))
      if (out.length === 0) continue
      held.push(out)
      heldBytes += out.length
      if (heldBytes >= chunkSize) {
        await flushChunk(false)
        if (!(await checkReplies(false))) return 'refused'
      }
    }
    const tail = enc.end()
    if (tail.length > 0) {
      held.push(tail)
      heldBytes += tail.length
    }
    if (!(await checkReplies(true))) return 'refused'
    await flushChunk(true)
    result.bytes = enc.messageSize
    return 'sent'
  }

  private emitResult(r: RecipientResult): void {
    this.options.emit?.({
      type: 'recipient.result',
      at: Date.now(),
      sessionId: this.sessionId,
      role: 'client',
      transactionId: this.sessionId,
      index: r.index,
      recipient: r.recipient,
      outcome: r.outcome,
      code: r.code,
      enhanced: r.enhanced,
      text: r.text,
      bytes: 0,
      latencyMs: r.latencyMs,
    })
  }
}

function toBuffer(piece: Buffer | Uint8Array | string): Buffer {
  if (Buffer.isBuffer(piece)) return piece
  return typeof piece === 'string' ? Buffer.from(piece) : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength)
}

/** One reply as transcript text (multi-line replies joined with newlines, as sent). */
function formatTrace(r: Reply): string {
  return r.lines
    .map((l, i) => `${r.code}${i === r.lines.length - 1 ? ' ' : '-'}${r.enhanced ? `${r.enhanced} ` : ''}${l}`)
    .join('\n')
}
