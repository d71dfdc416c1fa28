/**
 * Replies: the value type shared by server and client, its wire formatter, and an incremental parser that
 * turns bytes from a server into whole (possibly multi-line) replies.
 */

/** One reply: a three-digit code, an optional RFC 3463 enhanced status code, and one or more text lines. */
export interface Reply {
  code: number
  /** Enhanced status code such as `2.0.0`; absent for the greeting, the LHLO reply and 354. */
  enhanced?: string
  /** The text lines, without code or enhanced code; a single-line reply has one entry. */
  lines: string[]
}

/** The class digit of a reply code: 2 success, 3 intermediate, 4 temporary failure, 5 permanent failure. */
export function replyClass(code: number): 2 | 3 | 4 | 5 {
  const c = Math.floor(code / 100)
  if (c === 2 || c === 3 || c === 4 || c === 5) return c
  throw new RangeError(`reply code ${code} is outside 200-599`)
}

/** True when the reply is positive completion (2xx). */
export function isPositive(reply: Reply): boolean {
  return reply.code >= 200 && reply.code < 300
}

/** True for a transient negative reply (4xx), which means "keep it queued and try again". */
export function isTransient(reply: Reply): boolean {
  return reply.code >= 400 && reply.code < 500
}

/** Builds a reply value; `text` may hold several lines separated by `\n`. */
export function reply(code: number, enhanced: string | undefined, text: string): Reply {
  return {code, enhanced, lines: text.split('\n')}
}

/** Returns a copy of `base` with its text replaced (keeping code and enhanced code). */
export function withText(base: Reply, text: string): Reply {
  return {code: base.code, enhanced: base.enhanced, lines: text.split('\n')}
}

/** The reply's text lines joined with a space, for logs and tables. */
export function replyText(r: Reply): string {
  return r.lines.join(' ')
}

/** One-line human form, e.g. `452 4.2.2 mailbox full`. */
export function describeReply(r: Reply): string {
  return [String(r.code), r.enhanced, replyText(r)].filter((x) => x !== undefined && x !== '').join(' ')
}

const ENHANCED = /^([245])\.(\d{1,3})\.(\d{1,3})$/

/** Formats a reply for the wire: `250-...` continuation lines, `250 ...` last line, each ending CRLF. */
export function formatReply(r: Reply): string {
  const lines = r.lines.length > 0 ? r.lines : ['']
  let out = ''
  for (let i = 0; i < lines.length; i++) {
    const sep = i === lines.length - 1 ? ' ' : '-'
    // The enhanced code is repeated on every line (RFC 2034 section 4).
    const text = r.enhanced ? (lines[i] === '' ? r.enhanced : `${r.enhanced} ${lines[i]}`) : lines[i]
    out += `${r.code}${sep}${sanitizeReplyText(text)}\r\n`
  }
  return out
}

/** Removes CR, LF and other control characters so that text from anywhere can never break the reply framing. */
export function sanitizeReplyText(text: string): string {
  return text.replace(/[\x00-\x1f\x7f]/g, ' ')
}

/** A reply line that could not be understood; carries the offending line for diagnostics. */
export class ReplySyntaxError extends Error {
  /** Replies completed in the same chunk before the malformed line (they are real and must not be lost). */
  complete: Reply[] = []
  constructor(
    message: string,
    readonly line: string,
  ) {
    super(message)
    this.name = 'ReplySyntaxError'
  }
}

/** Options of the reply parser. */
export interface ReplyParserOptions {
  /** Longest accepted reply line in octets, CRLF included; longer is a protocol error. Default 4096. */
  maxLineLength?: number
  /** Most lines in one multi-line reply; more is a protocol error. Default 1000. */
  maxLines?: number
}

/**
 * Incremental reply parser for the client side. Feed it chunks as they arrive (split anywhere); it returns the
 * replies completed by each chunk. Accepts a lone LF as a line end (lenient reading), but rejects a line that
 * is not `DDD[ -]text`, a continuation whose code changes, overlong lines and endless multi-line replies.
 */
export class ReplyParser {
  private buf: Buffer = Buffer.alloc(0)
  private pending: {code: number; lines: string[]} | undefined
  private readonly maxLineLength: number
  private readonly maxLines: number

  constructor(options: ReplyParserOptions = {}) {
    this.maxLineLength = options.maxLineLength ?? 4096
    this.maxLines = options.maxLines ?? 1000
  }

  /** Bytes received but not yet part of a complete line. */
  get buffered(): number {
    return this.buf.length
  }

  /** Feeds a chunk; returns the replies it completed. Throws ReplySyntaxError on malformed input. */
  push(chunk: Buffer): Reply[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
    const out: Reply[] = []
    let start = 0
    for (;;) {
      const lf = this.buf.indexOf(0x0a, start)
      if (lf < 0) break
      const end = lf > start && this.buf[lf - 1] === 0x0d ? lf - 1 : lf
      if (lf + 1 - start > this.maxLineLength) {
        throw new ReplySyntaxError(`reply line longer than ${this.maxLineLength} octets`, '')
      }
      const line = this.buf.subarray(start, end).toString('utf8')
      start = lf + 1
      let r: Reply | undefined
      try {
        r = this.takeLine(line)
      } catch (err) {
        if (err instanceof ReplySyntaxError) err.complete = out
        throw err
      }
      if (r) out.push(r)
    }
    this.buf = this.buf.subarray(start)
    if (this.buf.length > this.maxLineLength) {
      throw new ReplySyntaxError(`reply line longer than ${this.maxLineLength} octets`, '')
    }
    return out
  }

  private takeLine(line: string): Reply | undefined {
    const m = /^([2-5]\d\d)([ -]|$)(.*)$/s.exec(line)
    if (!m) throw new ReplySyntaxError(`not a reply line: ${JSON.stringify(line.slice(0, 80))}`, line)
    const code = Number(m[1])
    const more = m[2] === '-'
    if (this.pending && this.pending.code !== code) {
      throw new ReplySyntaxError(`multi-line reply changed code from ${this.pending.code} to ${code}`, line)
    }
    const p = this.pending ?? {code, lines: []}
    p.lines.push(m[3] ?? '')
    if (p.lines.length > this.maxLines) throw new ReplySyntaxError(`reply longer than ${this.maxLines} lines`, line)
    if (more) {
      this.pending = p
      return undefined
    }
    this.pending = undefined
    return splitEnhanced(p.code, p.lines)
  }
}

/**
 * Finds the enhanced status code and splits it off every line that carries it. RFC 2034 puts it on every line,
 * but real servers put it on the first line only or on the last only (Cyrus lmtpd's 3-line unknown-user reply
 * has `5.1.1` on the last), so every line is looked at: the first one whose first word is an enhanced code of the
 * reply's class gives it.
 */
function splitEnhanced(code: number, lines: string[]): Reply {
  const cls = Math.floor(code / 100)
  let enhanced: string | undefined
  for (const line of lines) {
    const word = line.split(' ', 1)[0] ?? ''
    const m = ENHANCED.exec(word)
    if (m && Number(m[1]) === cls) {
      enhanced = word
      break
    }
  }
  if (enhanced === undefined) return {code, lines}
  const e = enhanced
  const stripped = lines.map((l) => (l === e ? '' : l.startsWith(`${e} `) ? l.slice(e.length + 1) : l))
  return {code, enhanced: e, lines: stripped}
}

/** Parses exactly one complete reply from a string (test and fixture helper). */
export function parseReply(text: string): Reply {
  const parser = new ReplyParser()
  const replies = parser.push(Buffer.from(text.endsWith('\n') ? text : `${text}\r\n`))
  if (replies.length !== 1 || parser.buffered !== 0) {
    throw new ReplySyntaxError(`expected one reply, got ${replies.length}`, text)
  }
  return replies[0]!
}
