/**
 * The header block of a stored message, and the envelope replay derives from it: recipients from the first
 * Delivered-To, else the first X-Original-To, else every address in To; the sender from Return-Path, else
 * the mbox From_ line's sender, else From. A corpus message carries no envelope, so this is the best guess
 * an operator expects; `--to` / `--from` override it.
 */

/** The longest header block read before a message is declared broken (1 MiB). */
export const MAX_HEADER_BLOCK = 1024 * 1024

/** One header field, unfolded. */
export interface HeaderField {
  /** Name as written. */
  name: string
  /** Value with folding removed and outer whitespace trimmed. */
  value: string
}

/** Why a header block is not usable. */
export class HeaderError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'HeaderError'
  }
}

/**
 * Finds the end of the header block in `buf`: the offset just past the empty line (CRLF CRLF or LF LF),
 * or -1 when the block has not ended yet. A message that starts with an empty line has no headers: 0.
 */
export function headerEnd(buf: Buffer): number {
  if (buf[0] === 0x0a) return 1
  if (buf[0] === 0x0d && buf[1] === 0x0a) return 2
  let i = 0
  for (;;) {
    const nl = buf.indexOf(0x0a, i)
    if (nl < 0) return -1
    const next = nl + 1
    if (buf[next] === 0x0a) return next + 1
    if (buf[next] === 0x0d && buf[next + 1] === 0x0a) return next + 2
    if (next >= buf.length) return -1
    i = next
  }
}

/**
 * Parses a header block (the bytes before the empty line). Throws HeaderError when the first line is not a
 * header field: such a "message" has no headers and is skipped by replay.
 */
export function parseHeaderBlock(block: Buffer): HeaderField[] {
  const text = block.toString('latin1')
  const lines = text.split(/\r?\n/)
  if (lines.at(-1) === '') lines.pop()
  if (lines.length === 0) throw new HeaderError('the message has no headers (it starts with an empty line)')
  const fields: HeaderField[] = []
  for (const [n, line] of lines.entries()) {
    if ((line.startsWith(' ') || line.startsWith('\t')) && fields.length > 0) {
      fields[fields.length - 1]!.value += ` ${line.trim()}`
      continue
    }
    const m = /^([\x21-\x39\x3b-\x7e]+)[ \t]*:(.*)$/.exec(line)
    if (!m) {
      if (n === 0) throw new HeaderError('the message has no headers (its first line is not a header field)')
      // A broken line inside the block: keep what was parsed, as mail readers do.
      break
    }
    fields.push({name: m[1]!, value: m[2]!.trim()})
  }
  // Values were read as latin1 so that any byte survives; re-decode as UTF-8 where that is what they are.
  return fields.map((f) => ({name: f.name, value: Buffer.from(f.value, 'latin1').toString('utf8')}))
}

/** The first field with this name (case-insensitive). */
export function headerValue(fields: readonly HeaderField[], name: string): string | undefined {
  const lower = name.toLowerCase()
  return fields.find((f) => f.name.toLowerCase() === lower)?.value
}

/** Every field with this name (case-insensitive), in order. */
export function headerValues(fields: readonly HeaderField[], name: string): string[] {
  const lower = name.toLowerCase()
  return fields.filter((f) => f.name.toLowerCase() === lower).map((f) => f.value)
}

/**
 * The addresses in an address-list header (`To`, `Cc`): `"Name" <a@b>`, bare `a@b`, groups `g: a@b, c@d;`,
 * comments in parentheses. Returns addr-specs only, in order, duplicates kept.
 */
export function parseAddressList(value: string): string[] {
  const out: string[] = []
  let s = stripComments(value)
  // Group syntax: "name: a, b;" -> "a, b"
  s = s.replace(/(^|,)\s*[^,:<>"@]*:([^;]*);?/g, (_m, lead: string, inner: string) => `${lead}${inner}`)
  for (const part of splitOutsideQuotes(s, ',')) {
    const angle = /<([^<>]*)>/.exec(part)
    const addr = (angle ? angle[1]! : part).trim()
    if (addr.includes('@') && !/\s/.test(addr.replace(/"[^"]*"/g, ''))) out.push(addr)
  }
  return out
}

/** The address inside a path header such as Return-Path or Delivered-To: `<a@b>` -> `a@b`, `<>` -> ''. */
export function parsePathHeader(value: string): string | undefined {
  const s = stripComments(value).trim()
  const angle = /<([^<>]*)>/.exec(s)
  if (angle) return angle[1]!.trim()
  if (s === '') return undefined
  const first = s.split(/\s+/)[0]!
  return first.includes('@') ? first : undefined
}

/** The envelope of a corpus message, as derived from its headers. */
export interface DerivedEnvelope {
  /** Envelope sender ('' for the null sender); undefined when nothing says. */
  from?: string
  /** Recipients, in order. */
  to: string[]
}

/**
 * Derives the envelope from headers: recipients from the first Delivered-To, else the first X-Original-To,
 * else To; the sender from Return-Path, else `fromLine` (the mbox From_ line's sender), else From.
 */
export function envelopeFromHeaders(fields: readonly HeaderField[], fromLine?: string): DerivedEnvelope {
  let to: string[] = []
  for (const name of ['Delivered-To', 'X-Original-To']) {
    const v = headerValue(fields, name)
    const addr = v === undefined ? undefined : parsePathHeader(v)
    if (addr) {
      to = [addr]
      break
    }
  }
  if (to.length === 0) to = headerValues(fields, 'To').flatMap(parseAddressList)
  let from: string | undefined
  const rp = headerValue(fields, 'Return-Path')
  if (rp !== undefined) from = parsePathHeader(rp) ?? ''
  else if (fromLine !== undefined) from = fromLine
  else {
    const f = headerValue(fields, 'From')
    from = f === undefined ? undefined : parseAddressList(f)[0]
  }
  return {from, to}
}

function stripComments(s: string): string {
  let out = ''
  let depth = 0
  let quoted = false
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!
    if (c === '\\' && i + 1 < s.length) {
      if (depth === 0) out += c + s[i + 1]
      i++
      continue
    }
    if (c === '"' && depth === 0) quoted = !quoted
    if (!quoted && c === '(') {
      depth++
      continue
    }
    if (!quoted && c === ')' && depth > 0) {
      depth--
      continue
    }
    if (depth === 0) out += c
  }
  return out
}

function splitOutsideQuotes(s: string, sep: string): string[] {
  const parts: string[] = []
  let cur = ''
  let quoted = false
  let angle = 0
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!
    if (c === '\\' && i + 1 < s.length) {
      cur += c + s[++i]
      continue
    }
    if (c === '"') quoted = !quoted
    else if (!quoted && c === '<') angle++
    else if (!quoted && c === '>' && angle > 0) angle--
    if (c === sep && !quoted && angle === 0) {
      parts.push(cur)
      cur = ''
    } else cur += c
  }
  parts.push(cur)
  return parts
}

const TRACE = /^(return-path|delivered-to|x-original-to)[ \t]*:/i

/**
 * Length of the trace block a delivery agent put at the top of a stored message: the leading run of
 * Return-Path, Delivered-To and X-Original-To fields (with their continuation lines). Replay leaves them out
 * by default: the receiving server adds its own, and a Delivered-To naming the recipient looks like a loop.
 */
export function leadingTraceLength(buf: Buffer): number {
  let pos = 0
  let inTrace = false
  while (pos < buf.length) {
    const nl = buf.indexOf(0x0a, pos)
    if (nl < 0) return pos
    const first = buf[pos]
    if (first === 0x20 || first === 0x09) {
      if (!inTrace) return pos
    } else {
      const head = buf.subarray(pos, Math.min(nl, pos + 20)).toString('latin1')
      if (!TRACE.test(head)) return pos
      inTrace = true
    }
    pos = nl + 1
  }
  return pos
}
