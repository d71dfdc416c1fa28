/**
 * A raw probe connection: writes exactly the bytes a check wants (unknown verbs, HELO, pipelined batches,
 * bare line ends for the smuggling test) and reads whole replies, each labelled with the command it answers.
 * The protocol client (LmtpClient) refuses to send most of these on purpose, so checks that must misbehave
 * use this instead. Every reply is also reported to an observer, which the enhanced-status-code check reads.
 */
import type {Duplex} from 'node:stream'
import {type Reply, ReplyParser} from '../protocol/reply.js'

/** A reply as one check saw it, with what it answered and whether LHLO had succeeded on that connection. */
export interface ObservedReply {
  /** The command it answers (e.g. `RSET`), `greeting`, or `?` when more replies came than commands. */
  command: string
  reply: Reply
  /** True when a 250 to LHLO was seen earlier on this connection (and no STARTTLS since). */
  afterLhlo: boolean
}

/** How a wait for replies ended: the QUIT's 221 came, or the connection closed, went silent or sent garbage. */
export type RepliesEnd = 'quit' | 'closed' | 'timeout' | 'garbage'

/** Why a read ended without a reply. */
export class ProbeReadError extends Error {
  constructor(
    readonly kind: 'timeout' | 'closed' | 'garbage',
    message: string,
  ) {
    super(message)
    this.name = 'ProbeReadError'
  }
}

/** One connection driven byte for byte. */
export class ProbeConnection {
  private readonly parser = new ReplyParser()
  private readonly ready: Reply[] = []
  private readonly labels: string[] = []
  private waiter: ((r: Reply | ProbeReadError) => void) | undefined
  private failure: ProbeReadError | undefined
  private lhloDone = false
  private detach: () => void = () => {}
  /** True once QUIT was written (quit() then only waits for the close). */
  private quitSent = false
  /**
   * Set when the server is expected to answer out of step (smuggling, BDAT LAST with no recipient): replies
   * are then not passed to the observer, whose command labels would be wrong.
   */
  quiet = false

  constructor(
    private stream: Duplex,
    private readonly timeoutMs: number,
    private readonly observe: (o: ObservedReply) => void = () => {},
  ) {
    this.labels.push('greeting')
    this.attach(stream)
  }

  private attach(stream: Duplex): void {
    const onData = (chunk: Buffer): void => {
      let replies: Reply[]
      try {
        replies = this.parser.push(chunk)
      } catch (err) {
        this.fail(new ProbeReadError('garbage', `the server sent something that is not a reply: ${(err as Error).message}`))
        stream.destroy()
        return
      }
      for (const r of replies) this.take(r)
    }
    const onClose = (): void => this.fail(new ProbeReadError('closed', 'the server closed the connection'))
    const onError = (err: Error): void => this.fail(new ProbeReadError('closed', `connection error: ${err.message}`))
    stream.on('data', onData)
    stream.on('end', onClose)
    stream.on('close', onClose)
    stream.on('error', onError)
    this.detach = () => {
      stream.off('data', onData)
      stream.off('end', onClose)
      stream.off('close', onClose)
      stream.off('error', onError)
    }
  }

  private take(r: Reply): void {
    const command = this.labels.shift() ?? '?'
    if (!this.quiet) this.observe({command, reply: r, afterLhlo: this.lhloDone})
    const verb = command.split(' ', 1)[0]!.toUpperCase()
    if (verb === 'LHLO' && r.code === 250 && !this.quiet) this.lhloDone = true
    if (verb === 'STARTTLS' && r.code === 220) this.lhloDone = false
    const w = this.waiter
    if (w) {
      this.waiter = undefined
      w(r)
    } else this.ready.push(r)
  }

  private fail(err: ProbeReadError): void {
    if (this.failure) return
    this.failure = err
    const w = this.waiter
    this.waiter = undefined
    w?.(err)
  }

  /** True once the connection is gone. */
  get closed(): boolean {
    return this.failure !== undefined || this.stream.destroyed
  }

  /** Why the connection ended, if it did. */
  get closeReason(): string | undefined {
    return this.failure?.message
  }

  /** Writes bytes as they are; `answers` labels the replies they should produce, in order. */
  write(data: string | Buffer, answers: string[] = []): void {
    this.labels.push(...answers)
    if (!this.stream.destroyed) this.stream.write(data)
  }

  /** Reads the next reply; rejects with ProbeReadError on timeout, close or garbage. */
  read(timeoutMs = this.timeoutMs): Promise<Reply> {
    const r = this.ready.shift()
    if (r) return Promise.resolve(r)
    if (this.failure) return Promise.reject(this.failure)
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined
        reject(new ProbeReadError('timeout', `no reply within ${timeoutMs / 1000}s`))
      }, timeoutMs)
      this.waiter = (x) => {
        clearTimeout(timer)
        if (x instanceof ProbeReadError) reject(x)
        else resolve(x)
      }
    })
  }

  /** Like read(), but resolves undefined instead of rejecting (for checks where silence is an answer). */
  async tryRead(timeoutMs = this.timeoutMs): Promise<Reply | undefined> {
    try {
      return await this.read(timeoutMs)
    } catch {
      return undefined
    }
  }

  /** Sends one line (CRLF added), labelled `shown` (credentials never reach the observer), and reads its reply. */
  async exchange(line: string, shown: string): Promise<Reply> {
    this.write(`${line}\r\n`, [shown])
    return this.read()
  }

  /** Sends one command line (CRLF added) and reads its reply. */
  async command(line: string): Promise<Reply> {
    this.write(`${line}\r\n`, [line])
    return this.read()
  }

  /**
   * Writes `data` followed by a pipelined QUIT, then reads every reply up to the QUIT's 221, which no command
   * before it can produce: so the replies to `data` are counted exactly, whatever the server puts in its free
   * text, and a correct server is never waited on for a timeout. Ends early when the connection closes or a read
   * times out (a server still reading a body that never ended for it). The session is over afterwards.
   */
  async writeThenQuit(data: string | Buffer, max = 50): Promise<{replies: Reply[]; end: RepliesEnd}> {
    this.quiet = true
    this.write(data)
    this.write('QUIT\r\n')
    this.quitSent = true
    const replies: Reply[] = []
    for (let i = 0; i < max; i++) {
      let r: Reply
      try {
        r = await this.read()
      } catch (err) {
        return {replies, end: err instanceof ProbeReadError ? err.kind : 'closed'}
      }
      if (r.code === 221) return {replies, end: 'quit'}
      replies.push(r)
    }
    return {replies, end: 'timeout'}
  }

  /** Switches to a new stream (after STARTTLS); buffered plaintext is dropped, as RFC 3207 requires. */
  async upgrade(wrap: (plain: Duplex) => Promise<Duplex>): Promise<Duplex> {
    this.detach()
    const secure = await wrap(this.stream)
    this.stream = secure
    this.attach(secure)
    return secure
  }

  /** Sends QUIT without waiting long, then closes. */
  async quit(): Promise<void> {
    if (!this.closed && !this.quitSent) {
      this.write('QUIT\r\n', ['QUIT'])
      await this.tryRead(Math.min(this.timeoutMs, 2000))
    }
    this.close()
  }

  /** Closes at once. */
  close(): void {
    this.detach()
    this.stream.destroy()
    if (this.waiter) this.fail(new ProbeReadError('closed', 'closed by the probe'))
  }
}
