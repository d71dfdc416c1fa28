/**
 * Typed events: what happened in a session, emitted by the server (and by clients) onto one bus. The
 * dashboard, the recorder, the logger and the metrics all listen here; nothing reaches into the server.
 * Every event is a plain JSON-serialisable object (the watch feed sends them as NDJSON).
 */

/** Which side emitted an event. */
export type Role = 'server' | 'client'

/** Fields every event carries. */
export interface EventBase {
  /** Milliseconds since the epoch. */
  at: number
  /** The session (one connection) this belongs to. */
  sessionId: string
  role: Role
}

/** How a recipient ended: delivered (2xx), deferred (4xx, try again later) or rejected (5xx). */
export type Outcome = 'delivered' | 'deferred' | 'rejected'

/** Outcome of a reply code. */
export function outcomeOf(code: number): Outcome {
  if (code >= 200 && code < 400) return 'delivered'
  if (code >= 400 && code < 500) return 'deferred'
  return 'rejected'
}

/** A session opened: peer address (or `unix`), the listener it arrived on. */
export interface SessionOpenedEvent extends EventBase {
  type: 'session.opened'
  /** The client: from the PROXY header when the connection came through a balancer. */
  peer: string
  /** The balancer's address, when the peer came from a PROXY protocol header. */
  proxiedBy?: string
  listener: string
  transport: 'tcp' | 'unix'
}
/**
 * How a session ended. quit: the client sent QUIT. client-closed: the client closed the connection without
 * QUIT, outside a message body. client-dropped-in-body: the client closed while sending a body (after 354, or
 * between BDAT chunks). idle-timeout, too-many-errors (a limit): the server closed it with 421. shutdown: the
 * server is stopping. tls-failed: the TLS handshake after STARTTLS failed.
 */
export type SessionEnd =
  | 'quit'
  | 'client-closed'
  | 'client-dropped-in-body'
  | 'idle-timeout'
  | 'too-many-errors'
  | 'shutdown'
  | 'tls-failed'

/** How a session ended, in the words the log and the dashboard use. */
export const SESSION_END_TEXT: Readonly<Record<SessionEnd, string>> = {
  quit: 'client QUIT',
  'client-closed': 'client closed without QUIT',
  'client-dropped-in-body': 'client dropped in the message body',
  'idle-timeout': 'idle timeout',
  'too-many-errors': 'too many errors (limit)',
  shutdown: 'server shutdown',
  'tls-failed': 'TLS handshake failed',
}

/** A session closed; `end` says how, `reason` is the same in words. */
export interface SessionClosedEvent extends EventBase {
  type: 'session.closed'
  end: SessionEnd
  reason: string
  bytesIn: number
  bytesOut: number
}
/** A command line (sanitised, at most 512 characters; body bytes are never included). */
export interface CommandEvent extends EventBase {
  type: 'command'
  verb: string
  line: string
}
/** A reply sent (server) or received (client). */
export interface ReplyEvent extends EventBase {
  type: 'reply'
  code: number
  enhanced?: string
  text: string
}
/** LHLO completed. */
export interface LhloEvent extends EventBase {
  type: 'lhlo'
  name: string
}
/** TLS was negotiated on the session. */
export interface TlsEvent extends EventBase {
  type: 'tls'
  protocol: string
  cipher: string
}
/** MAIL accepted: a transaction began. */
export interface TransactionStartedEvent extends EventBase {
  type: 'transaction.started'
  transactionId: string
  from: string
  /** The size the client declared with MAIL's SIZE parameter, if any. */
  size?: number
}
/** A recipient was accepted at RCPT (index = position among accepted recipients). */
export interface RecipientAcceptedEvent extends EventBase {
  type: 'recipient.accepted'
  transactionId: string
  index: number
  recipient: string
}
/** A recipient was refused at RCPT. */
export interface RecipientRejectedEvent extends EventBase {
  type: 'recipient.rejected'
  transactionId: string
  recipient: string
  /** The mailbox the recipient maps to, when the refusal is about it (quota at RCPT). */
  mailbox?: string
  code: number
  enhanced?: string
  text: string
}
/** The body was received in full (before delivery). */
export interface BodyReceivedEvent extends EventBase {
  type: 'body.received'
  transactionId: string
  bytes: number
  via: 'DATA' | 'BDAT'
  /** The Message-ID header of the message, when it has one (read from the header section as it streams). */
  messageId?: string
}
/** A recipient's final outcome after the body. */
export interface RecipientResultEvent extends EventBase {
  type: 'recipient.result'
  transactionId: string
  index: number
  recipient: string
  outcome: Outcome
  code: number
  enhanced?: string
  text: string
  /** The mailbox (server side): written to when delivered, or the one that refused (quota, local error). */
  mailbox?: string
  bytes: number
  /** Milliseconds from end of data to this recipient's reply. */
  latencyMs: number
  /** Milliseconds spent in fsync (file and directory) for this recipient's file, when stored. */
  fsyncMs?: number
  /** For a local failure: what went wrong, as `ERRNO path` (e.g. `EACCES /srv/mail/example.com/alice/tmp`). */
  cause?: string
}
/** A transaction ended (all per-recipient replies sent), or was reset/aborted. */
export interface TransactionFinishedEvent extends EventBase {
  type: 'transaction.finished'
  transactionId: string
  recipients: number
  delivered: number
  deferred: number
  rejected: number
  aborted: boolean
}

/** Every event, discriminated on `type`. */
export type LmtpEvent =
  | SessionOpenedEvent
  | SessionClosedEvent
  | CommandEvent
  | ReplyEvent
  | LhloEvent
  | TlsEvent
  | TransactionStartedEvent
  | RecipientAcceptedEvent
  | RecipientRejectedEvent
  | BodyReceivedEvent
  | RecipientResultEvent
  | TransactionFinishedEvent

/** The `type` of an event. */
export type LmtpEventType = LmtpEvent['type']

/** Receives events. */
export type EventListener = (event: LmtpEvent) => void

/**
 * The in-process event bus: synchronous fan-out to listeners. A listener that throws is removed, so a broken
 * observer can never break delivery.
 */
export class EventBus {
  private readonly listeners = new Set<EventListener>()

  /** Subscribes; returns the unsubscribe function. */
  on(listener: EventListener): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /** Delivers an event to every listener. */
  emit(event: LmtpEvent): void {
    for (const l of this.listeners) {
      try {
        l(event)
      } catch {
        this.listeners.delete(l)
      }
    }
  }

  /** Number of listeners (for tests and the snapshot). */
  get size(): number {
    return this.listeners.size
  }
}
