/**
 * Running totals of a server, kept from the event bus: what `serve --json` returns at exit and what the
 * watch feed's snapshot carries.
 */
import type {EventBus} from '../protocol/events.js'

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

/** Keeps ServerTotals up to date from the bus. */
export class ServerStats {
  readonly totals: ServerTotals = {
    startedAt: Date.now(),
    connections: 0,
    openSessions: 0,
    messages: 0,
    bytes: 0,
    delivered: 0,
    deferred: 0,
    rejected: 0,
    refusedAtRcpt: 0,
  }
  /** Stops listening. */
  readonly detach: () => void

  constructor(bus: EventBus) {
    const t = this.totals
    this.detach = bus.on((e) => {
      switch (e.type) {
        case 'session.opened':
          t.connections++
          t.openSessions++
          break
        case 'session.closed':
          t.openSessions--
          break
        case 'body.received':
          t.messages++
          t.bytes += e.bytes
          break
        case 'recipient.result':
          t[e.outcome]++
          break
        case 'recipient.rejected':
          t.refusedAtRcpt++
          break
      }
    })
  }
}
