/**
 * The client's waits and its one error type, shared by the client (client.ts) and its transactions
 * (transaction.ts).
 */
import type {Reply} from './reply.js'

/** Client waits, in milliseconds (RFC 5321 section 4.5.3.2 defaults). */
export interface ClientTimeouts {
  /** Waiting for the 220 greeting (5 min). */
  greeting: number
  /** MAIL, RCPT, LHLO and other commands (5 min). */
  command: number
  /** Waiting for the 354 after DATA (2 min). */
  dataInit: number
  /** Each block of body data, i.e. how long a write may stay blocked (3 min). */
  dataBlock: number
  /** After the end of data, for each per-recipient reply; restarts after each reply (10 min). */
  dataEnd: number
}

/** Why the client gave up on a session. */
export type ClientErrorKind = 'timeout' | 'connection-lost' | 'protocol' | 'refused'

/** Which of the client's timers (ClientTimeouts) a wait ran on. */
export type ClientTimer = keyof ClientTimeouts

/**
 * A client-side failure; `kind` tells timeouts, lost connections and server protocol violations apart, and for a
 * timeout `timer` says which wait ran out (so tests assert on which timer fired, not on elapsed time).
 */
export class LmtpClientError extends Error {
  constructor(
    readonly kind: ClientErrorKind,
    message: string,
    readonly reply?: Reply,
    readonly timer?: ClientTimer,
  ) {
    super(message)
    this.name = 'LmtpClientError'
  }
}
