/**
 * Scripted feed lines for the watch tests: a small DSL that produces the events a real server emits for a
 * session (open, LHLO, MAIL, RCPTs, DATA, per-recipient results, close), with controllable times.
 */
import type {LmtpEvent} from '../../src/protocol/events.js'
import type {FeedLine, FeedSnapshot, ServerInfo} from '../../src/protocol/feed-format.js'
import {emptyTotals} from '../../src/protocol/totals.js'

/** A recipient in a scripted transaction: refused at RCPT, or accepted with its reply after DATA. */
export type ScriptRecipient =
  | {to: string; rcpt: [number, string, string]}
  | {to: string; data: [number, string, string]; mailbox?: string; latencyMs?: number}

/** Builds events with increasing times from `t0`. */
export class EventScript {
  at: number
  constructor(t0 = 1_700_000_000_000) {
    this.at = t0
  }

  private base(sessionId: string, step = 1): {at: number; sessionId: string; role: 'server'} {
    this.at += step
    return {at: this.at, sessionId, role: 'server'}
  }

  hello(server: Partial<ServerInfo> = {}): FeedLine {
    return {
      type: 'hello',
      feed: 'lmtp-events',
      version: 1,
      at: this.at,
      server: {hostname: 'mx.test', pid: 4242, listeners: ['127.0.0.1:2424'], startedAt: this.at - 65_000, ...server},
    }
  }

  snapshot(partial: Partial<FeedSnapshot> = {}): FeedLine {
    return {type: 'snapshot', at: this.at, totals: emptyTotals(this.at - 65_000), sessions: [], recent: [], ...partial}
  }

  open(sessionId: string, peer = '127.0.0.1:50000'): LmtpEvent[] {
    return [
      {...this.base(sessionId), type: 'session.opened', peer, listener: '127.0.0.1:2424', transport: 'tcp'},
      {...this.base(sessionId), type: 'reply', code: 220, text: 'mx.test LMTP ready'},
    ]
  }

  lhlo(sessionId: string, name: string): LmtpEvent[] {
    return [
      {...this.base(sessionId), type: 'command', verb: 'LHLO', line: `LHLO ${name}`},
      {...this.base(sessionId), type: 'reply', code: 250, text: 'mx.test PIPELINING ENHANCEDSTATUSCODES'},
      {...this.base(sessionId), type: 'lhlo', name},
    ]
  }

  /** MAIL, the RCPTs; with `body` also DATA, the body and the per-recipient results. */
  transaction(sessionId: string, txId: string, from: string, rcpts: ScriptRecipient[], body = 1000): LmtpEvent[] {
    const ev: LmtpEvent[] = [
      {...this.base(sessionId), type: 'command', verb: 'MAIL', line: `MAIL FROM:<${from}>`},
      {...this.base(sessionId), type: 'reply', code: 250, enhanced: '2.1.0', text: 'sender ok'},
      {...this.base(sessionId), type: 'transaction.started', transactionId: txId, from},
    ]
    const accepted: Extract<ScriptRecipient, {data: unknown}>[] = []
    for (const r of rcpts) {
      ev.push({...this.base(sessionId), type: 'command', verb: 'RCPT', line: `RCPT TO:<${r.to}>`})
      if ('rcpt' in r) {
        const [code, enhanced, text] = r.rcpt
        ev.push({...this.base(sessionId, 3), type: 'reply', code, enhanced, text})
        ev.push({...this.base(sessionId), type: 'recipient.rejected', transactionId: txId, recipient: r.to, code, enhanced, text})
      } else {
        ev.push({...this.base(sessionId), type: 'reply', code: 250, enhanced: '2.1.5', text: 'recipient ok'})
        ev.push({...this.base(sessionId), type: 'recipient.accepted', transactionId: txId, index: accepted.length, recipient: r.to})
        accepted.push(r)
      }
    }
    if (body <= 0 || accepted.length === 0) return ev
    ev.push({...this.base(sessionId), type: 'command', verb: 'DATA', line: 'DATA'})
    ev.push({...this.base(sessionId), type: 'reply', code: 354, text: 'start mail input'})
    ev.push({...this.base(sessionId), type: 'body.received', transactionId: txId, bytes: body, via: 'DATA'})
    const counts = {delivered: 0, deferred: 0, rejected: 0}
    accepted.forEach((r, index) => {
      const [code, enhanced, text] = r.data
      const outcome = code < 400 ? 'delivered' : code < 500 ? 'deferred' : 'rejected'
      counts[outcome]++
      ev.push({...this.base(sessionId), type: 'reply', code, enhanced, text})
      ev.push({
        ...this.base(sessionId),
        type: 'recipient.result',
        transactionId: txId,
        index,
        recipient: r.to,
        outcome,
        code,
        enhanced,
        text,
        mailbox: r.mailbox,
        bytes: body,
        latencyMs: r.latencyMs ?? 7,
      })
    })
    ev.push({...this.base(sessionId), type: 'transaction.finished', transactionId: txId, recipients: accepted.length, ...counts, aborted: false})
    return ev
  }

  quitAndClose(sessionId: string): LmtpEvent[] {
    return [
      {...this.base(sessionId), type: 'command', verb: 'QUIT', line: 'QUIT'},
      {...this.base(sessionId), type: 'reply', code: 221, enhanced: '2.0.0', text: 'closing connection'},
      {...this.base(sessionId), type: 'session.closed', end: 'quit', reason: 'client QUIT', bytesIn: 500, bytesOut: 300},
    ]
  }
}
