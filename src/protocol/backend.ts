/**
 * The Backend: what the server session asks of delivery. The session knows the LMTP rules; the backend knows
 * mailboxes. Tests use an in-memory backend; `lmtp serve` uses the Maildir one in src/delivery.
 */
import type {Path} from './address.js'
import type {MailParams} from './command.js'
import type {Reply} from './reply.js'

/** Facts about the session a backend may use (for Received headers and logs). */
export interface SessionInfo {
  sessionId: string
  /** Peer as text: `127.0.0.1:51234` or `unix`. */
  peer: string
  /** The LHLO argument. */
  lhlo: string
  /** True when the session runs over TLS. */
  tls: boolean
  /** The server's host name (greeting, Received). */
  hostname: string
}

/** The envelope of one transaction as the backend sees it. */
export interface Envelope {
  transactionId: string
  from: Path
  params: MailParams
  /** Accepted recipients, in RCPT order, duplicates kept. */
  recipients: AcceptedRecipient[]
}

/** A recipient accepted at RCPT time. `index` is its position among the accepted recipients (0-based). */
export interface AcceptedRecipient {
  index: number
  path: Path
  /** Opaque backend data from checkRecipient (e.g. the resolved mailbox). */
  mailbox?: string
}

/** The backend's answer at RCPT time. */
export type RecipientCheck = {ok: true; mailbox?: string} | {ok: false; reply: Reply; mailbox?: string}

/** Where the body goes while it streams in. The session writes un-stuffed bytes with CRLF line ends. */
export interface Spool {
  /** Appends bytes; a returned promise means "wait before writing more" (backpressure). */
  write(chunk: Buffer): void | Promise<void>
  /** Called once the whole body was received; flushes what was written. */
  finish(): Promise<void>
  /** Throws the spool away (whole-message failure, abort, connection lost). Safe to call twice. */
  discard(): Promise<void>
}

/** One recipient's delivery outcome: the reply to send for it, plus facts for logs and events. */
export interface DeliveryResult {
  reply: Reply
  /** Mailbox path or name written to, when delivered. */
  mailbox?: string
  /** Octets stored for this recipient. */
  bytes?: number
  /** Milliseconds spent in fsync for this recipient's file (metrics). */
  fsyncMs?: number
  /** A local failure's cause for the log: `ERRNO path` or a short text. */
  cause?: string
}

/** What a session needs from delivery. */
export interface Backend {
  /** Decides at RCPT time whether a recipient is accepted (unknown user, unsafe name, quota when checked then). */
  checkRecipient(path: Path, session: SessionInfo): Promise<RecipientCheck>
  /** Opens a spool for the body of the transaction. */
  openSpool(envelope: Envelope, session: SessionInfo): Promise<Spool>
  /**
   * Delivers a finished spool to every accepted recipient. Calls `onResult(index, result)` once per recipient,
   * as soon as that recipient's outcome is decided (in any order: the session sends them in RCPT order).
   * A 2xx result means the message is durably stored. Resolves once every recipient has a result, and then
   * the spool may be discarded by the session.
   */
  deliver(
    envelope: Envelope,
    spool: Spool,
    session: SessionInfo,
    onResult: (index: number, result: DeliveryResult) => void,
  ): Promise<void>
}

/**
 * An error from a backend or spool that knows which reply it deserves (e.g. 452 4.3.1 when the disk is full).
 * The session answers with `reply` instead of the generic 451 4.3.0.
 */
export class BackendError extends Error {
  constructor(
    message: string,
    readonly reply: Reply,
  ) {
    super(message)
    this.name = 'BackendError'
  }
}

/** A failure's cause for the log: `ERRNO path` for a system error, else its message. */
export function causeOf(err: unknown): string {
  const e = err as NodeJS.ErrnoException | undefined
  if (e?.code && e.path) return `${e.code} ${e.path}`
  if (e?.code) return `${e.code} ${e.message}`
  return e instanceof Error ? e.message : String(err)
}
