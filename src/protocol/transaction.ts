/**
 * One LMTP transaction, split along the protocol's phases: envelope (MAIL, the RCPTs, a pipelined DATA) ->
 * body (DATA or BDAT) -> the per-recipient replies -> the reply-count marker. Every recipient result is built
 * by one function (recipientResult), ordered by RCPT, duplicates kept. The session's I/O (the expected-reply
 * queue, timers, writes) is LmtpClient's (client.ts); this module only drives it.
 *
 * The reply-count marker: after the end of data, a command whose reply can never be a per-recipient reply is
 * pipelined, so a server that sends too few replies is caught at once and one that sends too many is caught at
 * all. For the session's last transaction that is QUIT (every conforming server answers 221); mid-session it
 * is LHLO, recognised by structure (250, the same capability keywords), never by its free text (Cyrus puts a
 * per-transaction session id there). A server that refuses LHLO after a transaction (GNU Mailutils: 503) is
 * resolved with one synchronous QUIT: 221 means the odd reply was the marker's, anything else means extra
 * replies; the session is then over (`sessionEnded`), and the caller learns that this server wants a new
 * session per transaction (`markerRefused`).
 */
import type {LmtpClient} from './client.js'
import {LmtpClientError} from './client-error.js'
import type {MailParams} from './command.js'
import {type Outcome, outcomeOf} from './events.js'
import {type Reply, replyText} from './reply.js'
import {DataEncoder} from './wire/dot-stuffing.js'

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
   * Check the number of per-recipient replies: pipeline a marker after the end of data (QUIT when
   * `lastInSession`, else LHLO; none with `pipelining: false`), so a server that sends too few replies is caught
   * at once instead of after a timeout, and one that sends too many is caught at all.
   */
  verifyReplyCount?: boolean
  /**
   * This is the session's last transaction: the marker is QUIT (and without pipelining, QUIT is sent after the
   * replies and its 221 checked). The session is over afterwards.
   */
  lastInSession?: boolean
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
  /** True when QUIT was sent (the marker, or to resolve one): no further transaction on this session. */
  sessionEnded?: boolean
  /**
   * The server's reply to the LHLO marker when it refused it (e.g. Mailutils' `503 5.0.0`): this server takes
   * one transaction per session, so open a new session for the next one.
   */
  markerRefused?: Reply
}

/** The one function that builds a recipient result from the reply that decided it. */
export function recipientResult(index: number, recipient: string, stage: Stage, reply: Reply, latencyMs: number): RecipientResult {
  return {
    index,
    recipient,
    stage,
    outcome: outcomeOf(reply.code),
    code: reply.code,
    enhanced: reply.enhanced,
    text: replyText(reply),
    latencyMs,
  }
}

/** The synthesized result for a recipient the server never answered for: deferred (421 4.4.2), marked synthetic. */
export function lostResult(index: number, recipient: string, stage: Stage, why: string): RecipientResult {
  return {...recipientResult(index, recipient, stage, {code: 421, enhanced: '4.4.2', lines: [why]}, 0), synthetic: true}
}

/** The capability keywords of an LHLO reply: the first word of each line after the first, upper-cased, sorted. */
export function lhloKeywords(lines: readonly string[]): string[] {
  return lines
    .slice(1)
    .map((l) => (l.trim().split(/\s+/, 1)[0] ?? '').toUpperCase())
    .filter((k) => k !== '')
    .sort()
}

/**
 * True when `r` is the reply to a pipelined LHLO on a session whose LHLO reply was `lhloLines`: 250 with the same
 * capability keywords. Structure only: the free text (host name, Cyrus's `Ok SESSIONID=<...>`) may change.
 */
export function isLhloMarkerReply(r: Reply, lhloLines: readonly string[] | undefined): boolean {
  if (!lhloLines || r.code !== 250 || r.lines.length < 2 || r.lines.length !== lhloLines.length) return false
  const a = lhloKeywords(r.lines)
  const b = lhloKeywords(lhloLines)
  return a.every((k, i) => k === b[i])
}

/** Runs one transaction on an open session (see LmtpClient.send). */
export function runTransaction(client: LmtpClient, req: TransactionRequest): Promise<TransactionResult> {
  return new Transaction(client, req).run()
}

/** Body octets gathered before a write (smaller messages go out whole, with their end mark and the marker). */
const BODY_BATCH = 256 * 1024

/** Whether the transaction goes on to its next phase. */
type Step = 'next' | 'done'

/** One transaction's state; each method is one phase. */
class Transaction {
  private readonly results: (RecipientResult | undefined)[]
  /** Indexes of the recipients accepted at RCPT, in order: one reply each is due after the body. */
  private readonly accepted: number[] = []
  private readonly rcptAt: number[] = []
  private readonly timings: TransactionTimings = {mailMs: 0, rcptMs: 0, dataMs: 0, deliveryMs: 0, totalMs: 0}
  private readonly result: TransactionResult
  private readonly t0 = Date.now()
  private readonly pipelining: boolean
  private readonly bdat: boolean
  /** The marker pipelined after the end of data, once written. */
  private marker: 'QUIT' | 'LHLO' | undefined
  /** A pipelined DATA's reply, or why it never came. */
  private dataReply: Reply | undefined
  private dataLost: Error | undefined
  private endAt = 0

  constructor(
    private readonly client: LmtpClient,
    private readonly req: TransactionRequest,
  ) {
    const caps = client.capabilities
    if (!caps) throw new LmtpClientError('protocol', 'send() before lhlo()')
    if (req.to.length === 0) throw new TypeError('at least one recipient is needed')
    this.pipelining = (req.pipelining ?? true) && caps.pipelining
    this.bdat = req.bdat === true
    if (this.bdat && !caps.chunking) throw new LmtpClientError('refused', 'the server does not offer CHUNKING (BDAT)')
    if (client.unsolicited > 0) throw client.outOfTurn('before MAIL was sent')
    this.results = new Array(req.to.length)
    this.result = {mail: {code: 0, lines: []}, recipients: [], bytes: 0, timings: this.timings}
  }

  async run(): Promise<TransactionResult> {
    if ((await this.envelope()) === 'next' && (await this.body()) === 'next') await this.replies()
    return this.finish()
  }

  private finish(): TransactionResult {
    const {req} = this
    this.result.recipients = this.results.map(
      (r, i) => r ?? lostResult(i, req.to[i]!, 'DATA', 'no reply from the server for this recipient'),
    )
    for (const r of this.result.recipients) this.client.reportResult(r)
    this.timings.totalMs = Date.now() - this.t0
    return this.result
  }

  private violation(message: string, keepFirst = false): void {
    if (keepFirst) this.result.violation ??= message
    else this.result.violation = message
  }

  /** Records one RCPT reply: accepted (a reply is due after the body) or decided now. */
  private recordRcpt(i: number, r: Reply): void {
    if (r.code >= 200 && r.code < 300) this.accepted.push(i)
    else this.results[i] = recipientResult(i, this.req.to[i]!, 'RCPT', r, Date.now() - (this.rcptAt[i] ?? Date.now()))
  }

  /** Defers every accepted recipient still without a result (the session failed before their replies). */
  private loseAccepted(why: string, from = 0, overwrite = false): void {
    for (const i of this.accepted.slice(from)) {
      if (overwrite || this.results[i] === undefined) this.results[i] = lostResult(i, this.req.to[i]!, 'DATA', why)
    }
  }

  /** Envelope: MAIL and the RCPTs, pipelined in one write when offered (with DATA when pipelineData). */
  private async envelope(): Promise<Step> {
    const {client, req, timings} = this
    const pipelineData = this.pipelining && !this.bdat && req.pipelineData === true
    const mailAt = Date.now()
    const replies: Reply[] = []
    let dataPending: Promise<Reply> | undefined
    try {
      if (this.pipelining) {
        const pending: Promise<Reply>[] = []
        let group = client.formatLine({verb: 'MAIL', from: req.from, params: req.params})
        pending.push(client.expectReply('command', 'MAIL'))
        for (const to of req.to) {
          this.rcptAt.push(Date.now())
          group += client.formatLine({verb: 'RCPT', to})
          pending.push(client.expectReply('command', 'RCPT'))
        }
        // By default DATA waits for the envelope's replies, so that no DATA is sent when every recipient was
        // refused; with pipelineData it ends the same group, and its reply is checked below.
        if (pipelineData) {
          group += client.formatLine({verb: 'DATA'})
          dataPending = client.expectReply('dataInit', 'DATA')
        }
        client.writeRaw(group)
        for (const p of pending) replies.push(await p)
      } else {
        client.writeLine({verb: 'MAIL', from: req.from, params: req.params})
        replies.push(await client.expectReply('command', 'MAIL'))
        if (replies[0]!.code === 250) {
          for (const to of req.to) {
            this.rcptAt.push(Date.now())
            client.writeLine({verb: 'RCPT', to})
            replies.push(await client.expectReply('command', 'RCPT'))
          }
        }
      }
    } catch (err) {
      // Lost during the envelope: whoever has no RCPT reply is deferred at RCPT.
      const e = err as LmtpClientError
      this.result.mail = replies[0] ?? {code: 421, enhanced: '4.4.2', lines: [e.message]}
      for (const [i, r] of replies.slice(1).entries()) this.recordRcpt(i, r)
      req.to.forEach((to, i) => {
        this.results[i] ??= lostResult(i, to, 'RCPT', e.message)
      })
      if (e.kind === 'protocol') this.violation(e.message)
      return 'done'
    }
    const mail = replies[0]!
    this.result.mail = mail
    timings.mailMs = (this.rcptAt[0] ?? Date.now()) - mailAt
    if (dataPending) await this.pipelinedDataReply(dataPending, replies)
    if (mail.code !== 250) {
      // The sender was refused: every recipient shares that outcome (their RCPTs, if pipelined, got 503s).
      req.to.forEach((to, i) => {
        this.results[i] = recipientResult(i, to, 'RCPT', mail, timings.mailMs)
      })
      if (this.pipelining && !this.dataLost) await client.resetQuietly()
      return 'done'
    }
    for (const [i, r] of replies.slice(1).entries()) this.recordRcpt(i, r)
    timings.rcptMs = Date.now() - (this.rcptAt[0] ?? mailAt)
    if (this.accepted.length === 0) {
      if (!this.dataLost) await client.resetQuietly()
      return 'done'
    }
    return 'next'
  }

  /** A pipelined DATA's reply comes right after the envelope's, whatever happened to the envelope. */
  private async pipelinedDataReply(pending: Promise<Reply>, envelope: Reply[]): Promise<void> {
    try {
      this.dataReply = await pending
      this.result.data = this.dataReply
    } catch (err) {
      this.dataLost = err as Error
      if ((err as LmtpClientError).kind === 'protocol') this.violation((err as Error).message)
    }
    const mailOk = envelope[0]!.code === 250
    const anyAccepted = envelope.some((r, i) => i > 0 && r.code >= 200 && r.code < 300)
    if (this.dataReply && (!mailOk || !anyAccepted) && this.dataReply.code < 400) {
      // The server would now read a body for a transaction it refused: nothing it says can be trusted.
      const whom = mailOk ? 'every recipient' : 'the sender'
      const message = `the server answered DATA with ${this.dataReply.code} after refusing ${whom}: closing the session`
      this.violation(message)
      this.dataLost = this.client.brokenSession(message)
    }
  }

  /** Body: DATA (dot-stuffed, ended by CRLF.CRLF) or BDAT chunks, then the marker. */
  private async body(): Promise<Step> {
    const {client, req} = this
    const dataAt = Date.now()
    const refusedBody = (r: Reply): void => {
      for (const i of this.accepted) this.results[i] = recipientResult(i, req.to[i]!, 'DATA', r, Date.now() - dataAt)
    }
    try {
      if (this.bdat) {
        req.onPhase?.('body')
        if ((await this.sendBdat()) !== 'sent') {
          refusedBody(this.result.data!)
          await client.resetQuietly()
          return 'done'
        }
        const marker = this.markerLine()
        if (marker) client.writeRaw(marker)
      } else {
        if (this.dataLost) throw this.dataLost
        if (this.dataReply && client.unsolicited > 0) throw client.outOfTurn('after the reply to DATA, before the message data was sent')
        const r = this.dataReply ?? (await client.command({verb: 'DATA'}, 'dataInit'))
        this.result.data = r
        // A 2xx to DATA is not "delivered": no body was sent. Nobody's outcome is known.
        if (r.code < 400 && r.code !== 354) throw client.outOfTurn(`${r.code} to DATA instead of 354`)
        if (r.code !== 354) {
          // No body is sent after a refused DATA.
          refusedBody(r)
          return 'done'
        }
        req.onPhase?.('body')
        await this.sendData()
      }
      this.endAt = Date.now()
      this.timings.dataMs = this.endAt - dataAt
      req.onPhase?.('replies')
    } catch (err) {
      const e = err as LmtpClientError
      if (e.kind === 'protocol') this.violation(e.message)
      this.loseAccepted(e.message)
      return 'done'
    }
    return 'next'
  }

  /** The marker command line (formatted and reported as sent), or undefined when none is to be pipelined. */
  private markerLine(): string | undefined {
    const {req, client} = this
    if (!req.verifyReplyCount || req.pipelining === false) return undefined
    this.marker = req.lastInSession ? 'QUIT' : 'LHLO'
    return client.formatLine(this.marker === 'QUIT' ? {verb: 'QUIT'} : {verb: 'LHLO', domain: client.lhloNameSent})
  }

  /** Streams the DATA body; small pieces are gathered so a small message, its end mark and the marker go in one write. */
  private async sendData(): Promise<void> {
    const {client} = this
    const enc = new DataEncoder()
    let held: Buffer[] = []
    let heldBytes = 0
    const hold = (b: Buffer): void => {
      held.push(b)
      heldBytes += b.length
    }
    try {
      for await (const piece of this.req.body) {
        const out = enc.push(toBuffer(piece))
        if (out.length === 0) continue
        hold(out)
        if (heldBytes >= BODY_BATCH) {
          await client.writeGathered(held, heldBytes)
          held = []
          heldBytes = 0
        }
      }
    } catch (err) {
      // The body could not be read to its end: what was read goes out as before (never an end of data).
      if (heldBytes > 0 && !client.failed) client.writeRaw(Buffer.concat(held, heldBytes))
      throw err
    }
    // Replies that came while the body was being sent (before its end was even written) cannot be about it.
    if (client.unsolicited > 0) throw client.outOfTurn('before the end of the message data was sent')
    hold(enc.end())
    const marker = this.markerLine()
    if (marker) hold(Buffer.from(marker))
    await client.writeGathered(held, heldBytes)
    this.result.bytes = enc.messageSize
  }

  /**
   * Streams the body as BDAT chunks (line ends normalised, no stuffing). Chunk replies are read as they come
   * when pipelining, else after each chunk. Returns 'sent' after `BDAT n LAST`, or 'refused' when a chunk was
   * refused (result.data holds that reply).
   */
  private async sendBdat(): Promise<'sent' | 'refused'> {
    const {client, req, result} = this
    const enc = new DataEncoder({dotStuff: false})
    const chunkSize = req.chunkSize ?? 1024 * 1024
    const outstanding: Promise<Reply>[] = []
    let held: Buffer[] = []
    let heldBytes = 0
    const checkReplies = async (all: boolean): Promise<boolean> => {
      while (outstanding.length > (all ? 0 : this.pipelining ? 8 : 0)) {
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
      client.writeLine({verb: 'BDAT', size: data.length, last})
      await client.writeData(data)
      if (!last) outstanding.push(client.expectReply('dataBlock', 'BDAT chunk'))
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

  /** True when `r` is the reply to the marker (so it cannot be a recipient's). */
  private isMarkerReply(r: Reply): boolean {
    if (this.marker === 'QUIT') return r.code === 221
    if (this.marker === 'LHLO') return isLhloMarkerReply(r, this.client.lhloReplyLines)
    return false
  }

  /** Per-recipient replies: one per accepted recipient, in RCPT order; the timer restarts after each. */
  private async replies(): Promise<void> {
    const {client, req, accepted} = this
    const n = accepted.length
    for (let k = 0; k < n; k++) {
      const i = accepted[k]!
      let r: Reply
      try {
        r = await client.expectReply('dataEnd', `recipient ${k + 1} of ${n} after the body`)
      } catch (err) {
        const e = err as LmtpClientError
        if (e.kind === 'protocol') this.violation(e.message)
        this.loseAccepted(e.kind === 'connection-lost' ? `connection lost after ${k} of ${n} replies` : e.message, k, true)
        if (this.marker === 'QUIT') this.result.sessionEnded = true
        return
      }
      if (this.isMarkerReply(r)) {
        this.violation(`the server sent ${k} replies after the body for ${n} accepted recipients; RFC 2033 requires one per recipient`)
        this.loseAccepted('the server sent no reply for this recipient', k, true)
        this.timings.deliveryMs = Date.now() - this.endAt
        if (this.marker === 'QUIT') this.result.sessionEnded = true
        return
      }
      this.results[i] = recipientResult(i, req.to[i]!, 'DATA', r, Date.now() - this.endAt)
    }
    this.timings.deliveryMs = Date.now() - this.endAt
    // Garbage right after the last reply closes the session before the marker is read: still a violation.
    if (this.marker && client.failed?.kind === 'protocol') this.violation(client.failed.message, true)
    await this.checkMarker()
  }

  /** After the N replies: the marker's reply must come next (anything else is an extra reply). */
  private async checkMarker(): Promise<void> {
    const {client, req} = this
    if (this.marker === undefined) {
      // Not pipelined: on the session's last transaction, QUIT now and check that 221 is what comes.
      if (req.verifyReplyCount && req.lastInSession && !client.closed) await this.quitAndCheck(undefined)
      return
    }
    if (client.failed) {
      if (this.marker === 'QUIT') this.result.sessionEnded = true
      return
    }
    let m: Reply
    try {
      m = await client.expectReply('command', `${this.marker} after the body`)
    } catch (err) {
      // A server may close right after the last reply instead of answering QUIT: nothing wrong with the count.
      if (this.marker === 'LHLO') this.violation(`no reply to LHLO after the body: ${(err as Error).message}`, true)
      else this.result.sessionEnded = true
      return
    }
    if (this.marker === 'QUIT') {
      this.result.sessionEnded = true
      if (m.code !== 221) {
        this.violation(this.tooMany())
        await this.drainUntilQuit()
      }
      return
    }
    if (isLhloMarkerReply(m, client.lhloReplyLines)) return
    // Not recognisable: the server's answer to our LHLO (one that refuses LHLO after a transaction) or an extra
    // reply. One synchronous QUIT tells which, and ends the session.
    await this.quitAndCheck(m)
  }

  private tooMany(): string {
    return `the server sent more replies after the body than the ${this.accepted.length} accepted recipients`
  }

  /** QUIT now: 221 next means no extra replies (so `odd`, if any, answered the LHLO marker); else extras. */
  private async quitAndCheck(odd: Reply | undefined): Promise<void> {
    const {client} = this
    this.result.sessionEnded = true
    let q: Reply
    try {
      client.writeLine({verb: 'QUIT'})
      q = await client.expectReply('command', 'QUIT')
    } catch {
      return
    }
    if (q.code === 221) {
      if (odd) this.result.markerRefused = odd
      return
    }
    this.violation(this.tooMany())
    await this.drainUntilQuit()
  }

  /** Reads (bounded) until the 221 to QUIT, so the extra replies are consumed; gives up on any failure. */
  private async drainUntilQuit(): Promise<void> {
    for (let n = 0; n < 1000 && !this.client.failed; n++) {
      try {
        if ((await this.client.expectReply('command', 'QUIT')).code === 221) return
      } catch {
        return
      }
    }
  }
}

function toBuffer(piece: Buffer | Uint8Array | string): Buffer {
  if (Buffer.isBuffer(piece)) return piece
  return typeof piece === 'string' ? Buffer.from(piece) : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength)
}
