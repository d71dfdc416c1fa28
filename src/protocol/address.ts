/**
 * Paths and mailboxes of MAIL FROM / RCPT TO (RFC 5321 section 4.1.2, RFC 6531 for SMTPUTF8).
 * Pure parsing: no policy about which mailboxes exist.
 */
import type {Reply} from './reply.js'

/** A parsed reverse-path or forward-path. */
export interface Path {
  /** The path as written between the angle brackets, source route removed (e.g. `alice@example.com`); '' for `<>`. */
  address: string
  /** Local part exactly as written (quotes kept when it was quoted); '' for `<>` and `<Postmaster>`. */
  localPart: string
  /** Local part with quoting removed (the mailbox name it denotes). */
  localPartValue: string
  /** Domain as written ('' for `<>` and `<Postmaster>`); address literals keep their brackets. */
  domain: string
  /** True for the null reverse-path `<>`. */
  isNull: boolean
  /** True for `<Postmaster>` (case-insensitive, no domain), which RFC 5321 says must always be accepted. */
  isPostmaster: boolean
  /** True when any octet is non-ASCII (needs SMTPUTF8). */
  isUtf8: boolean
}

/** Result of parsing a path: the path, or the reply the server should give. */
export type PathResult = {ok: true; path: Path; rest: string} | {ok: false; reply: Reply}

/** Limits from RFC 5321 section 4.5.3.1. */
export const PATH_LIMITS = {localPart: 64, domain: 255, path: 256} as const

/**
 * Parses `<...>` at the start of `text` (the part after `FROM:` / `TO:`), returning the path and the text after
 * the closing bracket (the parameters). `kind` selects the error replies (sender vs recipient).
 */
export function parsePath(text: string, kind: 'sender' | 'recipient'): PathResult {
  void text
  void kind
  throw new Error('parsePath: not implemented yet')
}

/** Formats a path for the wire: `<>` for the null path, else `<address>`. */
export function formatPath(address: string): string {
  return `<${address}>`
}
