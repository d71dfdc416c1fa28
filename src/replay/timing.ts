/**
 * Phase latencies of one transaction to the microsecond (MAIL, each RCPT, each reply after the end of data),
 * from the client's own command and reply events stamped with performance.now(). The client's results carry
 * millisecond timings only, too coarse for a load tool against a sink that answers in 50 µs.
 */
import {performance} from 'node:perf_hooks'
import type {TransactionResult} from '../protocol/client.js'
import type {LmtpEvent} from '../protocol/events.js'
import type {LatencyRecorder} from './latency.js'

/** Listens to one session's client events and turns the last transaction's into phase latencies. */
export class TransactionClock {
  private commands: {verb: string; t: number}[] = []
  private replies: number[] = []
  /** When the end of the body was written (the client's `replies` phase), set by the sender. */
  bodyEnd: number | undefined

  /** The client's event callback. */
  readonly emit = (e: LmtpEvent): void => {
    if (e.type === 'command') this.commands.push({verb: e.verb, t: performance.now()})
    else if (e.type === 'reply') this.replies.push(performance.now())
  }

  /** Forgets the previous transaction. */
  reset(): void {
    this.commands = []
    this.replies = []
    this.bodyEnd = undefined
  }

  /** Records the MAIL, RCPT and per-recipient latencies of the transaction just run. */
  record(latency: LatencyRecorder, result: TransactionResult): void {
    const {commands, replies} = this
    const mail = commands.findIndex((c) => c.verb === 'MAIL')
    if (mail < 0) return
    if (replies.length > 0 && result.mail.code > 0) latency.record('mail', replies[0]! - commands[mail]!.t)
    commands
      .filter((c) => c.verb === 'RCPT')
      .forEach((c, k) => {
        const r = result.recipients[k]
        if (r && !(r.stage === 'RCPT' && r.synthetic) && replies[1 + k] !== undefined) latency.record('rcpt', replies[1 + k]! - c.t)
      })
    const end = this.bodyEnd
    if (end === undefined || result.violation) return
    // After the end of the body come the per-recipient replies, in order, then the marker's (if any).
    const after = result.recipients.filter((r) => r.stage === 'DATA' && !r.synthetic).length
    for (const t of replies.filter((t) => t >= end).slice(0, after)) latency.record('data', t - end)
  }
}
