/**
 * The LMTP client: drives any connected byte stream (a TCP or Unix socket, or a TLS socket after STARTTLS)
 * through greeting, LHLO and transactions, and returns one result per recipient in RCPT order. It keeps a
 * queue of expected replies, so pipelined commands and the N replies after the body are matched exactly.
 * It opens no sockets and reads no files: the caller supplies the stream and the message bytes.
 */
import type {Duplex} from 'node:stream'
import {type Capabilities, parseCapabilities} from './capabilities.js'
import {type OutgoingCommand, formatCommand} from './command.js'
import type {LmtpEvent} from './events.js'
import {type ClientTimeouts, type ClientTimer, LmtpClientError} from './client-error.js'
import {type Reply, ReplyParser, type ReplySyntaxError, replyText} from './reply.js'
import {
  type RecipientResult,
  type TransactionRequest,
  type TransactionResult,
  runTransaction,
} from './transaction.js'

export {type ClientErrorKind, type ClientTimeouts, type ClientTimer, LmtpClientError} from './client-error.js'
export {
  type RecipientResult,
  type Stage,
  type TransactionRequest,
  type TransactionResult,
  type TransactionTimings,
  lostResult,
  recipientResult,
  isLhloMarkerReply,
  lhloKeywords,
} from './transaction.js'

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

interface Waiter {
  resolve: (r: Reply) => void
  reject: (e: Error) => void
  timer?: NodeJS.Timeout
}

const CRLF = '\r\n'

/** Up to this size gathered pieces are copied into one buffer; above it they go out in one writev, uncopied. */
const COPY_LIMIT = 16 * 1024

/** An LMTP client session over a connected stream. */
export class LmtpClient {
  /** The greeting, once received. */
  greeting: Reply | undefined
  /** Capabilities from the last LHLO. */
  capabilities: Capabilities | undefined
  /** The LHLO reply lines (for the reply-count marker). */
  private lhloLines: string[] | undefined
  private lhloName = 'localhost'
  private quitSent = false
  private readonly parser: ReplyParser
  private readonly received: Reply[] = []
  private readonly waiters: Waiter[] = []
  private failure: LmtpClientError | undefined
  /** The client's waits, in milliseconds. */
  readonly timeouts: ClientTimeouts
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
    const greeting = await this.expectReply('greeting', 'the greeting')
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

  /** The name given in the last LHLO. */
  get lhloNameSent(): string {
    return this.lhloName
  }

  /** The lines of the last 250 LHLO reply (for recognising a pipelined LHLO's reply). */
  get lhloReplyLines(): readonly string[] | undefined {
    return this.lhloLines
  }

  /** Why the session failed, once it did. */
  get failed(): LmtpClientError | undefined {
    return this.failure
  }

  /**
   * Waits for the next reply, on timer `timer` (or `timeoutMs`); every wait is queued in order, so pipelined
   * commands get their replies in turn. A timeout ends the session (the reply stream is out of step).
   */
  expectReply(timer: ClientTimer, what: string, timeoutMs = this.timeouts[timer]): Promise<Reply> {
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
        const err = new LmtpClientError('timeout', `no reply from the server for ${what} within ${timeoutMs / 1000}s`, undefined, timer)
        // The reply stream is now out of step: give up on the session.
        this.lose(err)
        this.stream.destroy()
        reject(err)
      }, timeoutMs)
      w.timer.unref?.()
      this.waiters.push(w)
    }))
  }

  /** Formats a command for the wire (with its CRLF), reporting it to trace and emit as sent; the caller writes it. */
  formatLine(cmd: OutgoingCommand): string {
    if (cmd.verb === 'QUIT') this.quitSent = true
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

  /** Writes one command (no wait for its reply). */
  writeLine(cmd: OutgoingCommand): void {
    this.stream.write(this.formatLine(cmd))
  }

  /** Writes command lines already formatted by formatLine (one pipelined group, one write). */
  writeRaw(data: string | Buffer): void {
    if (!this.stream.destroyed) this.stream.write(data)
  }

  /** Writes bytes, waiting for drain when the socket buffer is full (bounded by the data-block timeout). */
  async writeData(data: Buffer): Promise<void> {
    if (data.length === 0) return
    if (this.failure) throw this.failure
    if (this.stream.write(data)) return
    await this.drained()
  }

  /** Writes gathered pieces in one system call: copied together when small, else corked into one writev. */
  async writeGathered(pieces: Buffer[], total: number): Promise<void> {
    if (pieces.length === 1) return this.writeData(pieces[0]!)
    if (total <= COPY_LIMIT) return this.writeData(Buffer.concat(pieces, total))
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
          undefined,
          'dataBlock',
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
  outOfTurn(when: string): LmtpClientError {
    return this.brokenSession(`the server sent a reply ${when} (out of turn): closing the session`)
  }

  /** Ends the session after a protocol violation; returns the error (the one every waiter now gets). */
  brokenSession(message: string): LmtpClientError {
    const err = new LmtpClientError('protocol', message)
    this.lose(err)
    this.stream.destroy()
    return this.failure ?? err
  }

  /** Sends one command and waits for its reply. */
  async command(cmd: OutgoingCommand, timer: ClientTimer = 'command', timeoutMs = this.timeouts[timer]): Promise<Reply> {
    if (this.failure) throw this.failure
    if (this.received.length > 0) throw this.outOfTurn(`before ${cmd.verb} was sent`)
    this.writeLine(cmd)
    return this.expectReply(timer, cmd.verb, timeoutMs)
  }

  /**
   * Sends one line that is not a formatted command (an AUTH command, a SASL response) and waits for its reply.
   * Transcripts and events show `shown` instead of the line, so credentials never reach them.
   */
  async exchange(line: string, shown: string): Promise<Reply> {
    if (this.failure) throw this.failure
    if (this.received.length > 0) throw this.outOfTurn(`before ${shown} was sent`)
    if (/[\r\n]/.test(line)) throw new TypeError('a protocol line cannot contain CR or LF')
    this.report('AUTH', shown)
    this.stream.write(line + CRLF)
    return this.expectReply('command', shown)
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

  /** QUIT and wait for 221 (errors ignored: the session is over either way), then close. Once QUIT was sent, only closes. */
  async quit(): Promise<void> {
    try {
      if (!this.failure && !this.quitSent) await this.command({verb: 'QUIT'}, 'command', Math.min(this.timeouts.command, 10_000))
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

  /** True once the connection failed or was closed, or QUIT was sent: no further transaction can run. */
  get closed(): boolean {
    return this.failure !== undefined || this.stream.destroyed || this.quitSent
  }

  /**
   * Runs one transaction (see transaction.ts): MAIL, the RCPTs (pipelined when offered), then the body by DATA or
   * BDAT, and returns one result per recipient in RCPT order. Recipients refused at RCPT get their RCPT reply;
   * those accepted get their reply after the body; those the server never answered for (connection lost) are
   * deferred with `synthetic: true`. Throws only when the session cannot even start the transaction.
   */
  send(req: TransactionRequest): Promise<TransactionResult> {
    return runTransaction(this, req)
  }

  /** RSET after a failed transaction; a failure here does not matter to the result. */
  async resetQuietly(): Promise<void> {
    try {
      if (!this.closed) await this.command({verb: 'RSET'})
    } catch {
      // the result already says what happened
    }
  }

  /** Reports a recipient result as an event. */
  reportResult(r: RecipientResult): void {
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

/** One reply as transcript text (multi-line replies joined with newlines, as sent). */
function formatTrace(r: Reply): string {
  return r.lines
    .map((l, i) => `${r.code}${i === r.lines.length - 1 ? ' ' : '-'}${r.enhanced ? `${r.enhanced} ` : ''}${l}`)
    .join('\n')
}
