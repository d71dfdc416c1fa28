/**
 * The event feed: `lmtp serve` publishes its bus on a local Unix socket (mode 0600) as NDJSON, for `lmtp watch`
 * and for scripts. Each watcher gets a `hello`, a `snapshot`, then every event. A watcher that reads slowly (or
 * not at all) never slows delivery: each has a bounded output buffer; past it, events are dropped for that
 * watcher only, and once it catches up it is told how many (`dropped`) and sent a fresh `snapshot`.
 */
import {existsSync} from 'node:fs'
import {chmod, mkdir, unlink} from 'node:fs/promises'
import net from 'node:net'
import {dirname} from 'node:path'
import {CliError, EXIT} from '../cli/exit-codes.js'
import type {EventBus} from '../protocol/events.js'
import {FEED_VERSION, type FeedLine, type ServerInfo, defaultEventsPaths} from '../protocol/feed-format.js'
import {SERVER_LIMITS, WatchModel} from '../protocol/feed-model.js'
import type {ServerTotals} from '../protocol/totals.js'
import {checkTrustedPath, clearStaleSocketFile} from '../net/socket-file.js'

/** Settings of a feed. */
export interface EventFeedOptions {
  /** Socket path. */
  path: string
  /** Create the socket's parent directory as a private (0700) directory and refuse one that is not. */
  privateDir?: boolean
  bus: EventBus
  /** The server's totals (kept by ServerStats), read at each snapshot. */
  totals: () => ServerTotals
  /** Who the server is, read when a watcher connects (listeners are known only once bound). */
  server: () => ServerInfo
  /** Bytes a watcher may have waiting in its socket before its events are dropped (default 1 MiB). */
  maxBufferBytes?: number
  /** Watchers at once (default 64); one more is told `bye` and closed. */
  maxWatchers?: number
}

/** A failure to open the feed socket; the message says what to do. */
export class EventFeedError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message)
    this.name = 'EventFeedError'
  }
}

/** What the feed knows about one watcher (for tests and diagnostics). */
export interface WatcherStats {
  /** Bytes waiting in its socket now. */
  buffered: number
  /** Events not sent to it since it connected. */
  dropped: number
}

interface Watcher {
  socket: net.Socket
  /** Events dropped since the last `dropped` line. */
  pending: number
  total: number
}

/** A running feed. */
export class EventFeed {
  private readonly model = new WatchModel(SERVER_LIMITS)
  private readonly watchers = new Set<Watcher>()
  private readonly detach: () => void
  private server: net.Server | undefined
  private readonly maxBuffer: number
  private readonly maxWatchers: number
  private stopped = false

  /** Subscribes to the bus at once (so the snapshot misses nothing); call {@link listen} to open the socket. */
  constructor(private readonly o: EventFeedOptions) {
    this.maxBuffer = o.maxBufferBytes ?? 1024 * 1024
    this.maxWatchers = o.maxWatchers ?? 64
    this.detach = o.bus.on((e) => {
      this.model.apply(e)
      if (this.watchers.size === 0) return
      const line = `${JSON.stringify(e)}\n`
      for (const w of this.watchers) this.send(w, line)
    })
  }

  /** The socket path. */
  get path(): string {
    return this.o.path
  }

  /** Watchers connected now. */
  get watcherCount(): number {
    return this.watchers.size
  }

  /** Per-watcher buffer and drop counts. */
  watcherStats(): WatcherStats[] {
    return [...this.watchers].map((w) => ({buffered: w.socket.writableLength, dropped: w.total}))
  }

  /** Binds the socket (mode 0600). A stale socket file is replaced; a live one is an error. */
  async listen(): Promise<void> {
    const path = this.o.path
    if (this.o.privateDir) await ensurePrivateDir(dirname(path))
    await clearStale(path)
    const server = net.createServer((socket) => this.accept(socket))
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(new EventFeedError(`cannot open the event feed at ${path}: ${err.message}`, err.code ?? 'EIO')),
      )
      // The socket file is created inside listen(): a tight umask keeps it private from the first moment.
      const umask = process.umask(0o177)
      try {
        server.listen(path, () => resolve())
      } finally {
        process.umask(umask)
      }
    })
    server.on('error', () => {})
    await chmod(path, 0o600)
    this.server = server
  }

  /** Says `bye` to every watcher, closes the socket and removes its file. */
  async stop(reason = 'server stopping'): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    this.detach()
    const bye = `${JSON.stringify({type: 'bye', at: Date.now(), reason} satisfies FeedLine)}\n`
    for (const w of this.watchers) {
      w.socket.end(bye)
      setTimeout(() => w.socket.destroy(), 1000).unref()
    }
    const server = this.server
    if (server) {
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await unlink(this.o.path).catch(() => {})
    }
  }

  private accept(socket: net.Socket): void {
    socket.on('error', () => {})
    if (this.stopped || this.watchers.size >= this.maxWatchers) {
      const reason = this.stopped ? 'server stopping' : `too many watchers (${this.maxWatchers})`
      socket.end(`${JSON.stringify({type: 'bye', at: Date.now(), reason} satisfies FeedLine)}\n`)
      setTimeout(() => socket.destroy(), 1000).unref()
      return
    }
    const w: Watcher = {socket, pending: 0, total: 0}
    this.watchers.add(w)
    socket.on('close', () => this.watchers.delete(w))
    socket.on('drain', () => {
      if (w.pending > 0) this.recover(w)
    })
    // Watchers have nothing to say: read and discard, so a chatty one cannot fill our buffers.
    socket.resume()
    const hello: FeedLine = {type: 'hello', feed: 'lmtp-events', version: FEED_VERSION, at: Date.now(), server: this.o.server()}
    socket.write(`${JSON.stringify(hello)}\n${this.snapshotLine()}`)
  }

  private snapshotLine(): string {
    const line: FeedLine = {
      type: 'snapshot',
      at: Date.now(),
      totals: {...this.o.totals()},
      sessions: this.model.sessionSnapshots(),
      recent: this.model.recentOutcomes(),
    }
    return `${JSON.stringify(line)}\n`
  }

  private send(w: Watcher, line: string): void {
    const socket = w.socket
    if (socket.destroyed || !socket.writable) return
    if (w.pending > 0) {
      // Behind: resume only once half the buffer has gone out. The snapshot then covers this event too.
      if (socket.writableLength <= this.maxBuffer / 2) {
        w.pending++
        w.total++
        this.recover(w)
        return
      }
      w.pending++
      w.total++
      return
    }
    if (socket.writableLength + line.length > this.maxBuffer) {
      w.pending = 1
      w.total++
      return
    }
    socket.write(line)
  }

  /** Tells a watcher that caught up how many events it missed, then re-syncs it with a snapshot. */
  private recover(w: Watcher): void {
    const dropped: FeedLine = {type: 'dropped', at: Date.now(), count: w.pending, total: w.total}
    w.pending = 0
    w.socket.write(`${JSON.stringify(dropped)}\n${this.snapshotLine()}`)
  }
}

/** Where `--events` points, or the default. */
export interface EventsTarget {
  path: string
  /** True for the per-user default path (its directory is created private; a busy one is only a warning). */
  isDefault: boolean
}

/**
 * The default feed path for a server: `$XDG_RUNTIME_DIR/lmtp/events.sock` when that runtime directory exists,
 * else `/tmp/lmtp-<uid>/events.sock`.
 */
export function chooseDefaultEventsPath(env: NodeJS.ProcessEnv = process.env): string {
  const paths = defaultEventsPaths(env)
  return paths.find((p) => existsSync(dirname(dirname(p)))) ?? paths[paths.length - 1]!
}

/**
 * Opens the feed for `lmtp serve`. With an explicit `--events PATH`, failing to open it stops the server
 * (a CliError); at the default path it only logs a warning (e.g. a second server of the same user: its
 * watchers need `--events`), because delivery matters more than the dashboard.
 */
export async function openEventFeed(
  target: EventsTarget,
  options: Omit<EventFeedOptions, 'path' | 'privateDir'>,
  warn: (message: string) => void,
): Promise<EventFeed | undefined> {
  const feed = new EventFeed({...options, path: target.path, privateDir: target.isDefault})
  try {
    await feed.listen()
    return feed
  } catch (err) {
    await feed.stop()
    if (!(err instanceof EventFeedError)) throw err
    if (target.isDefault) {
      warn(`${err.message}; running without an event feed (pass --events PATH to give this server its own)`)
      return undefined
    }
    throw new CliError(`--events ${err.message}`, err.code === 'EADDRINUSE' ? EXIT.unavailable : EXIT.ioErr)
  }
}

async function ensurePrivateDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, {recursive: true, mode: 0o700})
  } catch (err) {
    throw new EventFeedError(`cannot create ${dir}: ${(err as Error).message}`, (err as NodeJS.ErrnoException).code ?? 'EIO')
  }
  const problem = await checkTrustedPath(dir, 'directory', {private: true})
  if (problem) throw new EventFeedError(`${problem}: remove it, or pass --events PATH`, 'EPERM')
}

async function clearStale(path: string): Promise<void> {
  const state = await clearStaleSocketFile(path)
  if (state === 'not-socket') throw new EventFeedError(`${path} exists and is not a socket: remove it or choose another --events path`, 'EEXIST')
  if (state === 'live') throw new EventFeedError(`${path} is in use by another running lmtp serve`, 'EADDRINUSE')
}
