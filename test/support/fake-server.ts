/**
 * A scripted fake LMTP server for client tests: it follows a script of lines it expects from the client and
 * replies it sends, so a test can make a server do what real ones won't (close after k of N replies, send
 * garbage, stall, send too few replies, multi-line per-recipient replies, refuse a BDAT chunk).
 *
 * A script is a list of steps, run in order for every connection:
 *   - `{expect}`: the next client line must equal the string (or match the RegExp); a mismatch is recorded in
 *     `errors`, answered `500 5.5.2 fake server: unexpected line`, and ends the script (connection closed).
 *     A `BDAT n [LAST]` line that was read by an expect step has its n octets read and recorded in `chunks`.
 *   - `{body: true}`: reads a DATA body up to and including CRLF.CRLF and records the wire bytes in `bodies`.
 *   - `{send}`: writes lines (CRLF added to each) in one write; they are raw, so garbage is just a line.
 *   - `{raw}`: writes bytes as they are (no CRLF added).
 *   - `{close: true}`: ends the connection (after what was written is flushed).
 *   - `{stall: true}`: stops here: reads and records whatever comes, answers nothing, never closes.
 *   - `{delayMs}`: waits before the next step.
 *   - `{tls}`: upgrades the connection to TLS (server side) with the given secure context.
 * When the script runs out, the connection is closed (`end: 'close'`, default) or left open (`end: 'stall'`);
 * lines that arrive after the end are recorded in `extra`.
 *
 * {@link parseScript} turns transcript text (`S: ...`, `C: ...`, `C: <body>`, `!close`, `!stall`, `!delay MS`)
 * into steps; a `*` in a C: line matches anything.
 */
import {once} from 'node:events'
import {mkdtemp, rm} from 'node:fs/promises'
import net from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import tls from 'node:tls'

/** One step of a fake server script. */
export type FakeStep =
  | {expect: string | RegExp}
  | {body: true}
  | {send: string | string[]}
  | {raw: string | Buffer}
  | {close: true}
  | {stall: true}
  | {delayMs: number}
  | {tls: tls.SecureContext}

/** A BDAT chunk the fake server read. */
export interface FakeChunk {
  size: number
  last: boolean
  data: Buffer
}

/** What happened on one connection. */
export interface FakeSession {
  /** Every client line read (without CRLF), in order, including those read by stall or after the end. */
  lines: string[]
  /** C:/S: transcript lines (replies as sent; bodies as `C: <body N octets>`). */
  transcript: string[]
  /** DATA bodies as they were on the wire (stuffed, ending with CRLF.CRLF). */
  bodies: Buffer[]
  /** BDAT chunks. */
  chunks: FakeChunk[]
  /** Script mismatches (an empty array means the client did exactly what the script expected). */
  errors: string[]
  /** Lines that arrived after the script ended (or while stalled). */
  extra: string[]
  /** Resolves when the connection is closed (by either side). */
  closed: Promise<void>
}

/** Options of {@link startFakeServer}. */
export interface FakeServerOptions {
  /** Listen on a Unix socket in a temp dir instead of 127.0.0.1 port 0. */
  unix?: boolean
  /** What to do when the script runs out: close the connection (default) or leave it open. */
  end?: 'close' | 'stall'
  /** How long an expect step waits for a line before recording an error (default 10 s). */
  expectTimeoutMs?: number
}

/** A running fake server. */
export interface FakeServer {
  /** `127.0.0.1:PORT` or `unix:/path`: what `lmtp send --server` takes. */
  target: string
  /** TCP port (0 for a Unix socket). */
  port: number
  /** The Unix socket path, when listening on one. */
  socketPath?: string
  /** Connections in the order they were accepted. */
  sessions: FakeSession[]
  /** Resolves with the n-th session (0-based) once it has been accepted. */
  session(n?: number): Promise<FakeSession>
  /** Closes every connection and the listener. */
  close(): Promise<void>
}

const END_OF_DATA = Buffer.from('\r\n.\r\n')

/** The byte reader of one connection: lines, counted octets, or a DATA body, from whatever has arrived. */
class Reader {
  private buf: Buffer = Buffer.alloc(0)
  private wake: (() => void) | undefined
  ended = false

  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
    this.wake?.()
  }

  end(): void {
    this.ended = true
    this.wake?.()
  }

  /** Waits until `take` can return something from the buffer; undefined on end of input or timeout. */
  private async until<T>(take: () => T | undefined, timeoutMs: number): Promise<T | undefined> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const got = take()
      if (got !== undefined) return got
      if (this.ended) return undefined
      const left = deadline - Date.now()
      if (left <= 0) return undefined
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
      this.wake = undefined
    }
  }

  line(timeoutMs: number): Promise<string | undefined> {
    return this.until(() => {
      const i = this.buf.indexOf(0x0a)
      if (i < 0) return undefined
      const end = i > 0 && this.buf[i - 1] === 0x0d ? i - 1 : i
      const text = this.buf.subarray(0, end).toString('utf8')
      this.buf = this.buf.subarray(i + 1)
      // A line that does not end in CRLF is reported as such by the caller seeing this marker.
      return end === i ? `${text}<bare LF>` : text
    }, timeoutMs)
  }

  bytes(n: number, timeoutMs: number): Promise<Buffer | undefined> {
    return this.until(() => {
      if (this.buf.length < n) return undefined
      const out = Buffer.from(this.buf.subarray(0, n))
      this.buf = this.buf.subarray(n)
      return out
    }, timeoutMs)
  }

  /** A DATA body: up to and including CRLF.CRLF (a body that is just `.` CRLF is empty). */
  body(timeoutMs: number): Promise<Buffer | undefined> {
    return this.until(() => {
      if (this.buf.subarray(0, 3).equals(Buffer.from('.\r\n'))) {
        const out = Buffer.from(this.buf.subarray(0, 3))
        this.buf = this.buf.subarray(3)
        return out
      }
      const i = this.buf.indexOf(END_OF_DATA)
      if (i < 0) return undefined
      const out = Buffer.from(this.buf.subarray(0, i + END_OF_DATA.length))
      this.buf = this.buf.subarray(i + END_OF_DATA.length)
      return out
    }, timeoutMs)
  }
}

function matches(expect: string | RegExp, line: string): boolean {
  return typeof expect === 'string' ? expect === line : expect.test(line)
}

/** Runs a script on one connection. */
async function runScript(
  socket: net.Socket,
  steps: FakeStep[],
  session: FakeSession,
  options: FakeServerOptions,
): Promise<void> {
  let stream: net.Socket | tls.TLSSocket = socket
  let reader = new Reader()
  const attach = (s: net.Socket | tls.TLSSocket, r: Reader): void => {
    s.on('data', (c: Buffer) => r.push(c))
    s.on('end', () => r.end())
    s.on('close', () => r.end())
  }
  attach(socket, reader)
  const expectTimeout = options.expectTimeoutMs ?? 10_000
  const write = (data: string | Buffer): void => {
    if (!stream.destroyed) stream.write(data)
  }
  const readLine = async (): Promise<string | undefined> => {
    const line = await reader.line(expectTimeout)
    if (line !== undefined) {
      session.lines.push(line)
      session.transcript.push(`C: ${line}`)
    }
    return line
  }
  const drainForever = async (): Promise<void> => {
    for (;;) {
      const line = await reader.line(3_600_000)
      if (line === undefined) return
      session.lines.push(line)
      session.extra.push(line)
    }
  }
  for (const step of steps) {
    if ('expect' in step) {
      const line = await readLine()
      if (line === undefined) {
        session.errors.push(`expected ${String(step.expect)}, got ${reader.ended ? 'end of connection' : 'nothing (timeout)'}`)
        stream.destroy()
        return
      }
      if (!matches(step.expect, line)) {
        session.errors.push(`expected ${String(step.expect)}, got ${JSON.stringify(line)}`)
        write('500 5.5.2 fake server: unexpected line\r\n')
        stream.end()
        return
      }
      const bdat = /^BDAT (\d+)( LAST)?$/i.exec(line)
      if (bdat) {
        const size = Number(bdat[1])
        const data = await reader.bytes(size, expectTimeout)
        if (data === undefined) {
          session.errors.push(`BDAT ${size}: the client sent fewer octets`)
          stream.destroy()
          return
        }
        session.chunks.push({size, last: bdat[2] !== undefined, data})
        session.transcript.push(`C: <${size} octets>`)
      }
    } else if ('body' in step) {
      const body = await reader.body(expectTimeout)
      if (body === undefined) {
        session.errors.push('expected a DATA body ending with CRLF.CRLF')
        stream.destroy()
        return
      }
      session.bodies.push(body)
      session.transcript.push(`C: <body ${body.length} octets>`)
    } else if ('send' in step) {
      const lines = Array.isArray(step.send) ? step.send : [step.send]
      for (const l of lines) session.transcript.push(`S: ${l}`)
      write(lines.map((l) => `${l}\r\n`).join(''))
    } else if ('raw' in step) {
      session.transcript.push(`S: <raw ${JSON.stringify(step.raw.toString())}>`)
      write(step.raw)
    } else if ('close' in step) {
      stream.end()
      return
    } else if ('stall' in step) {
      await drainForever()
      return
    } else if ('delayMs' in step) {
      await new Promise((r) => setTimeout(r, step.delayMs))
    } else if ('tls' in step) {
      socket.removeAllListeners('data')
      socket.removeAllListeners('end')
      const secure = new tls.TLSSocket(socket, {isServer: true, secureContext: step.tls})
      secure.on('error', () => {})
      await once(secure, 'secure')
      stream = secure
      reader = new Reader()
      attach(secure, reader)
      session.transcript.push('-- TLS')
    }
  }
  if ((options.end ?? 'close') === 'close') stream.end()
  else await drainForever()
}

/**
 * Starts a fake server; each connection runs `script` (or `script(n)` for the n-th connection, 0-based).
 * Listens on 127.0.0.1 port 0, or on a Unix socket in a temp dir with `{unix: true}`.
 */
export async function startFakeServer(
  script: FakeStep[] | ((n: number) => FakeStep[]),
  options: FakeServerOptions = {},
): Promise<FakeServer> {
  const sessions: FakeSession[] = []
  const sockets = new Set<net.Socket>()
  const waiting: ((s: FakeSession) => void)[][] = []
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    let closedResolve: () => void = () => {}
    const session: FakeSession = {
      lines: [],
      transcript: [],
      bodies: [],
      chunks: [],
      errors: [],
      extra: [],
      closed: new Promise<void>((r) => (closedResolve = r)),
    }
    socket.on('close', () => {
      sockets.delete(socket)
      closedResolve()
    })
    const n = sessions.length
    sessions.push(session)
    for (const w of waiting[n] ?? []) w(session)
    const steps = typeof script === 'function' ? script(n) : script
    runScript(socket, steps, session, options).catch((err: Error) => {
      session.errors.push(`fake server crashed: ${err.message}`)
      socket.destroy()
    })
  })
  let dir: string | undefined
  let socketPath: string | undefined
  if (options.unix) {
    dir = await mkdtemp(join(tmpdir(), 'lmtp-fake-'))
    socketPath = join(dir, 'fake.sock')
    server.listen(socketPath)
  } else {
    server.listen(0, '127.0.0.1')
  }
  await once(server, 'listening')
  const port = socketPath ? 0 : (server.address() as net.AddressInfo).port
  return {
    target: socketPath ? `unix:${socketPath}` : `127.0.0.1:${port}`,
    port,
    socketPath,
    sessions,
    session(n = 0) {
      const s = sessions[n]
      if (s) return Promise.resolve(s)
      return new Promise((resolve) => {
        ;(waiting[n] ??= []).push(resolve)
      })
    },
    async close() {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      if (dir) await rm(dir, {recursive: true, force: true})
    },
  }
}

/**
 * Parses a script written as a transcript: `S: line` (consecutive S: lines are sent in one write),
 * `C: line` (expected; `*` matches anything, e.g. `C: LHLO *`), `C: <body>` (a DATA body), `!close`,
 * `!stall`, `!delay MS`. Blank lines and `#` comments are ignored.
 */
export function parseScript(text: string): FakeStep[] {
  const steps: FakeStep[] = []
  let sending: string[] | undefined
  const flush = (): void => {
    if (sending) steps.push({send: sending})
    sending = undefined
  }
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '').replace(/^\s+/, '')
    if (line === '' || line.startsWith('#')) continue
    if (line.startsWith('S: ') || line === 'S:') {
      ;(sending ??= []).push(line.slice(3))
      continue
    }
    flush()
    if (line === 'C: <body>') steps.push({body: true})
    else if (line.startsWith('C: ')) {
      const want = line.slice(3)
      steps.push({expect: want.includes('*') ? globToRegExp(want) : want})
    } else if (line === '!close') steps.push({close: true})
    else if (line === '!stall') steps.push({stall: true})
    else if (line.startsWith('!delay ')) steps.push({delayMs: Number(line.slice(7))})
    else throw new Error(`fake server script: cannot read ${JSON.stringify(line)}`)
  }
  flush()
  return steps
}

function globToRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.split('*').map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`)
}

/** The LHLO keywords a fake server advertises by default. */
export const FAKE_KEYWORDS = ['PIPELINING', 'ENHANCEDSTATUSCODES', '8BITMIME']

/** The lines of a fake server's 250 LHLO reply advertising `keywords` (send it again to answer a later LHLO). */
export function lhloReply(keywords: string[] = FAKE_KEYWORDS): string[] {
  return ['fake.test', ...keywords].map((k, i, all) => `250${i === all.length - 1 ? ' ' : '-'}${k}`)
}

/** The greeting and a LHLO exchange advertising `keywords` (any LHLO name is accepted). */
export function greetAndLhlo(keywords: string[] = FAKE_KEYWORDS): FakeStep[] {
  return [{send: '220 fake.test LMTP fake server ready'}, {expect: /^LHLO \S+$/}, {send: lhloReply(keywords)}]
}
