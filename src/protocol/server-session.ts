/**
 * The server side of one LMTP session: an explicit state machine fed with the bytes a client sends and
 * answering with replies. It owns the LMTP rules (sequence, limits, one reply per accepted recipient after the
 * body, in RCPT order); delivery is behind the Backend; sockets, timers and TLS belong to the caller, reached
 * through SessionIO. No I/O of its own, so transcript tests drive it directly.
 */
import type {Path} from './address.js'
import {type AcceptedRecipient, type Backend, BackendError, type DeliveryResult, type Envelope, type SessionInfo, type Spool, causeOf} from './backend.js'
import {formatCapabilities} from './capabilities.js'
import {type Command, type MailParams, parseCommand} from './command.js'
import {type LmtpEvent, type SessionEnd, outcomeOf} from './events.js'
import {MessageIdScanner} from './message-id.js'
import {R, perRecipient} from './replies.js'
import {type Reply, formatReply, reply, replyText, withText} from './reply.js'
import {DataDecoder} from './wire/dot-stuffing.js'
import {LineReader} from './wire/line-reader.js'

/**
 * Where the session is. GREETED: greeting sent, LHLO needed. READY: LHLO done, no transaction. MAIL: sender
 * accepted. RCPT: at least one recipient accepted. DATA: receiving a DATA body. BDAT: inside a BDAT
 * transaction (between or within chunks). DELIVERING: body complete, per-recipient replies being sent.
 * CLOSED: the session is over.
 */
export type SessionState = 'GREETED' | 'READY' | 'MAIL' | 'RCPT' | 'DATA' | 'BDAT' | 'DELIVERING' | 'CLOSED'

/** Limits and identity of a server session. */
export interface SessionOptions {
  sessionId: string
  hostname: string
  /** Peer as text (`127.0.0.1:5000`, `unix`). */
  peer: string
  /** Longest command line, CRLF included (default 2048). */
  maxLineLength?: number
  /** Largest message in octets, advertised as SIZE (default 50 MiB). */
  maxMessageSize?: number
  /** Most accepted recipients per transaction (default 1000; never below 100 per RFC 5321). */
  maxRecipients?: number
  /** Protocol errors (500/501/503/555) tolerated before 421 4.7.0 and close (default 10). */
  maxErrors?: number
  /** Offer STARTTLS (TCP with a certificate, before TLS). */
  startTlsAvailable?: boolean
  /** Answer VRFY with 252 (true, default) or 502 (false). */
  vrfy?: boolean
}

/** What the session needs from its transport. */
export interface SessionIO {
  /** Writes reply bytes (already formatted). */
  write(data: string): void
  /** Ends the connection after everything written so far has been sent. */
  close(): void
  /** Upgrades the transport to TLS (after the 220 went out); resolves with the negotiated parameters. */
  startTls?(): Promise<{protocol: string; cipher: string}>
}

interface Transaction {
  id: string
  from: Path
  params: MailParams
  recipients: AcceptedRecipient[]
  via?: 'DATA' | 'BDAT'
  spool?: Spool
  /** A whole-message failure decided while receiving (size limit, bare line ending, spool error). */
  failure?: Reply
  /** The local cause of a spool failure (for the logs). */
  failureCause?: string
  /** Octets received so far through BDAT. */
  bdatBytes: number
  /** BDAT line-ending scan: was the previous octet CR. */
  bdatPrevCr: boolean
  /** Reads the Message-ID as the body streams (for the logs). */
  messageId: MessageIdScanner
}

/** A BDAT chunk being read: how many octets remain, its announced size, and whether it is LAST. */
interface ChunkRead {
  remaining: number
  size: number
  last: boolean
}

/**
 * The session's phase, carrying the data that phase owns; process() switches on it. `skipping` reads and
 * throws away the octets of a BDAT chunk that was refused (or that has no accepted recipient to go to), then
 * returns to the phase it interrupted; `refusal` is the reply owed once the chunk is consumed. `delivering` and
 * `closed` keep the transaction until it has been ended (a session closed mid-transaction keeps it for abort()).
 */
type Phase =
  | {kind: 'greeted'}
  | {kind: 'ready'}
  | {kind: 'mail'; tx: Transaction}
  | {kind: 'rcpt'; tx: Transaction}
  | {kind: 'data'; tx: Transaction; decoder: DataDecoder}
  | {kind: 'bdat'; tx: Transaction; chunk?: ChunkRead}
  | {kind: 'skipping'; chunk: ChunkRead; refusal?: Reply; resume: Phase}
  | {kind: 'delivering'; tx?: Transaction}
  | {kind: 'closed'; tx?: Transaction}

/** A phase in which BDAT chunk octets are being read. */
type ReadingChunk = Extract<Phase, {kind: 'skipping'}> | (Extract<Phase, {kind: 'bdat'}> & {chunk: ChunkRead})

/** True while the octets of a BDAT chunk are being read (they are not command lines). */
function isReadingChunk(phase: Phase): phase is ReadingChunk {
  return phase.kind === 'skipping' || (phase.kind === 'bdat' && phase.chunk !== undefined)
}

/** The reported state of a phase (a skipped chunk does not change it). */
function stateOf(phase: Phase): SessionState {
  return phase.kind === 'skipping' ? stateOf(phase.resume) : (phase.kind.toUpperCase() as SessionState)
}

/** The open transaction of a phase, if any. */
function txOf(phase: Phase): Transaction | undefined {
  if (phase.kind === 'skipping') return txOf(phase.resume)
  return 'tx' in phase ? phase.tx : undefined
}

/** The phase once its transaction is reset: `greeted` and `closed` stay (without it), the others become `ready`. */
function withoutTx(phase: Phase): Phase {
  if (phase.kind === 'closed') return {kind: 'closed'}
  return phase.kind === 'greeted' ? phase : {kind: 'ready'}
}

const EMPTY = Buffer.alloc(0)
let transactionCounter = 0

/** One LMTP server session. Feed it bytes with receive(); it writes replies through SessionIO. */
export class ServerSession {
  private phase: Phase = {kind: 'greeted'}
  private readonly lines: LineReader
  private errors = 0
  private lhloName = ''
  private tls = false
  private closeAfterTransaction = false
  private ended: SessionEnd | undefined
  private queue: Promise<void> = Promise.resolve()
  private readonly maxMessageSize: number
  private readonly maxRecipients: number
  private readonly maxErrors: number
  /** Octets received and sent, for the close event. */
  bytesIn = 0
  bytesOut = 0

  constructor(
    private readonly options: SessionOptions,
    private readonly backend: Backend,
    private readonly io: SessionIO,
    private readonly emit: (event: LmtpEvent) => void = () => {},
  ) {
    this.lines = new LineReader({maxLength: options.maxLineLength ?? 2048})
    this.maxMessageSize = options.maxMessageSize ?? 50 * 1024 * 1024
    this.maxRecipients = Math.max(100, options.maxRecipients ?? 1000)
    this.maxErrors = options.maxErrors ?? 10
  }

  /** The current state. */
  get state(): SessionState {
    return stateOf(this.phase)
  }

  /** True while a transaction is open (between MAIL and the last per-recipient reply). */
  get inTransaction(): boolean {
    return txOf(this.phase) !== undefined
  }

  /** Sends the 220 greeting. */
  greet(): void {
    this.send(reply(220, undefined, `${this.options.hostname} LMTP ready`))
  }

  /**
   * Feeds received bytes. Calls are processed strictly in order; the returned promise resolves when this
   * chunk is fully handled (callers pause reading until then: that is the backpressure towards the client).
   */
  receive(chunk: Buffer): Promise<void> {
    this.bytesIn += chunk.length
    this.queue = this.queue.then(() => this.process(chunk))
    return this.queue
  }

  /**
   * How the session ended (once it has): set by the session when it closes the connection, or by
   * {@link abort} when the client went away.
   */
  get end(): SessionEnd | undefined {
    return this.ended
  }

  /**
   * The connection is gone: abort any transaction and throw its spool away. `end` is how it ended when the
   * session did not close it itself (default: the client closed, inside a message body or not).
   */
  async abort(end?: SessionEnd): Promise<void> {
    await this.queue.catch(() => {})
    if (this.ended === undefined) {
      const p = this.phase
      // Inside a body: DATA or BDAT under way (tx.via is set), or the octets of a refused chunk being read.
      const inBody = p.kind === 'skipping' || txOf(p)?.via !== undefined
      this.ended = end ?? (inBody && p.kind !== 'delivering' ? 'client-dropped-in-body' : 'client-closed')
    }
    await this.resetTransaction(true)
    this.phase = {kind: 'closed'}
  }

  /** The idle timer fired: 421 4.4.2 and close. */
  idleTimeout(): void {
    if (this.phase.kind === 'closed') return
    this.send(R.idleTimeout)
    this.close('idle-timeout')
  }

  /**
   * The server is stopping: an idle session gets 421 4.3.2 and is closed now; a session inside a
   * transaction is closed with 421 4.3.2 once its transaction has finished. Returns true when closed now.
   */
  shutdown(): boolean {
    if (this.phase.kind === 'closed') return true
    if (txOf(this.phase) === undefined && this.phase.kind !== 'delivering') {
      this.send(R.shuttingDown)
      this.close('shutdown')
      return true
    }
    this.closeAfterTransaction = true
    return false
  }

  /** The current phase, read afresh (while this call awaited, another one may have moved it). */
  private current(): Phase {
    return this.phase
  }

  private info(): SessionInfo {
    return {
      sessionId: this.options.sessionId,
      peer: this.options.peer,
      lhlo: this.lhloName,
      tls: this.tls,
      hostname: this.options.hostname,
    }
  }

  private send(r: Reply): void {
    if (this.phase.kind === 'closed') return
    const text = formatReply(r)
    this.bytesOut += Buffer.byteLength(text)
    this.io.write(text)
    this.emit({
      type: 'reply',
      at: Date.now(),
      sessionId: this.options.sessionId,
      role: 'server',
      code: r.code,
      enhanced: r.enhanced,
      text: replyText(r),
    })
  }

  private close(end: SessionEnd): void {
    if (this.phase.kind === 'closed') return
    this.phase = {kind: 'closed', tx: txOf(this.phase)}
    this.ended ??= end
    this.io.close()
  }

  /** A protocol error: reply, and close with 421 4.7.0 once the client has made too many. */
  private fail(r: Reply): void {
    this.send(r)
    this.errors++
    if (this.errors >= this.maxErrors) {
      this.send(R.tooManyErrors)
      this.close('too-many-errors')
    }
  }

  private async process(chunk: Buffer): Promise<void> {
    let buf = chunk
    while (this.phase.kind !== 'closed') {
      const phase = this.phase
      if (isReadingChunk(phase)) {
        if (buf.length === 0) return
        buf = await this.readChunk(phase, buf)
      } else if (phase.kind === 'data') {
        if (buf.length === 0) return
        buf = await this.readData(phase, buf)
      } else {
        if (buf.length > 0) {
          this.lines.push(buf)
          buf = EMPTY
        }
        const ev = this.lines.next()
        if (ev === undefined) return
        if (ev.kind === 'overlong') {
          this.fail(R.lineTooLong)
          continue
        }
        await this.onLine(ev.line.toString('utf8'))
        // The command switched to body mode: what was buffered after its line is body.
        if (isReadingChunk(this.phase) || this.phase.kind === 'data') buf = this.lines.take()
      }
    }
  }

  private async onLine(line: string): Promise<void> {
    const parsed = parseCommand(line)
    const verb = parsed.ok ? parsed.command.verb : (parsed.verb ?? line.split(' ', 1)[0]!.toUpperCase().slice(0, 16))
    this.emit({
      type: 'command',
      at: Date.now(),
      sessionId: this.options.sessionId,
      role: 'server',
      verb,
      line: line.replace(/[\x00-\x1f\x7f]/g, ' ').slice(0, 512),
    })
    if (!parsed.ok) {
      // A refused BDAT whose size we could read still carries its octets: consume them to stay in sync.
      if (parsed.bdatSize !== undefined) {
        const skip = this.skipChunk(parsed.bdatSize, false, parsed.reply)
        if (parsed.bdatSize === 0) await this.finishChunk(skip)
        return
      }
      this.fail(parsed.reply)
      return
    }
    await this.onCommand(parsed.command)
  }

  private async onCommand(cmd: Command): Promise<void> {
    switch (cmd.verb) {
      case 'NOOP':
        this.send(R.ok)
        return
      case 'QUIT':
        this.send(R.closing)
        await this.resetTransaction(true)
        this.close('quit')
        return
      case 'RSET':
        await this.resetTransaction(true)
        if (this.phase.kind !== 'greeted') this.phase = {kind: 'ready'}
        this.send(R.resetOk)
        return
      case 'VRFY':
        this.send(this.options.vrfy === false ? R.vrfyDisabled : R.cannotVerify)
        return
      case 'HELO':
      case 'EHLO':
        this.fail(R.heloNotLmtp)
        return
      case 'LHLO':
        await this.resetTransaction(true)
        this.lhloName = cmd.domain
        this.phase = {kind: 'ready'}
        this.send({
          code: 250,
          lines: [
            this.options.hostname,
            ...formatCapabilities({maxSize: this.maxMessageSize, startTls: this.canStartTls()}),
          ],
        })
        this.emit({type: 'lhlo', at: Date.now(), sessionId: this.options.sessionId, role: 'server', name: cmd.domain})
        return
      case 'STARTTLS':
        await this.startTls()
        return
      case 'MAIL':
        await this.onMail(cmd.from, cmd.params)
        return
      case 'RCPT':
        await this.onRcpt(cmd.to)
        return
      case 'DATA':
        await this.onData()
        return
      case 'BDAT':
        await this.onBdat(cmd.size, cmd.last)
        return
    }
  }

  private canStartTls(): boolean {
    return this.options.startTlsAvailable === true && !this.tls && this.io.startTls !== undefined
  }

  private async startTls(): Promise<void> {
    if (this.tls) return this.fail(R.tlsAlreadyActive)
    if (this.phase.kind === 'greeted') return this.fail(R.badSequenceLhloFirst)
    if (!this.canStartTls()) return this.fail(R.startTlsUnavailable)
    this.send(R.readyForTls)
    // Anything pipelined after STARTTLS arrived in clear text and must never be obeyed (CVE-2011-0411).
    this.lines.take()
    await this.resetTransaction(true)
    try {
      const params = await this.io.startTls!()
      this.tls = true
      this.phase = {kind: 'greeted'}
      this.lhloName = ''
      this.emit({type: 'tls', at: Date.now(), sessionId: this.options.sessionId, role: 'server', ...params})
    } catch {
      this.close('tls-failed')
    }
  }

  private async onMail(from: Path, params: MailParams): Promise<void> {
    if (this.phase.kind === 'greeted') return this.fail(R.badSequenceLhloFirst)
    if (txOf(this.phase)) return this.fail(R.nestedMail)
    if (from.isUtf8 && !params.smtputf8) return this.fail(R.nonAsciiSender)
    if (params.size !== undefined && params.size > this.maxMessageSize) {
      this.send(R.messageTooBig)
      return
    }
    const id = `${this.options.sessionId}.${++transactionCounter}`
    const tx: Transaction = {id, from, params, recipients: [], bdatBytes: 0, bdatPrevCr: false, messageId: new MessageIdScanner()}
    this.phase = {kind: 'mail', tx}
    this.send(R.senderOk)
    this.emit({
      type: 'transaction.started',
      at: Date.now(),
      sessionId: this.options.sessionId,
      role: 'server',
      transactionId: id,
      from: from.address,
      size: params.size,
    })
  }

  private async onRcpt(to: Path): Promise<void> {
    if (this.phase.kind === 'greeted') return this.fail(R.badSequenceLhloFirst)
    const tx = txOf(this.phase)
    if (!tx) return this.fail(R.mailFirst)
    if (tx.via) return this.fail(R.rcptAfterBody)
    const refuse = (r: Reply, mailbox?: string): void => {
      this.send(r)
      this.emit({
        type: 'recipient.rejected',
        at: Date.now(),
        sessionId: this.options.sessionId,
        role: 'server',
        transactionId: tx.id,
        recipient: to.address,
        mailbox,
        code: r.code,
        enhanced: r.enhanced,
        text: replyText(r),
      })
    }
    if (to.isUtf8 && !tx.params.smtputf8) return refuse(R.nonAsciiRecipient)
    if (tx.recipients.length >= this.maxRecipients) return refuse(R.tooManyRecipients)
    let check: Awaited<ReturnType<Backend['checkRecipient']>>
    try {
      check = await this.backend.checkRecipient(to, this.info())
    } catch {
      check = {ok: false, reply: R.localError}
    }
    if (!check.ok) return refuse(check.reply, check.mailbox)
    const index = tx.recipients.length
    tx.recipients.push({index, path: to, mailbox: check.mailbox})
    this.phase = {kind: 'rcpt', tx}
    this.send(R.recipientOk)
    this.emit({
      type: 'recipient.accepted',
      at: Date.now(),
      sessionId: this.options.sessionId,
      role: 'server',
      transactionId: tx.id,
      index,
      recipient: to.address,
    })
  }

  private async openSpool(tx: Transaction): Promise<boolean> {
    try {
      tx.spool = await this.backend.openSpool(this.envelope(tx), this.info())
      return true
    } catch (err) {
      tx.failure = replyForError(err)
      tx.failureCause = causeOf(err)
      return false
    }
  }

  private envelope(tx: Transaction): Envelope {
    return {transactionId: tx.id, from: tx.from, params: tx.params, recipients: tx.recipients}
  }

  private async onData(): Promise<void> {
    if (this.phase.kind === 'greeted') return this.fail(R.badSequenceLhloFirst)
    const tx = txOf(this.phase)
    if (!tx) return this.fail(R.mailFirst)
    if (tx.via === 'BDAT') return this.fail(R.mixedDataBdat)
    if (tx.recipients.length === 0) return this.fail(R.noValidRecipients)
    if (!(await this.openSpool(tx))) {
      // DATA itself failed: one reply, the transaction stays open for another try.
      this.send(tx.failure ?? R.localError)
      tx.failure = undefined
      return
    }
    tx.via = 'DATA'
    this.phase = {kind: 'data', tx, decoder: new DataDecoder({maxSize: this.maxMessageSize})}
    this.send(R.startData)
  }

  private async readData({tx, decoder}: {tx: Transaction; decoder: DataDecoder}, buf: Buffer): Promise<Buffer> {
    const result = decoder.push(buf)
    for (const part of result.body) {
      if (tx.failure || decoder.bareCr || decoder.bareLf) break
      await this.spoolWrite(tx, part)
    }
    if (!result.done) return EMPTY
    if (!tx.failure) {
      if (decoder.oversize) tx.failure = R.messageTooBig
      else if (decoder.bareCr || decoder.bareLf) tx.failure = R.bareLineEnding
    }
    await this.endOfData(tx, decoder.size)
    return result.rest
  }

  private async spoolWrite(tx: Transaction, part: Buffer): Promise<void> {
    tx.messageId.push(part)
    try {
      await tx.spool!.write(part)
    } catch (err) {
      tx.failure = replyForError(err)
      tx.failureCause = causeOf(err)
    }
  }

  private async onBdat(size: number, last: boolean): Promise<void> {
    let reading: ReadingChunk
    const tx = txOf(this.phase)
    if (this.phase.kind === 'greeted') reading = this.skipChunk(size, last, R.badSequenceLhloFirst)
    else if (!tx) reading = this.skipChunk(size, last, R.mailFirst)
    else if (tx.via === 'DATA') reading = this.skipChunk(size, last, R.mixedDataBdat)
    else if (tx.recipients.length === 0) {
      // RFC 2033: with no accepted recipient there is nobody to answer for after LAST, so LAST gets no reply;
      // a non-LAST chunk gets the one reply it is owed.
      reading = this.skipChunk(size, last, last ? undefined : R.noValidRecipients)
    } else {
      if (!tx.spool) await this.openSpool(tx)
      tx.via = 'BDAT'
      if (!tx.failure && tx.bdatBytes + size > this.maxMessageSize) tx.failure = R.messageTooBig
      reading = {kind: 'bdat', tx, chunk: {remaining: size, size, last}}
      this.phase = reading
    }
    if (size === 0) await this.finishChunk(reading)
  }

  /** Enters `skipping` for a chunk whose octets are read and thrown away, then back to the current phase. */
  private skipChunk(size: number, last: boolean, refusal: Reply | undefined): ReadingChunk {
    const skip: ReadingChunk = {kind: 'skipping', chunk: {remaining: size, size, last}, refusal, resume: this.phase}
    this.phase = skip
    return skip
  }

  private async readChunk(reading: ReadingChunk, buf: Buffer): Promise<Buffer> {
    const c = reading.chunk
    const n = Math.min(c.remaining, buf.length)
    const part = buf.subarray(0, n)
    c.remaining -= n
    if (reading.kind === 'bdat' && !reading.tx.failure) {
      const tx = reading.tx
      tx.bdatBytes += n
      if (hasBareLineEnding(part, tx)) tx.failure = R.bareLineEnding
      else await this.spoolWrite(tx, part)
    }
    if (c.remaining === 0) await this.finishChunk(reading)
    return buf.subarray(n)
  }

  private async finishChunk(reading: ReadingChunk): Promise<void> {
    const c = reading.chunk
    if (reading.kind === 'skipping') {
      if (this.current() === reading) this.phase = reading.resume
      if (reading.refusal) return this.fail(reading.refusal)
      // BDAT LAST with no accepted recipient: the transaction ends without a reply.
      await this.resetTransaction(true)
      if (this.phase.kind !== 'greeted') this.phase = {kind: 'ready'}
      return
    }
    const tx = reading.tx
    // The chunk is done (unless the session was closed while its last octets were written).
    if (this.current() === reading) this.phase = {kind: 'bdat', tx}
    if (!c.last) {
      this.send(tx.failure ?? R.chunkOk(c.size))
      return
    }
    // A CR ending the last chunk has no LF after it.
    if (!tx.failure && tx.bdatPrevCr) tx.failure = R.bareLineEnding
    await this.endOfData(tx, tx.bdatBytes)
  }

  /** End of the body: N replies, one per accepted recipient, in RCPT order, each as soon as it is decided. */
  private async endOfData(tx: Transaction, size: number): Promise<void> {
    this.phase = {kind: 'delivering', tx}
    const endAt = Date.now()
    this.emit({
      type: 'body.received',
      at: endAt,
      sessionId: this.options.sessionId,
      role: 'server',
      transactionId: tx.id,
      bytes: size,
      via: tx.via ?? 'DATA',
      messageId: tx.messageId.messageId,
    })
    const n = tx.recipients.length
    const results: (DeliveryResult | undefined)[] = new Array(n)
    let next = 0
    const counts = {delivered: 0, deferred: 0, rejected: 0}
    const flush = (): void => {
      while (next < n && results[next] !== undefined) {
        const rcpt = tx.recipients[next]!
        const res = results[next]!
        this.send(res.reply)
        const outcome = outcomeOf(res.reply.code)
        counts[outcome]++
        this.emit({
          type: 'recipient.result',
          at: Date.now(),
          sessionId: this.options.sessionId,
          role: 'server',
          transactionId: tx.id,
          index: next,
          recipient: rcpt.path.address,
          outcome,
          code: res.reply.code,
          enhanced: res.reply.enhanced,
          text: replyText(res.reply),
          mailbox: res.mailbox,
          bytes: res.bytes ?? 0,
          latencyMs: Date.now() - endAt,
          fsyncMs: res.fsyncMs,
          cause: res.cause,
        })
        next++
      }
    }
    const settle = (index: number, result: DeliveryResult): void => {
      if (index < 0 || index >= n || results[index] !== undefined) return
      results[index] = result
      flush()
    }

    if (!tx.failure) {
      try {
        await tx.spool!.finish()
      } catch (err) {
        tx.failure = replyForError(err)
        tx.failureCause = causeOf(err)
      }
    }
    if (tx.failure) {
      // A failure of the whole message is owed to every recipient, once each.
      const failure = tx.failure
      tx.recipients.forEach((r, i) => {
        settle(i, {reply: withText(failure, `<${r.path.address}> ${replyText(failure)}`), cause: tx.failureCause})
      })
    } else {
      try {
        await this.backend.deliver(this.envelope(tx), tx.spool!, this.info(), settle)
      } catch {
        // fall through: whoever has no result yet gets a temporary failure
      }
      tx.recipients.forEach((r, i) => {
        settle(i, {reply: perRecipient.localError(r.path.address)})
      })
    }
    this.emit({
      type: 'transaction.finished',
      at: Date.now(),
      sessionId: this.options.sessionId,
      role: 'server',
      transactionId: tx.id,
      recipients: n,
      ...counts,
      aborted: false,
    })
    const spool = tx.spool
    // The transaction is over (a close during delivery keeps `closed`); its spool goes away next.
    const after = this.current()
    if (after.kind === 'delivering' || after.kind === 'closed') this.phase = {kind: after.kind}
    if (spool) await spool.discard().catch(() => {})
    if (this.current().kind === 'delivering') this.phase = {kind: 'ready'}
    if (this.closeAfterTransaction) {
      this.send(R.shuttingDown)
      this.close('shutdown')
    }
  }

  /** Ends the open transaction, if any, throwing its spool away. */
  private async resetTransaction(emitAborted: boolean): Promise<void> {
    const tx = txOf(this.phase)
    if (!tx) return
    this.phase = withoutTx(this.phase)
    if (tx.spool) await tx.spool.discard().catch(() => {})
    if (emitAborted) {
      this.emit({
        type: 'transaction.finished',
        at: Date.now(),
        sessionId: this.options.sessionId,
        role: 'server',
        transactionId: tx.id,
        recipients: tx.recipients.length,
        delivered: 0,
        deferred: 0,
        rejected: 0,
        aborted: true,
      })
    }
  }
}

/** The reply a backend failure deserves: its own when it is a BackendError, else 451 4.3.0. */
function replyForError(err: unknown): Reply {
  return err instanceof BackendError ? err.reply : R.localError
}

/** Scans a BDAT chunk for a bare CR or bare LF, carrying a trailing CR across chunks. */
function hasBareLineEnding(part: Buffer, tx: Transaction): boolean {
  let prevCr = tx.bdatPrevCr
  let i = 0
  while (i < part.length) {
    if (prevCr) {
      if (part[i] !== 0x0a) return true
      prevCr = false
      i++
      continue
    }
    const cr = part.indexOf(0x0d, i)
    const lf = part.indexOf(0x0a, i)
    if (lf >= 0 && (cr < 0 || lf < cr)) return true
    if (cr < 0) break
    prevCr = true
    i = cr + 1
  }
  tx.bdatPrevCr = prevCr
  return false
}
