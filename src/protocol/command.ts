/**
 * The command codec: parses one command line (without its CRLF) into a typed Command, or into the reply the
 * server must give; and formats Commands for the client. One definition of every verb and parameter, used by
 * both sides.
 */
import {asciiUpper, formatPath, type Path, parsePath} from './address.js'
import {R} from './replies.js'
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

/** Every verb, in the order of PROTOCOL.md; also the set `parseCommand` recognises. */
export const VERBS: readonly Verb[] = [
  'LHLO',
  'MAIL',
  'RCPT',
  'DATA',
  'BDAT',
  'RSET',
  'NOOP',
  'QUIT',
  'VRFY',
  'STARTTLS',
  'HELO',
  'EHLO',
]

const VERB_SET: ReadonlySet<string> = new Set(VERBS)

/** CR, LF, NUL and every other C0 control character, and DEL. */
const CONTROL = /[\x00-\x1f\x7f]/

/** True when `text` holds a C0 control character or DEL (what a command line and an address must never hold). */
export function hasControlCharacter(text: string): boolean {
  return CONTROL.test(text)
}

/** Options of `parseCommand`: the few places where a server may choose leniency. */
export interface ParseOptions {
  /**
   * Accept spaces between `FROM:` / `TO:` and the `<`. RFC 5321 forbids them; some clients send them anyway.
   * Default false (501 5.5.4).
   */
  allowSpaceAfterColon?: boolean
}

/** The recognised verb for an ASCII word, case-insensitively; undefined when it is not one. */
function toVerb(word: string): Verb | undefined {
  if (!/^[A-Za-z]+$/.test(word)) return undefined
  const upper = asciiUpper(word)
  return VERB_SET.has(upper) ? (upper as Verb) : undefined
}

/**
 * The failure for a line holding control characters. It still names the verb when the first word is one, and
 * for BDAT the size when it is readable, so the session can consume the chunk and stay in step.
 */
function controlFailure(line: string): ParseResult {
  const word = /^[^ \x00-\x1f\x7f]*/.exec(line)![0]
  const verb = toVerb(word)
  if (verb === undefined) return {ok: false, reply: R.controlCharacters}
  if (verb === 'BDAT') {
    const m = /^[^ ]* (\d+)(?:$|[ \x00-\x1f\x7f])/.exec(line)
    const size = m ? Number(m[1]) : Number.NaN
    if (Number.isSafeInteger(size)) return {ok: false, reply: R.controlCharacters, verb, bdatSize: size}
  }
  return {ok: false, reply: R.controlCharacters, verb}
}

/**
 * Parses one command line (CRLF already removed; bytes decoded as UTF-8). Verbs are case-insensitive.
 * Rejects CR, LF, NUL and other control characters anywhere (501 5.5.4), unknown verbs (500 5.5.2),
 * arguments where none are allowed (501 5.5.4), and malformed paths/parameters with the replies of
 * PROTOCOL.md. Does not apply session policy (state, SMTPUTF8 negotiation, size limits): the session does.
 *
 * The verb ends at the first space; everything after that one space is the argument text. An empty argument
 * text (`DATA ` with one trailing space) counts as no arguments.
 */
export function parseCommand(line: string, options: ParseOptions = {}): ParseResult {
  if (CONTROL.test(line)) return controlFailure(line)
  const space = line.indexOf(' ')
  const verb = toVerb(space < 0 ? line : line.slice(0, space))
  if (verb === undefined) return {ok: false, reply: R.unknownCommand}
  const args = space < 0 ? '' : line.slice(space + 1)
  const fail = (reply: Reply): ParseResult => ({ok: false, reply, verb})

  switch (verb) {
    case 'DATA':
    case 'RSET':
    case 'QUIT':
    case 'STARTTLS':
      return args === '' ? {ok: true, command: {verb}} : fail(R.noArgumentsAllowed)
    case 'NOOP':
      return {ok: true, command: {verb}}
    case 'HELO':
    case 'EHLO':
      return {ok: true, command: {verb, argument: args}}
    case 'VRFY':
      return args === '' ? fail(R.badArgument) : {ok: true, command: {verb, argument: args}}
    case 'LHLO':
      // Lenient about the name itself (clients send bare host names, underscores, ...), strict about its count.
      return args === '' || args.includes(' ') ? fail(R.lhloNeedsDomain) : {ok: true, command: {verb, domain: args}}
    case 'MAIL':
      return parseMail(args, options)
    case 'RCPT':
      return parseRcpt(args, options)
    case 'BDAT':
      return parseBdat(args)
  }
}

/**
 * Splits `FROM:` / `TO:` off the argument text and parses the path; returns the path and the text after it,
 * or the failure reply.
 */
function parsePathArgument(
  args: string,
  prefix: 'FROM:' | 'TO:',
  kind: 'sender' | 'recipient',
  options: ParseOptions,
): {ok: true; path: Path; rest: string} | {ok: false; reply: Reply} {
  if (asciiUpper(args.slice(0, prefix.length)) !== prefix) return {ok: false, reply: R.badArgument}
  let text = args.slice(prefix.length)
  if (text.startsWith(' ')) {
    if (!options.allowSpaceAfterColon) return {ok: false, reply: R.badArgument}
    text = text.replace(/^ +/, '')
  }
  return parsePath(text, kind)
}

/** One `keyword[=value]` parameter; `value` is undefined when there was no `=`. */
interface Param {
  keyword: string
  value: string | undefined
}

const KEYWORD = /^[A-Za-z0-9][A-Za-z0-9-]*$/

/**
 * Splits the text after a path into parameters: nothing, or a space then parameters separated by single
 * spaces. Keywords are upper-cased. Returns undefined for malformed text (empty parameter, bad keyword).
 */
function splitParams(text: string): Param[] | undefined {
  if (text === '') return []
  if (!text.startsWith(' ')) return undefined
  const out: Param[] = []
  for (const item of text.slice(1).split(' ')) {
    const eq = item.indexOf('=')
    const keyword = eq < 0 ? item : item.slice(0, eq)
    if (!KEYWORD.test(keyword)) return undefined
    out.push({keyword: asciiUpper(keyword), value: eq < 0 ? undefined : item.slice(eq + 1)})
  }
  return out
}

/** RFC 1870: `size-value ::= 1*20DIGIT`. */
const SIZE_VALUE = /^\d{1,20}$/

function parseMail(args: string, options: ParseOptions): ParseResult {
  const fail = (reply: Reply): ParseResult => ({ok: false, reply, verb: 'MAIL'})
  const p = parsePathArgument(args, 'FROM:', 'sender', options)
  if (!p.ok) return fail(p.reply)
  const list = splitParams(p.rest)
  if (list === undefined) return fail(R.badArgument)
  const params: MailParams = {}
  const seen = new Set<string>()
  for (const {keyword, value} of list) {
    if (seen.has(keyword)) return fail(R.badArgument)
    seen.add(keyword)
    switch (keyword) {
      case 'SIZE':
        if (value === undefined || !SIZE_VALUE.test(value)) return fail(R.badSize)
        // Twenty digits can exceed 2^53; such a value is still far over any limit, which is all that matters.
        params.size = Number(value)
        break
      case 'BODY': {
        const body = value === undefined ? '' : asciiUpper(value)
        if (body !== '7BIT' && body !== '8BITMIME') return fail(R.badBody)
        params.body = body
        break
      }
      case 'SMTPUTF8':
        if (value !== undefined) return fail(R.badArgument)
        params.smtputf8 = true
        break
      default:
        return fail(R.unknownParameter)
    }
  }
  return {ok: true, command: {verb: 'MAIL', from: p.path, params}}
}

function parseRcpt(args: string, options: ParseOptions): ParseResult {
  const fail = (reply: Reply): ParseResult => ({ok: false, reply, verb: 'RCPT'})
  const p = parsePathArgument(args, 'TO:', 'recipient', options)
  if (!p.ok) return fail(p.reply)
  const list = splitParams(p.rest)
  if (list === undefined) return fail(R.badArgument)
  // No RCPT extension (DSN NOTIFY/ORCPT, ...) is advertised, so every parameter is unknown.
  if (list.length > 0) return fail(R.unknownParameter)
  return {ok: true, command: {verb: 'RCPT', to: p.path}}
}

function parseBdat(args: string): ParseResult {
  const space = args.indexOf(' ')
  const sizeText = space < 0 ? args : args.slice(0, space)
  const size = /^\d+$/.test(sizeText) ? Number(sizeText) : Number.NaN
  if (!Number.isSafeInteger(size)) return {ok: false, reply: R.badBdat, verb: 'BDAT'}
  if (space < 0) return {ok: true, command: {verb: 'BDAT', size, last: false}}
  if (asciiUpper(args.slice(space + 1)) === 'LAST') return {ok: true, command: {verb: 'BDAT', size, last: true}}
  return {ok: false, reply: R.badBdat, verb: 'BDAT', bdatSize: size}
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

/**
 * Checks a client-supplied address, LHLO name or VRFY argument before it goes on the wire. Control characters
 * (CR and LF above all) would let the caller inject a command line; `<` and `>` would let an address break out
 * of its brackets and smuggle parameters.
 */
function checkOutgoing(what: string, text: string, brackets: boolean): void {
  if (CONTROL.test(text)) {
    throw new TypeError(`${what} ${JSON.stringify(text)} contains a control character (CR, LF, NUL, ...): refusing to send it`)
  }
  if (brackets && /[<>]/.test(text)) {
    throw new TypeError(`${what} ${JSON.stringify(text)} contains '<' or '>': give the address without brackets`)
  }
}

/** Checks a size for SIZE= or BDAT: a non-negative safe integer. */
function checkSize(what: string, size: number): void {
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new TypeError(`${what} must be a non-negative integer number of octets, got ${size}`)
  }
}

/**
 * Formats a command for the wire, without the trailing CRLF. Addresses are bracketed (`''` gives `<>`).
 * MAIL parameters come in the order SIZE, BODY, SMTPUTF8. Throws a TypeError for an address, LHLO name or
 * VRFY argument holding control characters (or, for addresses and the LHLO name, `<` / `>`, or spaces in the
 * LHLO name), and for a negative or fractional size: a client must never be turned into an injection tool.
 */
export function formatCommand(cmd: OutgoingCommand): string {
  switch (cmd.verb) {
    case 'LHLO':
      checkOutgoing('LHLO name', cmd.domain, true)
      if (cmd.domain === '' || cmd.domain.includes(' ')) {
        throw new TypeError(`LHLO name ${JSON.stringify(cmd.domain)} must be one non-empty word (a domain or address literal)`)
      }
      return `LHLO ${cmd.domain}`
    case 'MAIL': {
      checkOutgoing('sender address', cmd.from, true)
      let line = `MAIL FROM:${formatPath(cmd.from)}`
      const params = cmd.params ?? {}
      if (params.size !== undefined) {
        checkSize('SIZE', params.size)
        line += ` SIZE=${params.size}`
      }
      if (params.body !== undefined) line += ` BODY=${params.body}`
      if (params.smtputf8) line += ' SMTPUTF8'
      return line
    }
    case 'RCPT':
      checkOutgoing('recipient address', cmd.to, true)
      return `RCPT TO:${formatPath(cmd.to)}`
    case 'BDAT':
      checkSize('BDAT size', cmd.size)
      return cmd.last ? `BDAT ${cmd.size} LAST` : `BDAT ${cmd.size}`
    case 'VRFY':
      checkOutgoing('VRFY argument', cmd.argument, false)
      if (cmd.argument === '') throw new TypeError('VRFY needs a non-empty argument')
      return `VRFY ${cmd.argument}`
    case 'DATA':
    case 'RSET':
    case 'NOOP':
    case 'QUIT':
    case 'STARTTLS':
      return cmd.verb
  }
}
