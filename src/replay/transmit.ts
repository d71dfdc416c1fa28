/**
 * One message on one pooled session: its MAIL parameters decided from its own bytes (as `send` does), the
 * transaction run by the client, its phase latencies recorded. Never throws: a session that fails mid-way gives
 * deferred ("no reply") results for the recipients in flight, and is closed.
 */
import {performance} from 'node:perf_hooks'
import {mailParamsFor} from '../client/preflight.js'
import {lostResult, type TransactionResult} from '../protocol/client.js'
import {LmtpClientError} from '../protocol/client.js'
import type {MessageInfo, OpenedMessage, ReplayItem} from './item.js'
import type {LatencyRecorder} from './latency.js'
import {lastInSession, type PooledSession} from './pool.js'

/** How every message is sent. */
export interface TransmitOptions {
  /** Send every body with BDAT. */
  bdat?: boolean
  /** Pipeline when offered (default true). */
  pipelining?: boolean
}

/** One message ready to go: the item, its opened bytes, what they are, and its envelope. */
export interface Outgoing {
  item: ReplayItem
  msg: OpenedMessage
  info: MessageInfo
  from: string
  to: string[]
  /** performance.now() when it was due (the message latency is measured from here). */
  due: number
}

/** Runs one transaction; returns its result (synthesised when the session failed before it could run). */
export async function transmit(
  s: PooledSession,
  m: Outgoing,
  o: TransmitOptions,
  latency: LatencyRecorder,
  countBytes: (n: number) => void,
): Promise<TransactionResult> {
  const caps = s.capabilities
  const params = mailParamsFor(caps, m.info, m.from, m.to)
  // A recording's SMTPUTF8 (UTF-8 header fields) is kept when offered; the addresses alone are checked above.
  if (m.item.params?.smtputf8 && caps.smtputf8) params.smtputf8 = true
  const bdat = o.bdat === true || (m.item.via === 'BDAT' && caps.chunking)
  // The reply-count check runs on each session's first and last transaction (a QUIT marker on the last costs
  // nothing: it ends the session anyway).
  const last = lastInSession(s)
  const marker = s.sent === 0 || last
  const clock = s.clock
  clock.reset()
  let result: TransactionResult
  try {
    result = await s.client.send({
      from: m.from,
      to: m.to,
      params,
      body: m.msg.body,
      bdat,
      pipelining: o.pipelining,
      pipelineData: true,
      verifyReplyCount: marker,
      lastInSession: last,
      // The end of the body (DATA's end mark or BDAT LAST) has been written: the per-recipient replies are due.
      onPhase: (phase) => {
        if (phase === 'replies') clock.bodyEnd = performance.now()
      },
    })
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err)
    if (err instanceof LmtpClientError && err.kind === 'protocol') s.violated = true
    result = {
      mail: {code: 421, enhanced: '4.4.2', lines: [why]},
      recipients: m.to.map((recipient, index) => lostResult(index, recipient, 'RCPT', why)),
      bytes: 0,
      timings: {mailMs: 0, rcptMs: 0, dataMs: 0, deliveryMs: 0, totalMs: 0},
    }
    s.client.close()
  }
  s.sent++
  if (result.violation) s.violated = true
  // The client QUIT the session (the marker, or to tell a refused marker from extra replies): replay ended it.
  if (result.sessionEnded) s.quit = true
  countBytes(result.bytes)
  clock.record(latency, result)
  latency.record('message', performance.now() - m.due)
  return result
}
