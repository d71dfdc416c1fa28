/**
 * Bytes -> command lines. Incremental over chunks split anywhere; only CRLF ends a line (a bare LF stays in
 * the line, where the command parser refuses it as a control character); an overlong line is consumed to its
 * CRLF without buffering it and reported once, so the session answers 500 and stays in sync. No I/O.
 */

/** What the reader yields: a complete line (without CRLF), or the report of an overlong line it discarded. */
export type LineEvent = {kind: 'line'; line: Buffer} | {kind: 'overlong'; length: number}

/** Options of the line reader. */
export interface LineReaderOptions {
  /** Longest accepted line in octets, CRLF included. Default 2048. */
  maxLength?: number
}

/** The default line cap: RFC 5321 asks for 512, parameters need more (PROTOCOL.md "Limits"). */
export const DEFAULT_MAX_LINE_LENGTH = 2048

const CR = 0x0d
const LF = 0x0a
const CRLF = Buffer.from('\r\n')
const EMPTY = Buffer.alloc(0)

/**
 * Incremental CRLF line splitter with a hard length cap.
 *
 * Usage: after every push(), call next() until it returns undefined. Lines are found lazily by next(), one at a
 * time, so the caller can stop after a DATA/BDAT/STARTTLS line and take() the bytes that follow. Once the
 * unfinished line at the end of the buffer is known to be too long, the reader drops it and then only counts
 * the octets of that line as they arrive (memory stays bounded by the cap plus one chunk); the `overlong` event
 * is yielded once, in the line's place, when its CRLF arrives. Its `length` counts the whole line, CRLF included.
 *
 * Returned lines are views into pushed chunks (no copy): do not modify a chunk after pushing it.
 */
export class LineReader {
  private readonly maxLength: number
  private buf: Buffer = EMPTY
  /** Start of the first byte not yet returned. */
  private pos = 0
  /** CRLF search resumes here: everything before it (from pos) is known to hold no CRLF. */
  private scanFrom = 0
  /** True while an overlong line is being skipped up to its CRLF. */
  private discarding = false
  /** Octets of the overlong line skipped so far. */
  private discarded = 0
  /** The last skipped octet was a CR (its LF may start the next chunk). */
  private discardCr = false
  /** Length of an overlong line whose CRLF arrived but that next() has not reported yet. */
  private pendingOverlong: number | undefined

  constructor(options: LineReaderOptions = {}) {
    const max = options.maxLength ?? DEFAULT_MAX_LINE_LENGTH
    if (!Number.isInteger(max) || max < 2) throw new RangeError(`maxLength must be an integer >= 2, got ${max}`)
    this.maxLength = max
  }

  /** Appends received bytes. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return
    if (this.discarding) {
      let end = -1
      if (this.discardCr && chunk[0] === LF) end = 0
      else {
        const k = chunk.indexOf(CRLF)
        if (k >= 0) end = k + 1
      }
      if (end < 0) {
        this.discarded += chunk.length
        this.discardCr = chunk[chunk.length - 1] === CR
        return
      }
      this.pendingOverlong = this.discarded + end + 1
      this.discarding = false
      this.discarded = 0
      this.discardCr = false
      chunk = chunk.subarray(end + 1)
      if (chunk.length === 0) return
    }
    if (this.pos === this.buf.length) {
      this.buf = chunk
      this.pos = 0
      this.scanFrom = 0
    } else {
      // Compact while appending, so consumed lines are released and the offsets stay small.
      this.buf = Buffer.concat([this.buf.subarray(this.pos), chunk])
      this.scanFrom = Math.max(0, this.scanFrom - this.pos)
      this.pos = 0
    }
  }

  /** Returns the next complete line event, or undefined when more bytes are needed. */
  next(): LineEvent | undefined {
    if (this.pendingOverlong !== undefined) {
      const length = this.pendingOverlong
      this.pendingOverlong = undefined
      return {kind: 'overlong', length}
    }
    if (this.discarding) return undefined
    const avail = this.buf.length - this.pos
    if (avail === 0) return undefined
    const k = this.buf.indexOf(CRLF, Math.max(this.pos, this.scanFrom))
    if (k < 0) {
      if (avail >= this.maxLength) {
        // Even if the next octet were the LF, the line would exceed the cap: stop holding it.
        this.discarding = true
        this.discarded = avail
        this.discardCr = this.buf[this.buf.length - 1] === CR
        this.buf = EMPTY
        this.pos = 0
        this.scanFrom = 0
      } else {
        // A trailing CR may be completed by the next chunk's LF, so it is searched again.
        this.scanFrom = Math.max(this.pos, this.buf.length - 1)
      }
      return undefined
    }
    const start = this.pos
    const length = k + 2 - start
    this.pos = k + 2
    this.scanFrom = this.pos
    if (length > this.maxLength) return {kind: 'overlong', length}
    return {kind: 'line', line: this.buf.subarray(start, k)}
  }

  /**
   * Removes and returns every byte received but not yet returned as a line: used when the session switches to
   * DATA/BDAT mode (the bytes are body) and after STARTTLS (the bytes must be thrown away).
   * It also forgets an overlong line being skipped or not yet reported: the reader starts afresh.
   */
  take(): Buffer {
    const out = this.buf.subarray(this.pos)
    this.buf = EMPTY
    this.pos = 0
    this.scanFrom = 0
    this.discarding = false
    this.discarded = 0
    this.discardCr = false
    this.pendingOverlong = undefined
    return out
  }

  /** Octets held (excluding an overlong line being discarded). */
  get buffered(): number {
    return this.buf.length - this.pos
  }
}
