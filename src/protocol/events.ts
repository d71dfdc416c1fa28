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
/** A session closed; `reason` says why (quit, peer closed, idle timeout, too many errors, shutdown, error). */
export interface SessionClosedEvent extends EventBase {
  type: 'session.closed'
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
  /** Mailbox written to (server side) when delivered. */
  mailbox?: string
  bytes: number
  /** Milliseconds from end of data to this recipient's reply. */
  latencyMs: number
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
