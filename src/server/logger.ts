/**
 * The server log. One {@link Logger} is built once from `--log-format` and passed to everything that logs
 * (the server's own lines, warnings of the Maildir backend, the recorder and the event feed). The bus
 * observer {@link attachLogger} writes one line per recipient outcome (RCPT-time refusals included) and one
 * per session when it closes. Text lines are `key=value` after a time and the session id, so an operator can
 * grep them (`grep 'id=<delivery id>'` joins Postfix's `status=sent (250 ... <id> delivered)` to ours); JSON
 * lines carry the same fields plus `time`, `level` and `event`.
 *
 * Written by hand rather than with pino (removed): a line is one JSON.stringify of a flat object handed to a
 * sink that may be stdout, stderr or the --tui footer; the text format, which pino does not make, is the
 * default; and two or three lines per message cost little next to the fsyncs each message waits for.
 */
import {type EventBus, type LmtpEvent, SESSION_END_TEXT} from '../protocol/events.js'

/** Log format. */
export type LogFormat = 'text' | 'json'

/** Severity of a line. */
export type LogLevel = 'info' | 'warn' | 'error'

/** Writes log lines in one format. */
export interface Logger {
  readonly format: LogFormat
  /**
   * Logs one line: in JSON the fields (plus time, level, event); in text the time, then `text`. Fields whose
   * value is undefined are left out.
   */
  log(level: LogLevel, event: string, fields: Record<string, unknown>, text: string, at?: number): void
  /**
   * A line that is mostly a message (`lmtp serve: ...` in text; in JSON `{event, ...fields, message}`, the event
   * `message` unless the fields name one).
   */
  say(level: LogLevel, message: string, fields?: Record<string, unknown>): void
  /** A warning that is only a message (e.g. a quota file that could not be read). */
  warn(message: string): void
}

/** Builds the logger of a server: `write` receives complete lines without the newline. */
export function createLogger(format: LogFormat, write: (line: string) => void): Logger {
  return {
    format,
    log(level, event, fields, text, at = Date.now()) {
      const time = new Date(at).toISOString()
      write(format === 'json' ? JSON.stringify({time, level, event, ...fields}) : `${time} ${text}`)
    },
    say(level, message, fields = {}) {
      const {event = 'message', ...rest} = fields
      this.log(level, String(event), {...rest, message}, `${level === 'info' ? 'lmtp serve: ' : 'warning: '}${message}`)
    },
    warn(message) {
      this.say('warn', message)
    },
  }
}

interface TransactionFacts {
  id: string
  from: string
  declaredSize?: number
  messageId?: string
  size?: number
}

interface SessionFacts {
  peer: string
  proxiedBy?: string
  listener: string
  openedAt: number
  lhlo?: string
  tls?: string
  messages: number
  /** Recipients accepted at RCPT (counted whether or not the transaction then completed). */
  recipients: number
  tx?: TransactionFacts
}

/** `key=value`, or nothing when the value is undefined. */
function kv(key: string, value: string | number | undefined): string {
  return value === undefined || value === '' ? '' : ` ${key}=${value}`
}

/** Subscribes the per-recipient and per-session lines to the bus; returns the unsubscribe function. */
export function attachLogger(bus: EventBus, logger: Logger): () => void {
  const sessions = new Map<string, SessionFacts>()
  return bus.on((e: LmtpEvent) => {
    if (e.role !== 'server') return
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
      case 'transaction.started': {
        const s = sessions.get(e.sessionId)
        if (s) s.tx = {id: e.transactionId, from: e.from, declaredSize: e.size}
        return
      }
      case 'recipient.accepted': {
        const s = sessions.get(e.sessionId)
        if (s) s.recipients++
        return
      }
      case 'body.received': {
        const s = sessions.get(e.sessionId)
        if (!s) return
        s.messages++
        if (s.tx?.id === e.transactionId) {
          s.tx.messageId = e.messageId
          s.tx.size = e.bytes
        }
        return
      }
      case 'recipient.rejected':
      case 'recipient.result': {
        const s = sessions.get(e.sessionId)
        const tx = s?.tx?.id === e.transactionId ? s.tx : undefined
        const rcpt = e.type === 'recipient.rejected'
        const outcome = rcpt ? (e.code >= 500 ? 'rejected' : 'deferred') : e.outcome
        const fields = {
          session: e.sessionId,
          id: e.transactionId,
          outcome,
          stage: rcpt ? 'RCPT' : 'DATA',
          client: s?.peer,
          from: tx?.from,
          messageId: tx?.messageId,
          size: rcpt ? tx?.declaredSize : (tx?.size ?? e.bytes),
          recipient: e.recipient,
          mailbox: e.mailbox,
          code: e.code,
          enhanced: e.enhanced,
          cause: rcpt ? undefined : e.cause,
          ms: rcpt ? undefined : e.latencyMs,
          text: e.text,
        }
        const text =
          `${e.sessionId} ${outcome} id=${e.transactionId} stage=${fields.stage}${kv('client', fields.client)}` +
          ` from=<${fields.from ?? ''}>${kv('message-id', fields.messageId)}${kv('size', fields.size)} to=<${e.recipient}>` +
          `${kv('mailbox', fields.mailbox)} code=${e.code}${kv('dsn', e.enhanced)}${kv('cause', fields.cause)}${kv('ms', fields.ms)} (${e.text})`
        logger.log(outcome === 'delivered' ? 'info' : 'warn', 'recipient', fields, text, e.at)
        return
      }
      case 'transaction.finished': {
        const s = sessions.get(e.sessionId)
        if (s?.tx?.id === e.transactionId) s.tx = undefined
        return
      }
      case 'session.closed': {
        const s = sessions.get(e.sessionId)
        sessions.delete(e.sessionId)
        const ms = s ? e.at - s.openedAt : 0
        const fields = {
          session: e.sessionId,
          client: s?.peer,
          proxiedBy: s?.proxiedBy,
          listener: s?.listener,
          lhlo: s?.lhlo,
          tls: s?.tls,
          messages: s?.messages ?? 0,
          recipients: s?.recipients ?? 0,
          bytesIn: e.bytesIn,
          bytesOut: e.bytesOut,
          ms,
          end: e.end,
          reason: SESSION_END_TEXT[e.end] ?? e.reason,
        }
        const text =
          `${e.sessionId} session${kv('client', s?.peer)}${kv('via', s?.proxiedBy)} lhlo=${s?.lhlo ?? '-'}${s?.tls ? ` tls="${s.tls}"` : ''}` +
          ` messages=${fields.messages} recipients=${fields.recipients} in=${e.bytesIn} out=${e.bytesOut} ms=${ms}` +
          ` end=${e.end} (${fields.reason})`
        logger.log('info', 'session', fields, text, e.at)
        return
      }
      default:
        return
    }
  })
}
