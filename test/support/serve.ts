/**
 * Starts a real `lmtp serve` in-process (runServer, the same code path as the command) with a Maildir in a
 * temp dir, on TCP port 0 and a Unix socket, and raw-socket helpers to talk to it byte for byte.
 */
import {mkdtemp, readdir, readFile, rm} from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import type {EventBus, LmtpEvent} from '../../src/protocol/events.js'
import {ReplyParser, type Reply} from '../../src/protocol/reply.js'
import {type ServeOptions, type ServeSummary, runServer} from '../../src/server/run-server.js'
import type {LmtpServer} from '../../src/server/server.js'

/** A running test server. */
export interface TestServer {
  root: string
  dir: string
  port: number
  socketPath: string
  server: LmtpServer
  bus: EventBus
  events: LmtpEvent[]
  logs: string[]
  /** Stops the server (graceful) and returns its summary. */
  stop(): Promise<ServeSummary>
  /** Removes the temp dir (after stop). */
  cleanup(): Promise<void>
}

/** Starts a server; `overrides` may set any ServeOptions. */
export async function startServe(overrides: Partial<ServeOptions> = {}): Promise<TestServer> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'lmtp-serve-'))
  const root = overrides.maildir ?? path.join(dir, 'Maildir')
  const socketPath = path.join(dir, 'lmtp.sock')
  let release: () => void = () => {}
  const until = new Promise<void>((r) => {
    release = r
  })
  const logs: string[] = []
  const events: LmtpEvent[] = []
  let ready: (v: {server: LmtpServer; bus: EventBus}) => void = () => {}
  const started = new Promise<{server: LmtpServer; bus: EventBus}>((r) => {
    ready = r
  })
  const options: ServeOptions = {
    maildir: root,
    listen: [
      {kind: 'tcp', host: '127.0.0.1', port: 0},
      {kind: 'unix', path: socketPath},
    ],
    socketMode: 0o660,
    hostname: 'mx.test',
    overQuota: 'temporary',
    checkQuotaAtRcpt: false,
    maxSize: 50 * 1024 * 1024,
    maxRecipients: 1000,
    maxConnections: 256,
    idleTimeoutMs: 300_000,
    logFormat: 'json',
    shutdownGraceMs: 10_000,
    log: (line) => logs.push(line),
    ...overrides,
    until,
    onReady: (server, bus) => {
      bus.on((e) => events.push(e))
      ready({server, bus})
    },
  }
  const done = runServer(options)
  const failed = done.then(() => {
    throw new Error('server stopped before it was ready')
  })
  const {server, bus} = await Promise.race([started, failed])
  const tcp = server.listeners.find((l) => l.target.kind === 'tcp')
  const port = tcp && tcp.target.kind === 'tcp' ? tcp.target.port : 0
  return {
    root,
    dir,
    port,
    socketPath,
    server,
    bus,
    events,
    logs,
    stop: async () => {
      release()
      return done
    },
    cleanup: () => rm(dir, {recursive: true, force: true}),
  }
}

/** A raw connection: write bytes, read whole replies. */
export class RawSession {
  private readonly parser = new ReplyParser({maxLineLength: 1 << 20})
  readonly replies: Reply[] = []
  private waiters: (() => void)[] = []
  closed = false

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk) => {
      this.replies.push(...this.parser.push(chunk))
      for (const w of this.waiters.splice(0)) w()
    })
    socket.on('close', () => {
      this.closed = true
      for (const w of this.waiters.splice(0)) w()
    })
    socket.on('error', () => {})
  }

  /** Connects to a port or a socket path. */
  static async open(target: number | string): Promise<RawSession> {
    const socket = typeof target === 'number' ? net.connect({host: '127.0.0.1', port: target}) : net.connect({path: target})
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve())
      socket.once('error', reject)
    })
    return new RawSession(socket)
  }

  /** Writes bytes (a string is sent as UTF-8). */
  write(data: string | Buffer): void {
    this.socket.write(data)
  }

  /** Waits until at least `n` replies in total have arrived (or the connection closed). */
  async waitReplies(n: number, timeoutMs = 20_000): Promise<Reply[]> {
    const deadline = Date.now() + timeoutMs
    while (this.replies.length < n && !this.closed) {
      if (Date.now() > deadline) throw new Error(`expected ${n} replies, got ${this.replies.length}: ${JSON.stringify(this.replies)}`)
      await new Promise<void>((r) => {
        const t = setTimeout(r, 200)
        this.waiters.push(() => {
          clearTimeout(t)
          r()
        })
      })
    }
    return this.replies
  }

  /** Waits for the server to close the connection. */
  async waitClosed(timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('connection not closed')
      await new Promise((r) => setTimeout(r, 20))
    }
  }

  close(): void {
    this.socket.destroy()
  }
}

/** Every file under DIR/<domain>/<local>/new, as {mailbox, name, content}. */
export async function deliveredFiles(root: string): Promise<{mailbox: string; name: string; content: string}[]> {
  const out: {mailbox: string; name: string; content: string}[] = []
  const walk = async (dir: string, rel: string): Promise<void> => {
    let entries: import('node:fs').Dirent[]
    try {
      entries = await readdir(dir, {withFileTypes: true})
    } catch {
      return
    }
    for (const e of entries) {
      if (e.name.startsWith('.lmtp')) continue
      const p = path.join(dir, e.name)
      if (e.isDirectory()) {
        if (e.name === 'new') {
          for (const f of await readdir(p)) out.push({mailbox: rel, name: f, content: await readFile(path.join(p, f), 'utf8')})
        } else if (e.name !== 'tmp' && e.name !== 'cur') await walk(p, rel ? `${rel}/${e.name}` : e.name)
      }
    }
  }
  await walk(root, '')
  return out.sort((a, b) => a.mailbox.localeCompare(b.mailbox) || a.name.localeCompare(b.name))
}

/** The body of a delivered file after the three trace headers this server adds. */
export function bodyAfterTrace(content: string): string {
  const lines = content.split('\n')
  let i = 0
  if (lines[i]?.startsWith('Return-Path:')) i++
  if (lines[i]?.startsWith('Delivered-To:')) i++
  if (lines[i]?.startsWith('Received:')) {
    i++
    while (lines[i]?.startsWith('\t') || lines[i]?.startsWith(' ')) i++
  }
  return lines.slice(i).join('\n')
}
