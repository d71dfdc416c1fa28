/**
 * Server totals: the counts a server keeps since it started (sessions, messages, bytes, outcomes). Counted in
 * one place, {@link countEvent}, from the events: the server's ServerStats and a watcher's model both apply it,
 * so `serve --json`, the feed's snapshot, the metrics and the dashboard agree by construction.
 */
import type {LmtpEvent} from './events.js'

/** Totals since the server started. */
export interface ServerTotals {
  startedAt: number
  connections: number
  openSessions: number
  messages: number
  bytes: number
  delivered: number
  deferred: number
  rejected: number
  /** Recipients refused at RCPT time. */
  refusedAtRcpt: number
}

/** Zero totals starting at `startedAt`. */
export function emptyTotals(startedAt = Date.now()): ServerTotals {
  return {startedAt, connections: 0, openSessions: 0, messages: 0, bytes: 0, delivered: 0, deferred: 0, rejected: 0, refusedAtRcpt: 0}
}

/** Counts one event into `t` (the one place a total is counted). */
export function countEvent(t: ServerTotals, e: LmtpEvent): void {
  switch (e.type) {
    case 'session.opened':
      t.connections++
      t.openSessions++
      return
    case 'session.closed':
      t.openSessions = Math.max(0, t.openSessions - 1)
      return
    case 'body.received':
      t.messages++
      t.bytes += e.bytes
      return
    case 'recipient.result':
      t[e.outcome]++
      return
    case 'recipient.rejected':
      t.refusedAtRcpt++
      return
    default:
      return
  }
}
