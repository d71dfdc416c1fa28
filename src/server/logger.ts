/**
 * The server log: one line per session (when it closes) and one per recipient outcome, as readable text or
 * as one JSON object per line. It only listens to the event bus.
 */
import type {EventBus, LmtpEvent} from '../protocol/events.js'

/** Log format. */
export type LogFormat = 'text' | 'json'

interface SessionFacts {
  peer: string
  proxiedBy?: string
  listener: string
  openedAt: number
  lhlo?: string
  tls?: string
  messages: number
  recipients: number
}

/** Subscribes a logger to the bus; returns the unsubscribe function. `write` receives complete lines. */
export function attachLogger(bus: EventBus, format: LogFormat, write: (line: string) => void): () => void {
  const sessions = new Map<string, SessionFacts>()
  const out = (record: Record<string, unknown>, text: string): void => {
    write(format === 'json' ? JSON.stringify(record) : text)
  }
  return bus.on((e: LmtpEvent) => {
    switch (e.type) {
      case 'session.opened':
        sessions.set(e.sessionId, {peer: e.peer, proxiedBy: e.proxiedBy, listener: e.listener, openedAt: e.at, messages: 0, recipients: 0})
        return
      case 'lhlo': {
        const s = sessions.get(e.sessionId)
        if (s) s.lhlo = e.name
        return
      }
      case 'tls': {
        const s = sessions.get(e.sessionId)
        if (s) s.tls = `${e.protocol} ${e.cipher}`
        return
      }
      case 'body.received': {
        const s = sessions.get(e.sessionId)
        if (s) s.messages++
        return
      }
      case 'recipient.result': {
        const s = sessions.get(e.sessionId)
        if (s) s.recipients++
        const time = new Date(e.at).toISOString()
        out(
          {
            time,
            level: e.outcome === 'delivered' ? 'info' : 'warn',
            event: 'recipient',
            session: e.sessionId,
            transaction: e.transactionId,
            recipient: e.recipient,
            outcome: e.outcome,
            code: e.code,
            enhanced: e.enhanced,
            text: e.text,
            mailbox: e.mailbox,
            bytes: e.bytes,
            ms: e.latencyMs,
          },
          `${time} ${e.sessionId} ${e.outcome} <${e.recipient}> ${e.code} ${e.enhanced ?? ''} ${e.mailbox ? `mailbox=${e.mailbox} ` : ''}bytes=${e.bytes} ms=${e.latencyMs} (${e.text})`,
        )
        return
      }
      case 'session.closed': {
        const s = sessions.get(e.sessionId)
        sessions.delete(e.sessionId)
        const time = new Date(e.at).toISOString()
        const ms = s ? e.at - s.openedAt : 0
        out(
          {
            time,
            level: 'info',
            event: 'session',
            session: e.sessionId,
            peer: s?.peer,
            proxiedBy: s?.proxiedBy,
            listener: s?.listener,
            lhlo: s?.lhlo,
            tls: s?.tls,
            messages: s?.messages ?? 0,
            recipients: s?.recipients ?? 0,
            bytesIn: e.bytesIn,
            bytesOut: e.bytesOut,
            ms,
            reason: e.reason,
          },
          `${time} ${e.sessionId} session peer=${s?.peer ?? '?'}${s?.proxiedBy ? ` via=${s.proxiedBy}` : ''} lhlo=${s?.lhlo ?? '-'}${s?.tls ? ` tls="${s.tls}"` : ''} messages=${s?.messages ?? 0} recipients=${s?.recipients ?? 0} in=${e.bytesIn} out=${e.bytesOut} ms=${ms} (${e.reason})`,
        )
        return
      }
      default:
        return
    }
  })
}
