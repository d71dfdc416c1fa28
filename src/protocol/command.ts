/**
 * The command codec: parses one command line (without its CRLF) into a typed Command, or into the reply the
 * server must give; and formats Commands for the client. One definition of every verb and parameter, used by
 * both sides.
 */
import type {Path} from './address.js'
import type {Reply} from './reply.js'

/** Verbs this toolkit understands. HELO and EHLO are recognised only so they can be refused (LMTP uses LHLO). */
export type Verb = 'LHLO' | 'MAIL' | 'RCPT' | 'DATA' | 'BDAT' | 'RSET' | 'NOOP' | 'QUIT' | 'VRFY' | 'STARTTLS' | 'HELO' | 'EHLO'

/** MAIL FROM parameters we support (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8). */
export interface MailParams {
  size?: number
  body?: '7BIT' | '8BITMIME'
  smtputf8?: boolean
}

/** A parsed command: a union discriminated on the verb. */
export type Command =
  | {verb: 'LHLO'; domain: string}
  | {verb: 'HELO' | 'EHLO'; argument: string}
  | {verb: 'MAIL'; from: Path; params: MailParams}
  | {verb: 'RCPT'; to: Path}
  | {verb: 'DATA'}
  | {verb: 'BDAT'; size: number; last: boolean}
  | {verb: 'RSET'}
  | {verb: 'NOOP'}
  | {verb: 'QUIT'}
  | {verb: 'VRFY'; argument: string}
  | {verb: 'STARTTLS'}

/**
 * Result of parsing one line. On failure `verb` names the verb when it was recognised (so the session can,
 * for example, still consume a malformed BDAT's octets when its size was readable: see `bdatSize`).
 */
export type ParseResult =
  | {ok: true; command: Command}
  | {ok: false; reply: Reply; verb?: Verb; bdatSize?: number}

/**
 * Parses one command line (CRLF already removed; bytes decoded as UTF-8). Verbs are case-insensitive.
 * Rejects CR, LF, NUL and other control characters anywhere (501 5.5.4), unknown verbs (500 5.5.2),
 * arguments where none are allowed (501 5.5.4), and malformed paths/parameters with the replies of
 * PROTOCOL.md. Does not apply session policy (state, SMTPUTF8 negotiation, size limits): the session does.
 */
export function parseCommand(line: string): ParseResult {
  void line
  throw new Error('parseCommand: not implemented yet')
}

/** What a client needs to format a command. */
export type OutgoingCommand =
  | {verb: 'LHLO'; domain: string}
  | {verb: 'MAIL'; from: string; params?: MailParams}
  | {verb: 'RCPT'; to: string}
  | {verb: 'DATA'}
  | {verb: 'BDAT'; size: number; last: boolean}
  | {verb: 'RSET'}
  | {verb: 'NOOP'}
  | {verb: 'QUIT'}
  | {verb: 'VRFY'; argument: string}
  | {verb: 'STARTTLS'}

/** Formats a command for the wire, without the trailing CRLF. Addresses are bracketed (`''` gives `<>`). */
export function formatCommand(cmd: OutgoingCommand): string {
  void cmd
  throw new Error('formatCommand: not implemented yet')
}
