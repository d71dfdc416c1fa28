/**
 * `lmtp serve --tui`: the watch dashboard in the server's own terminal, fed straight from the server's bus (no
 * socket). The terminal belongs to the dashboard, so log lines go to its footer (and to stderr when stderr is
 * redirected, e.g. `2>serve.log`); quitting the dashboard stops the server gracefully.
 */
import type {EventBus} from '../protocol/events.js'
import type {LmtpServer} from '../server/server.js'
import {BusFeed} from '../watch/feed-client.js'
import {type DashboardHandle, runDashboard} from './render-watch.js'

/** What `serve` plugs into runServer's options. */
export interface ServeTui {
  /** Receives the server's log lines. */
  log: (line: string) => void
  /** Starts the dashboard once the server listens. */
  onReady: (server: LmtpServer, bus: EventBus) => void
  /** Resolves when the server should stop: the dashboard was quit, or SIGTERM/SIGINT. */
  until: Promise<void>
}

/** Prepares the dashboard; it is drawn from `onReady` on. */
export function startServeTui(o: {hostname: string}): ServeTui {
  const lines: string[] = []
  const stderrIsFile = process.stderr.isTTY !== true
  let handle: DashboardHandle | undefined
  let finished = false
  let stop: () => void = () => {}
  const until = new Promise<void>((resolve) => {
    stop = () => {
      finished = true
      process.off('SIGTERM', onSignal)
      process.off('SIGINT', onSignal)
      resolve()
    }
  })
  const onSignal = (): void => {
    handle?.close()
    stop()
  }
  process.once('SIGTERM', onSignal)
  process.once('SIGINT', onSignal)
  return {
    log: (line) => {
      if (finished) {
        // The dashboard is gone: the terminal is ours again.
        process.stdout.write(`${line}\n`)
        return
      }
      lines.push(line)
      if (lines.length > 100) lines.splice(0, lines.length - 50)
      if (stderrIsFile) process.stderr.write(`${line}\n`)
    },
    onReady: (server, bus) => {
      const startedAt = Date.now()
      const feed = new BusFeed(bus, () => ({
        hostname: o.hostname,
        pid: process.pid,
        listeners: server.listeners.map((l) => l.address),
        startedAt,
      }))
      handle = runDashboard(feed, {title: 'lmtp serve', logLine: () => lines[lines.length - 1]})
      void handle.done.then(stop)
    },
    until,
  }
}
