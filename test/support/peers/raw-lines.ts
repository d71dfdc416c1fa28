/**
 * A raw line-oriented client for talking to the real peers directly, without the project's own client or
 * reply parser: the harness uses it to set peers up (Cyrus's IMAP admin commands, filling a mailbox) and the
 * harness self-tests use it to pin down what each peer really answers. Each read has a timeout that only turns
 * a hung peer into a failure; nothing is ordered by time.
 */
import {createConnection, type Socket} from 'node:net'
import {type PeerTarget, resolveTarget} from './proc.js'

/** True when `line` is the last line of an SMTP/LMTP reply (`250 text` or a bare `250`). */
export function isLastReplyLine(line: string): boolean {
  return /^\d{3}(?: |$)/.test(line)
}

/** A connection that reads CRLF- (or LF-) terminated lines. */
export class LineConnection {
  private buffer = ''
  private readonly lines: string[] = []
  private waiter: (() => void) | undefined
  private ended = false
  private error: Error | undefined

  private constructor(
    private readonly socket: Socket,
    private readonly timeoutMs: number,
  ) {
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => {
      this.buffer += chunk
      for (let i = this.buffer.indexOf('\n'); i >= 0; i = this.buffer.indexOf('\n')) {
        this.lines.push(this.buffer.slice(0, i).replace(/\r$/, ''))
        this.buffer = this.buffer.slice(i + 1)
      }
      this.wake()
    })
    socket.on('close', () => {
      this.ended = true
      this.wake()
    })
    socket.on('error', (err) => {
      this.error = err
      this.wake()
    })
  }

  /** Connects to a loopback port or a Unix socket. */
  static open(target: PeerTarget, timeoutMs = 15_000): Promise<LineConnection> {
    const t = resolveTarget(target)
    const socket = t.kind === 'unix' ? createConnection({path: t.path}) : createConnection({host: t.host, port: t.port})
    return new Promise((resolve, reject) => {
      socket.once('error', reject)
      socket.once('connect', () => {
        socket.off('error', reject)
        resolve(new LineConnection(socket, timeoutMs))
      })
    })
  }

  private wake(): void {
    const w = this.waiter
    this.waiter = undefined
    w?.()
  }

  /** Writes raw bytes (a string is sent as latin1, byte for byte). */
  write(data: string | Buffer): void {
    this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data)
  }

  /** The next line (without its line end); rejects when the peer closed first or nothing came in time. */
  async readLine(): Promise<string> {
    for (;;) {
      const line = this.lines.shift()
      if (line !== undefined) return line
      if (this.error) throw this.error
      if (this.ended) throw new Error(`connection closed by the peer${this.buffer ? ` after "${this.buffer}"` : ''}`)
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          this.waiter = undefined
          reject(new Error(`no line from the peer within ${this.timeoutMs} ms`))
        }, this.timeoutMs)
        this.waiter = () => {
          clearTimeout(timer)
          resolve()
        }
      })
    }
  }

  /** Reads one whole SMTP/LMTP reply: its lines, the last one included. */
  async readReply(): Promise<string[]> {
    const reply: string[] = []
    for (;;) {
      const line = await this.readLine()
      reply.push(line)
      if (isLastReplyLine(line)) return reply
    }
  }

  /** Reads `n` replies in a row (pipelined commands, or the per-recipient replies after the body). */
  async readReplies(n: number): Promise<string[][]> {
    const out: string[][] = []
    for (let i = 0; i < n; i++) out.push(await this.readReply())
    return out
  }

  /** Sends one command line (CRLF added) and reads its reply. */
  async command(line: string): Promise<string[]> {
    this.write(`${line}\r\n`)
    return this.readReply()
  }

  /** Resolves once the peer has closed the connection (lines still unread are dropped). */
  async closed(): Promise<void> {
    while (!this.ended) {
      this.lines.length = 0
      await this.readLine().catch((err: Error) => {
        if (!this.ended) throw err
      })
    }
  }

  /** Closes our side. */
  close(): void {
    this.socket.destroy()
  }
}

/**
 * Opens a connection, reads the greeting, sends each command and reads its reply, then closes: the replies
 * (the greeting first), each as its lines.
 */
export async function lmtpExchange(target: PeerTarget, commands: readonly string[]): Promise<string[][]> {
  const conn = await LineConnection.open(target)
  try {
    const replies = [await conn.readReply()]
    for (const command of commands) replies.push(await conn.command(command))
    return replies
  } finally {
    conn.close()
  }
}
