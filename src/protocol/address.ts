/**
 * Paths and mailboxes of MAIL FROM / RCPT TO (RFC 5321 section 4.1.2, RFC 6531 for SMTPUTF8).
 * Pure parsing: no policy about which mailboxes exist.
 */
import type {Reply} from './reply.js'
import {R} from './replies.js'

/** A parsed reverse-path or forward-path. */
export interface Path {
  /** The path as written between the angle brackets, source route removed (e.g. `alice@example.com`); '' for `<>`. */
  address: string
  /** Local part exactly as written (quotes kept when it was quoted); '' for `<>` and `<Postmaster>`. */
  localPart: string
  /** Local part with quoting removed (the mailbox name it denotes); '' for `<>` and `<Postmaster>`. */
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

/** Longest DNS label in octets (RFC 1035 section 2.3.4); checked for ASCII labels. */
const MAX_LABEL = 63

/** Length of a string in UTF-8 octets: every protocol limit counts octets, not UTF-16 code units. */
export function utf8Length(text: string): number {
  return Buffer.byteLength(text, 'utf8')
}

/** ASCII-only upper-casing: `toUpperCase` maps some non-ASCII letters (`ſ`, `ı`) onto ASCII ones. */
export function asciiUpper(text: string): string {
  return text.replace(/[a-z]/g, (c) => String.fromCharCode(c.charCodeAt(0) - 32))
}

const ASCII_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$/
// RFC 6531 lets a label be a U-label: here any mix of letters, digits, hyphens and non-ASCII characters.
const UTF8_LABEL = /^[A-Za-z0-9\u0080-\uffff](?:[A-Za-z0-9\u0080-\uffff-]*[A-Za-z0-9\u0080-\uffff])?$/
const NON_ASCII = /[^\x00-\x7f]/

/**
 * True for a domain name as RFC 5321 `Domain` allows it (RFC 6531: labels may be UTF-8): dot-separated
 * labels of letters, digits and inner hyphens, no empty label, no trailing dot, at most 255 octets.
 */
export function isDomain(text: string): boolean {
  if (text === '' || utf8Length(text) > PATH_LIMITS.domain) return false
  for (const label of text.split('.')) {
    if (NON_ASCII.test(label)) {
      if (!UTF8_LABEL.test(label)) return false
    } else if (label.length > MAX_LABEL || !ASCII_LABEL.test(label)) {
      return false
    }
  }
  return true
}

/** True for an RFC 5321 IPv4 address literal body: four decimal numbers 0-255 of 1-3 digits. */
function isIpv4(text: string): boolean {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text)
  return m?.slice(1).every((n) => Number(n) <= 255) === true
}

/**
 * True for an RFC 5321 `IPv6-addr` (section 4.1.3): eight groups, or a `::` standing for at least two zero
 * groups with at most six explicit groups; an IPv4 tail counts as two groups. No zone index.
 */
function isIpv6(text: string): boolean {
  let s = text
  if (s.includes('.')) {
    const colon = s.lastIndexOf(':')
    if (colon < 0 || !isIpv4(s.slice(colon + 1))) return false
    s = `${s.slice(0, colon + 1)}0:0`
  }
  const hex = /^[0-9A-Fa-f]{1,4}$/
  const halves = s.split('::')
  if (halves.length > 2) return false
  if (halves.length === 1) {
    const groups = s.split(':')
    return groups.length === 8 && groups.every((g) => hex.test(g))
  }
  const groups = halves.flatMap((h) => (h === '' ? [] : h.split(':')))
  return groups.length <= 6 && groups.every((g) => hex.test(g))
}

/** True for an address literal in brackets: `[192.0.2.1]` or `[IPv6:2001:db8::1]` (tag case-insensitive). */
export function isAddressLiteral(text: string): boolean {
  if (!text.startsWith('[') || !text.endsWith(']') || text.length < 3) return false
  const body = text.slice(1, -1)
  if (asciiUpper(body.slice(0, 5)) === 'IPV6:') return isIpv6(body.slice(5))
  // General address literals (`tag:content`) need an IANA-registered tag, and none is registered.
  return isIpv4(body)
}

/** True for a domain or an address literal: what may follow the `@` of a mailbox. */
export function isDomainOrLiteral(text: string): boolean {
  return text.startsWith('[') ? isAddressLiteral(text) : isDomain(text)
}

// atext of RFC 5322 plus, under RFC 6531, any non-ASCII character.
const DOT_STRING = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\uffff]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\uffff]+)*$/

/** Parses a quoted local part (`"..."`, quotes included); returns its unquoted value or undefined if malformed. */
function unquote(text: string): string | undefined {
  if (text.length < 2 || !text.startsWith('"') || !text.endsWith('"')) return undefined
  let value = ''
  for (let i = 1; i < text.length - 1; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x5c) {
      // quoted-pairSMTP: a backslash then one printable ASCII character (space included).
      i++
      const next = text.charCodeAt(i)
      if (i >= text.length - 1 || next < 0x20 || next > 0x7e) return undefined
      value += text[i]
    } else if (c === 0x22 || c < 0x20 || c === 0x7f) {
      return undefined
    } else {
      value += text[i]
    }
  }
  return value
}

/**
 * Index of the `>` closing a path that starts at index 0, skipping `>` inside a quoted local part;
 * -1 when there is none.
 */
function closingBracket(text: string): number {
  let quoted = false
  for (let i = 1; i < text.length; i++) {
    const c = text[i]
    if (quoted && c === '\\') i++
    else if (c === '"') quoted = !quoted
    else if (c === '>' && !quoted) return i
  }
  return -1
}

/**
 * Parses `<...>` at the start of `text` (the part after `FROM:` / `TO:`), returning the path and the text after
 * the closing bracket (the parameters). `kind` selects the error replies (sender vs recipient).
 *
 * `<>` is legal only for a sender; `<Postmaster>` (no domain) only for a recipient. A source route
 * (`<@a,@b:user@d>`) is checked and dropped. Any other mailbox needs a domain or address literal. A path holding
 * U+FFFD is refused: that is what undecodable UTF-8 turns into, so the mailbox it names is unknowable.
 */
export function parsePath(text: string, kind: 'sender' | 'recipient'): PathResult {
  const fail: PathResult = {ok: false, reply: kind === 'sender' ? R.badSender : R.badRecipientSyntax}
  if (!text.startsWith('<')) return fail
  const close = closingBracket(text)
  if (close < 0) return fail
  const inner = text.slice(1, close)
  const rest = text.slice(close + 1)
  if (utf8Length(text.slice(0, close + 1)) > PATH_LIMITS.path || inner.includes('\ufffd')) return fail
  const isUtf8 = NON_ASCII.test(inner)
  const base = {isNull: false, isPostmaster: false, isUtf8}

  if (inner === '') {
    if (kind === 'recipient') return fail
    return {ok: true, rest, path: {...base, address: '', localPart: '', localPartValue: '', domain: '', isNull: true}}
  }
  if (kind === 'recipient' && asciiUpper(inner) === 'POSTMASTER') {
    return {
      ok: true,
      rest,
      path: {...base, address: inner, localPart: '', localPartValue: '', domain: '', isPostmaster: true},
    }
  }

  let mailbox = inner
  if (inner.startsWith('@')) {
    // A-d-l: "@" Domain *("," "@" Domain) ":" — domains hold no ':', so the first one ends the route.
    const colon = inner.indexOf(':')
    if (colon < 0) return fail
    const route = inner.slice(0, colon).split(',')
    if (!route.every((hop) => hop.startsWith('@') && isDomain(hop.slice(1)))) return fail
    mailbox = inner.slice(colon + 1)
  }

  const at = mailbox.lastIndexOf('@')
  if (at < 0) return fail
  const localPart = mailbox.slice(0, at)
  const domain = mailbox.slice(at + 1)
  let localPartValue: string | undefined
  if (localPart.startsWith('"')) localPartValue = unquote(localPart)
  else if (DOT_STRING.test(localPart)) localPartValue = localPart
  if (localPartValue === undefined || utf8Length(localPart) > PATH_LIMITS.localPart) return fail
  if (!isDomainOrLiteral(domain)) return fail
  return {ok: true, rest, path: {...base, address: mailbox, localPart, localPartValue, domain}}
}

/** Formats a path for the wire: `<>` for the null path, else `<address>`. */
export function formatPath(address: string): string {
  return `<${address}>`
}
