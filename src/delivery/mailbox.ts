/**
 * Mailbox resolution: which directory under the Maildir root a recipient's mail goes to.
 *
 * Layout (all names lower-cased, Unicode NFC-normalised):
 * - `ROOT/<domain>/<local-part>/` for an ordinary recipient;
 * - `ROOT/postmaster/` for `<Postmaster>` and `postmaster@<any domain>` (RFC 5321 section 4.5.1: one mailbox an
 *   operator reads). The dotless domain `postmaster` is therefore reserved and refused, so that no recipient's
 *   directory can land inside the postmaster Maildir;
 * - `ROOT/.lmtp-spool/` holds bodies being received. Domains never start with a dot, so it cannot collide.
 *
 * The raw local part is never pasted into a path. A name is mapped only when every character is on an allow
 * list (ASCII letters, digits, the RFC 5322 atext specials except `/` and `%`, inner dots, and Unicode letters,
 * marks and digits), and the result is checked again after compatibility normalisation (so look-alikes such as
 * U+2215 DIVISION SLASH, U+FF0F FULLWIDTH SOLIDUS or U+FF0E FULLWIDTH FULL STOP are refused), and finally the
 * resolved path must lie inside the root. Refused: empty names, `.`/`..`, a leading dot, `..` anywhere, `/`,
 * `\`, NUL and every control character, whitespace, `%` (percent-encoding such as `%2e%2e` and the old
 * `user%host` routing hack), address literals (`[192.0.2.1]`) and names longer than RFC 5321 allows.
 */
import path from 'node:path'
import type {Path} from '../protocol/address.js'
import {PATH_LIMITS} from '../protocol/address.js'

/** Name of the postmaster Maildir directly under the root. */
export const POSTMASTER_DIR = 'postmaster'

/** Name of the spool directory directly under the root (bodies in flight). */
export const SPOOL_DIR = '.lmtp-spool'

/** A recipient mapped to a mailbox. */
export interface ResolvedMailbox {
  /** Lookup key: `local@domain`, normalised (NFC, lower case); `postmaster` for the postmaster mailbox. */
  key: string
  /** Directory relative to the root, with `/` separators: `example.com/alice` or `postmaster`. */
  name: string
  /** Absolute directory of the Maildir. */
  dir: string
  /** True for the postmaster mailbox. */
  postmaster: boolean
}

/** Outcome of resolution: the mailbox, or why it cannot be mapped safely (for logs, not for the wire). */
export type MailboxResolution = {ok: true; mailbox: ResolvedMailbox} | {ok: false; reason: string}

/** ASCII characters allowed in a local part besides letters and digits (atext without `/` and `%`, plus `.`). */
const ASCII_SPECIALS = new Set("!#$&'*+-=?^_`{|}~.")

/** True when `ch` (one code point) may appear in a mailbox directory name. */
function allowedChar(ch: string): boolean {
  const cp = ch.codePointAt(0)!
  if (cp < 0x80) return /[A-Za-z0-9]/.test(ch) || ASCII_SPECIALS.has(ch)
  return /^[\p{L}\p{M}\p{N}]$/u.test(ch)
}

/** Checks the structural rules shared by local parts and domain labels; returns a reason or undefined. */
function structuralProblem(name: string, what: string): string | undefined {
  if (name === '') return `empty ${what}`
  if (name.startsWith('.')) return `${what} starts with a dot`
  if (name.includes('..')) return `${what} contains '..'`
  for (const bad of ['/', '\\', '%', '\0']) {
    if (name.includes(bad)) return `${what} contains ${JSON.stringify(bad)}`
  }
  return undefined
}

/**
 * Normalises a local part (already unquoted: `Path.localPartValue`) to its directory name, or returns the reason
 * it cannot be used. NFC, lower case, allow-listed characters, RFC 5321 length limit (64 octets).
 */
export function normaliseLocalPart(value: string): {ok: true; name: string} | {ok: false; reason: string} {
  const name = value.normalize('NFC').toLowerCase()
  const structural = structuralProblem(name, 'local part')
  if (structural) return {ok: false, reason: structural}
  if (Buffer.byteLength(name, 'utf8') > PATH_LIMITS.localPart) {
    return {ok: false, reason: `local part longer than ${PATH_LIMITS.localPart} octets`}
  }
  for (const ch of name) {
    if (!allowedChar(ch)) {
      const cp = ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')
      return {ok: false, reason: `local part contains a character that cannot be used in a mailbox name (U+${cp})`}
    }
  }
  // Compatibility forms: a letter-class character whose NFKC form brings back a separator or dot trick.
  const compat = name.normalize('NFKC')
  const compatProblem = structuralProblem(compat, 'local part (compatibility form)')
  if (compatProblem) return {ok: false, reason: compatProblem}
  return {ok: true, name}
}

/**
 * Normalises a domain to its directory name, or returns the reason it cannot be used. Accepts dot-separated
 * labels of letters, digits and inner hyphens (Unicode labels too, NFC and lower-cased); refuses address
 * literals, the reserved name `postmaster`, and names longer than RFC 5321 allows (255 octets).
 */
export function normaliseDomain(value: string): {ok: true; name: string} | {ok: false; reason: string} {
  const name = value.normalize('NFC').toLowerCase().replace(/\.$/, '')
  if (name.startsWith('[')) return {ok: false, reason: 'address literals are not mapped to mailboxes'}
  const structural = structuralProblem(name, 'domain')
  if (structural) return {ok: false, reason: structural}
  if (Buffer.byteLength(name, 'utf8') > PATH_LIMITS.domain) {
    return {ok: false, reason: `domain longer than ${PATH_LIMITS.domain} octets`}
  }
  for (const label of name.split('.')) {
    if (!/^[\p{L}\p{N}](?:[\p{L}\p{M}\p{N}-]{0,61}[\p{L}\p{M}\p{N}])?$/u.test(label)) {
      return {ok: false, reason: `domain label ${JSON.stringify(label)} is not a valid host name label`}
    }
  }
  if (name.normalize('NFKC') !== name && structuralProblem(name.normalize('NFKC'), 'domain')) {
    return {ok: false, reason: 'domain contains a look-alike of a separator or dot'}
  }
  if (name === POSTMASTER_DIR) return {ok: false, reason: `domain ${JSON.stringify(name)} is reserved`}
  return {ok: true, name}
}

/** True when the path denotes a postmaster: `<Postmaster>` or `postmaster@<any domain>` (case-insensitive). */
export function isPostmasterPath(p: Path): boolean {
  return p.isPostmaster || p.localPartValue.toLowerCase() === 'postmaster'
}

/** True when `candidate` is `root` itself or lies inside it (both absolute, already resolved). */
export function isInside(root: string, candidate: string): boolean {
  const rel = path.relative(root, candidate)
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel)
}

/**
 * Maps a recipient path to its Maildir under `root`, or says why it cannot be mapped safely. Pure: touches no
 * files (creation happens at delivery).
 */
export function resolveMailbox(root: string, p: Path): MailboxResolution {
  const absRoot = path.resolve(root)
  if (isPostmasterPath(p)) {
    const dir = path.resolve(absRoot, POSTMASTER_DIR)
    return {ok: true, mailbox: {key: POSTMASTER_DIR, name: POSTMASTER_DIR, dir, postmaster: true}}
  }
  if (p.isNull) return {ok: false, reason: 'the null path has no mailbox'}
  const local = normaliseLocalPart(p.localPartValue)
  if (!local.ok) return local
  const domain = normaliseDomain(p.domain)
  if (!domain.ok) return domain
  const dir = path.resolve(absRoot, domain.name, local.name)
  // Belt and braces: the checks above already exclude every way out of the root.
  if (!isInside(absRoot, dir) || path.dirname(path.dirname(dir)) !== absRoot) {
    return {ok: false, reason: 'mailbox path would leave the Maildir root'}
  }
  return {
    ok: true,
    mailbox: {key: `${local.name}@${domain.name}`, name: `${domain.name}/${local.name}`, dir, postmaster: false},
  }
}

/**
 * The lookup key of an address as written in a users file (`Alice@Example.COM` -> `alice@example.com`), or the
 * reason it is not a mappable mailbox address. Quotes around the local part are removed. `postmaster@...` and
 * `Postmaster` give the key `postmaster`.
 */
export function addressKey(address: string): {ok: true; key: string} | {ok: false; reason: string} {
  const at = address.lastIndexOf('@')
  if (address.toLowerCase() === 'postmaster') return {ok: true, key: POSTMASTER_DIR}
  if (at <= 0 || at === address.length - 1) return {ok: false, reason: 'expected local-part@domain'}
  let localRaw = address.slice(0, at)
  if (localRaw.length >= 2 && localRaw.startsWith('"') && localRaw.endsWith('"')) {
    localRaw = localRaw.slice(1, -1).replace(/\\(.)/g, '$1')
  }
  if (localRaw.toLowerCase() === 'postmaster') return {ok: true, key: POSTMASTER_DIR}
  const local = normaliseLocalPart(localRaw)
  if (!local.ok) return local
  const domain = normaliseDomain(address.slice(at + 1))
  if (!domain.ok) return domain
  return {ok: true, key: `${local.name}@${domain.name}`}
}

/** The lookup key of a recipient path (see addressKey), or the reason it cannot be mapped. */
export function pathKey(p: Path): {ok: true; key: string} | {ok: false; reason: string} {
  if (isPostmasterPath(p)) return {ok: true, key: POSTMASTER_DIR}
  const local = normaliseLocalPart(p.localPartValue)
  if (!local.ok) return local
  const domain = normaliseDomain(p.domain)
  if (!domain.ok) return domain
  return {ok: true, key: `${local.name}@${domain.name}`}
}
