/**
 * Running totals of a server, kept from the event bus with the shared {@link countEvent}: what `serve --json`
 * returns at exit, what the watch feed's snapshot and the metrics read.
 */
import type {EventBus} from '../protocol/events.js'
import {type ServerTotals, countEvent, emptyTotals} from '../protocol/totals.js'

/** Keeps ServerTotals up to date from the bus. */
export class ServerStats {
  readonly totals: ServerTotals = emptyTotals()
  /** Stops listening. */
  readonly detach: () => void

  constructor(bus: EventBus) {
    this.detach = bus.on((e) => countEvent(this.totals, e))
  }
}
