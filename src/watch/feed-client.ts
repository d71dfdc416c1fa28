/**
 * Reading an event feed: from the server's Unix socket (with reconnect), or from an in-process bus (for
 * `serve --tui`). Both are a {@link FeedSource}, which is all the dashboard knows about.
 */
import net from 'node:net'
import {checkTrustedPath} from '../net/socket-file.js'
import type {EventBus} from '../protocol/events.js'
import {FEED_VERSION, type FeedLine, type ServerInfo, parseFeedLine} from '../protocol/feed-format.js'
import {WatchModel} from '../protocol/feed-model.js'

/** Whether the dashboard is connected to its server. */
export type FeedStatus =
  | {state: 'connecting'; path: string}
  | {state: 'connected'; path: string}
  | {state: 'disconnected'; path: string; reason: string; retryInMs?: number}
  | {state: 'in-process'}
  | {state: 'failed'; reason: string}

/** Receives feed lines (parsed, plus the raw text when there is one). */
export type FeedLineListener = (line: FeedLine, raw?: string) => void

/** A source of feed lines. `subscribe` starts it; the returned function stops it. */
export interface FeedSource {
  subscribe(onLine: FeedLineListener, onStatus: (status: FeedStatus) => void): () => void
}

/** Options of {@link SocketFeed}. */
export interface SocketFeedOptions {
  /** Socket paths to try, in order (the first that answers wins). */
  paths: string[]
  /** Keep retrying when no server answers or it goes away (default true). */
  reconnect?: boolean
  /** First retry delay (default 500 ms), doubled up to `maxRetryMs` (default 5 s). */
  retryMs?: number
  maxRetryMs?: number
  /** Longest line accepted (default 16 MiB): a snapshot can be large, but not endless. */
  maxLineBytes?: number
}

/** Why a connect failed, in words an operator can act on. */
function describeConnectError(path: string, err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ENOENT':
      return `no lmtp serve event feed at ${path}`
    case 'ECONNREFUSED':
      return `nothing is listening at ${path} (a server that stopped uncleanly?)`
    case 'EACCES':
      return `permission denied on ${path} (the feed is private to the user running lmtp serve)`
    default:
      return `cannot connect to ${path}: ${err.message}`
  }
}

/** A feed read from a server's socket; reconnects with backoff when the server stops and comes back. */
export class SocketFeed implements FeedSource {
  private stopped = true
  private socket: net.Socket | undefined
  private timer: NodeJS.Timeout | undefined
  private finish: (() => void) | undefined
  /** Resolves when the feed ends for good (stopped, or gone with reconnect off, or a fatal error). */
  readonly done: Promise<void>
  /** Set when the feed ended because of an error (no server and no reconnect, an unknown feed version). */
  error: string | undefined

  constructor(private readonly o: SocketFeedOptions) {
    this.done = new Promise((resolve) => {
      this.finish = resolve
    })
  }

  /** Starts connecting; the returned function stops. */
  subscribe(onLine: FeedLineListener, onStatus: (status: FeedStatus) => void): () => void {
    this.stopped = false
    const retryMs = this.o.retryMs ?? 500
    const maxRetryMs = this.o.maxRetryMs ?? 5000
    const maxLine = this.o.maxLineBytes ?? 16 * 1024 * 1024
    let delay = retryMs

    const end = (error?: string): void => {
      if (error) {
        this.error = error
        onStatus({state: 'failed', reason: error})
      }
      this.stop()
    }

    const retry = (path: string, reason: string, clean = false): void => {
      if (this.stopped) return
      // Without reconnect, a server that said bye ends the feed cleanly; anything else is an error.
      if (this.o.reconnect === false) {
        end(clean ? undefined : reason)
        return
      }
      onStatus({state: 'disconnected', path, reason, retryInMs: delay})
      this.timer = setTimeout(attempt, delay)
      delay = Math.min(maxRetryMs, delay * 2)
    }

    const attempt = async (): Promise<void> => {
      let lastReason = 'no socket path'
      const first = this.o.paths[0] ?? ''
      onStatus({state: 'connecting', path: first})
      for (const path of this.o.paths) {
        if (this.stopped) return
        // A feed socket someone else planted (another user's /tmp/lmtp-<uid>/) is never shown as live.
        const problem = await checkTrustedPath(path, 'socket')
        if (problem) return end(`refusing the event feed ${problem}; remove it, or run lmtp watch as the user of that lmtp serve`)
        const result = await connect(path)
        if (this.stopped) {
          if (typeof result !== 'string') result.destroy()
          return
        }
        if (typeof result === 'string') {
          lastReason = result
          continue
        }
        delay = retryMs
        this.read(path, result, onLine, onStatus, maxLine, end, retry)
        return
      }
      retry(first, lastReason)
    }
    void attempt()
    return () => this.stop()
  }

  /** Stops reading and retrying. */
  stop(): void {
    this.stopped = true
    if (this.timer) clearTimeout(this.timer)
    this.socket?.destroy()
    this.socket = undefined
    this.finish?.()
  }

  /** Pauses reading (backpressure from a slow consumer: the server then drops for us, not stalls). */
  pause(): void {
    this.socket?.pause()
  }

  /** Resumes reading. */
  resume(): void {
    this.socket?.resume()
  }

  private read(
    path: string,
    socket: net.Socket,
    onLine: FeedLineListener,
    onStatus: (status: FeedStatus) => void,
    maxLine: number,
    end: (error?: string) => void,
    retry: (path: string, reason: string, clean?: boolean) => void,
  ): void {
    this.socket = socket
    onStatus({state: 'connected', path})
    let buffer = ''
    let first = true
    let bye: string | undefined
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      buffer += chunk
      let nl = buffer.indexOf('\n')
      while (nl >= 0) {
        const raw = buffer.slice(0, nl)
        buffer = buffer.slice(nl + 1)
        nl = buffer.indexOf('\n')
        const line = parseFeedLine(raw)
        if (!line) continue
        if (first) {
          first = false
          if (line.type !== 'hello' || line.feed !== 'lmtp-events') {
            socket.destroy()
            return end(`${path} is not an lmtp event feed`)
          }
          if (line.version > FEED_VERSION) {
            socket.destroy()
            return end(`the feed at ${path} speaks version ${line.version}; this lmtp watch understands ${FEED_VERSION}: upgrade lmtp`)
          }
        }
        if (line.type === 'bye') bye = line.reason
        onLine(line, raw)
        if (this.stopped) return
      }
      if (buffer.length > maxLine) {
        socket.destroy()
        end(`a line from ${path} is longer than ${maxLine} bytes`)
      }
    })
    socket.on('error', () => {})
    socket.on('close', () => {
      if (this.socket !== socket || this.stopped) return
      this.socket = undefined
      retry(path, bye ? `server stopped (${bye})` : 'connection to the server lost', bye !== undefined)
    })
  }
}

function connect(path: string): Promise<net.Socket | string> {
  return new Promise((resolve) => {
    const socket = net.connect({path})
    socket.once('connect', () => {
      socket.removeAllListeners('error')
      resolve(socket)
    })
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(describeConnectError(path, err)))
  })
}

/**
 * A feed straight from an in-process bus (`serve --tui`): a hello and a snapshot from its own model, then every
 * event. It subscribes at construction and folds what happens before someone subscribes into that snapshot, so
 * the first sessions are not missed while the dashboard mounts.
 */
export class BusFeed implements FeedSource {
  private readonly model = new WatchModel()
  private listener: FeedLineListener | undefined
  private readonly detach: () => void

  constructor(
    bus: EventBus,
    private readonly server: () => ServerInfo,
  ) {
    this.model.apply({type: 'hello', feed: 'lmtp-events', version: FEED_VERSION, at: Date.now(), server: server()})
    this.detach = bus.on((e) => {
      if (this.listener) return this.listener(e)
      this.model.apply(e)
    })
  }

  subscribe(onLine: FeedLineListener, onStatus: (status: FeedStatus) => void): () => void {
    onStatus({state: 'in-process'})
    onLine({type: 'hello', feed: 'lmtp-events', version: FEED_VERSION, at: Date.now(), server: this.server()})
    onLine({
      type: 'snapshot',
      at: Date.now(),
      totals: {...this.model.totals},
      sessions: this.model.sessionSnapshots(),
      recent: this.model.recentOutcomes(),
    })
    this.listener = onLine
    return () => {
      this.listener = undefined
      this.detach()
    }
  }
}
