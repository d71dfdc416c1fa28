/**
 * Mounting the dashboard on the terminal (for `lmtp watch` and `lmtp serve --tui`). Imported dynamically by
 * those commands only, so the other commands never load Ink or React.
 */
import {render} from 'ink'
import type {FeedSource} from '../watch/feed-client.js'
import {WatchApp} from './watch-app.js'

/** Options of {@link runDashboard}. */
export interface DashboardOptions {
  title?: string
  logLine?: () => string | undefined
  /** Use the terminal's alternate screen (default: when stdout is a terminal). */
  alternateScreen?: boolean
}

/** A mounted dashboard. */
export interface DashboardHandle {
  /** Resolves when the user quits (q, ctrl-c) or {@link DashboardHandle.close} is called. */
  done: Promise<void>
  close(): void
}

/** Draws the dashboard until the user quits; at most 10 frames a second. */
export function runDashboard(source: FeedSource, o: DashboardOptions = {}): DashboardHandle {
  const alt = o.alternateScreen ?? process.stdout.isTTY === true
  if (alt) process.stdout.write('\x1b[?1049h\x1b[H')
  const instance = render(<WatchApp source={source} title={o.title} logLine={o.logLine} />, {
    exitOnCtrlC: true,
    patchConsole: true,
    maxFps: 10,
  })
  let closed = false
  const restore = (): void => {
    if (closed) return
    closed = true
    if (alt) process.stdout.write('\x1b[?1049l')
  }
  process.once('exit', restore)
  const done = instance.waitUntilExit().then(restore, restore)
  return {
    done,
    close: () => {
      instance.unmount()
    },
  }
}
