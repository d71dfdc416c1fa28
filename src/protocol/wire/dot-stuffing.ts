/**
 * The DATA body on the wire (RFC 5321 section 4.5.2). The decoder (server side) finds the end of data ONLY at
 * CRLF.CRLF, removes the stuffed leading dots, counts octets so a size limit holds while streaming, and
 * reports bare CR / bare LF (SMTP smuggling variants such as `\n.\n` are body bytes, never an end).
 * The encoder (client side) turns bare LF into CRLF, stuffs leading dots and adds the terminating CRLF.CRLF.
 * No I/O: both work on chunks split anywhere.
 */

import {isAscii} from 'node:buffer'

const CR = 0x0d
const LF = 0x0a
const DOT = 0x2e
const EMPTY = Buffer.alloc(0)
const DOT_BUF = Buffer.from('.')
const CR_BUF = Buffer.from('\r')
const LF_BUF = Buffer.from('\n')

/** Options of the DATA decoder. */
export interface DataDecoderOptions {
  /** Largest message in octets (un-stuffed, CRLF line ends, terminator excluded). Beyond it the decoder stops
   * emitting body bytes, sets `oversize`, and keeps scanning for the end. Default: unlimited. */
  maxSize?: number
}

/** What one pushed chunk produced. */
export interface DataDecodeResult {
  /** Message bytes (un-stuffed, line ends as received) in order; empty once oversize. */
  body: Buffer[]
  /** True when the terminating CRLF.CRLF was seen; nothing more may be pushed. */
  done: boolean
  /** Bytes after the terminator (pipelined commands), when done. */
  rest: Buffer
}

/**
 * Where the decoder stands between two octets. Lines are delimited by CRLF only: after a bare LF the decoder is
 * still inside the same line (no un-stuffing, no end of data there).
 * - `line-start`: start of data or right after CRLF;
 * - `dot`: saw `.` at a line start (held back, not emitted);
 * - `dot-cr`: saw `.` CR at a line start (both held back);
 * - `mid`: inside a line, the previous octet was not a CR;
 * - `mid-cr`: inside a line, the previous octet was a CR (already emitted), its LF may come next.
 */
type DecodeState = 'line-start' | 'dot' | 'dot-cr' | 'mid' | 'mid-cr'

/**
 * Streaming DATA decoder (server side). Starts at the beginning of the first body line, right after 354.
 *
 * Each push() scans the chunk with indexOf and returns views into it (no copy), so the cost is one pass per
 * chunk and the state kept between chunks is a few flags: never a line, never the message. The body it emits
 * is the message as the client meant it: un-stuffed, with the CRLF that precedes the terminating `.` line.
 * With maxSize, exactly the first maxSize octets are emitted, whatever the chunking.
 */
export class DataDecoder {
  private readonly maxSize: number
  private state: DecodeState = 'line-start'
  private finished = false
  private octets = 0
  private over = false
  private sawBareCr = false
  private sawBareLf = false
  private eightBit = false
  private lineLength = 0
  private longest = 0

  constructor(options: DataDecoderOptions = {}) {
    const max = options.maxSize ?? Number.POSITIVE_INFINITY
    if (!(max >= 0)) throw new RangeError(`maxSize must be >= 0, got ${max}`)
    this.maxSize = max
  }

  /** Feeds a chunk. Throws when called after the end of data was found. */
  push(chunk: Buffer): DataDecodeResult {
    if (this.finished) throw new Error('DataDecoder: push() after the end of data')
    const body: Buffer[] = []
    const n = chunk.length
    let i = 0
    // Start of the not yet emitted run of body octets in this chunk.
    let seg = 0
    // Cached position of the next CR at or after i (n when none), so bare-LF text does not rescan the chunk.
    let cr = -1
    while (i < n) {
      switch (this.state) {
        case 'line-start':
          if (chunk[i] === DOT) {
            this.emit(body, chunk, seg, i)
            i++
            seg = i
            this.state = 'dot'
          } else {
            this.state = 'mid'
          }
          break
        case 'dot':
          if (chunk[i] === CR) {
            i++
            seg = i
            this.state = 'dot-cr'
          } else {
            // A stuffed dot: drop it; the octet at i continues the line (and is not at a line start).
            seg = i
            this.state = 'mid'
          }
          break
        case 'dot-cr':
          if (chunk[i] === LF) {
            this.finished = true
            return {body, done: true, rest: chunk.subarray(i + 1)}
          }
          // `.` CR <not LF>: the dot was stuffing, the CR is bare and belongs to the body.
          this.sawBareCr = true
          this.emit(body, Buffer.from([CR]), 0, 1)
          this.lineLength++
          seg = i
          this.state = 'mid'
          break
        case 'mid-cr':
          if (chunk[i] === LF) {
            i++
            this.lineLength++
            this.endLine()
            this.state = 'line-start'
          } else {
            this.sawBareCr = true
            this.state = 'mid'
          }
          break
        case 'mid': {
          const lf = chunk.indexOf(LF, i)
          const end = lf < 0 ? n : lf
          if (!this.sawBareCr) {
            if (cr < i) {
              cr = chunk.indexOf(CR, i)
              if (cr < 0) cr = n
            }
            // The first CR before the line's LF is bare unless it is the CR of the CRLF; a CR that ends the
            // chunk is decided by the next chunk.
            if (cr < end - 1) this.sawBareCr = true
          }
          if (lf < 0) {
            this.lineLength += n - i
            this.state = chunk[n - 1] === CR ? 'mid-cr' : 'mid'
            i = n
            break
          }
          this.lineLength += lf + 1 - i
          if (lf > i && chunk[lf - 1] === CR) {
            this.endLine()
            this.state = 'line-start'
          } else {
            this.sawBareLf = true
          }
          i = lf + 1
          break
        }
      }
    }
    this.emit(body, chunk, seg, n)
    return {body, done: false, rest: EMPTY}
  }

  /** Counts, checks and (below the size cap) emits chunk[from, to). */
  private emit(body: Buffer[], chunk: Buffer, from: number, to: number): void {
    const len = to - from
    if (len <= 0) return
    const part = chunk.subarray(from, to)
    if (!this.eightBit && !isAscii(part)) this.eightBit = true
    const before = this.octets
    this.octets += len
    if (this.over) return
    if (this.octets > this.maxSize) {
      this.over = true
      const allowed = this.maxSize - before
      if (allowed > 0) body.push(part.subarray(0, allowed))
      return
    }
    body.push(part)
  }

  private endLine(): void {
    if (this.lineLength > this.longest) this.longest = this.lineLength
    this.lineLength = 0
  }

  /** Message octets seen so far (counted even when oversize). */
  get size(): number {
    return this.octets
  }
  /** True once the message exceeded maxSize. */
  get oversize(): boolean {
    return this.over
  }
  /** True when a CR not followed by LF was seen in the body. */
  get bareCr(): boolean {
    return this.sawBareCr
  }
  /** True when an LF not preceded by CR was seen in the body. */
  get bareLf(): boolean {
    return this.sawBareLf
  }
  /** True when any octet >= 0x80 was seen (8-bit content). */
  get has8bit(): boolean {
    return this.eightBit
  }
  /** Longest line seen, in octets including its CRLF (un-stuffed; a bare LF does not end a line). */
  get longestLine(): number {
    return this.longest
  }
}

/** Options of the DATA encoder. */
export interface DataEncoderOptions {
  /** Stuff leading dots and end with `.` CRLF (DATA). False for BDAT: line ends are normalised only. Default true. */
  dotStuff?: boolean
}

/**
 * Streaming DATA encoder (client side): bare LF -> CRLF, dot-stuffing, terminator on end().
 *
 * Line ends are normalised so that every CR and every LF becomes one CRLF, except that CR LF stays one CRLF
 * even when split across chunks (a lone CR is thus a line end too, never a bare CR on the wire).
 */
export class DataEncoder {
  private readonly dotStuff: boolean
  private atLineStart = true
  /** The previous chunk ended in CR, already sent as CRLF: an LF opening this chunk belongs to it. */
  private skipLf = false
  private octets = 0
  private eightBit = false
  private ended = false

  constructor(options: DataEncoderOptions = {}) {
    this.dotStuff = options.dotStuff ?? true
  }

  /** Encodes a chunk of the message (any line ends); returns the wire bytes. When nothing needs changing the result
   * is the chunk itself (no copy), so do not modify a chunk before its wire bytes are written. */
  push(chunk: Buffer): Buffer {
    if (this.ended) throw new Error('DataEncoder: push() after end()')
    const n = chunk.length
    if (n === 0) return EMPTY
    if (!this.eightBit && !isAscii(chunk)) this.eightBit = true
    const parts: Buffer[] = []
    let stuffed = 0
    let i = 0
    if (this.skipLf) {
      this.skipLf = false
      if (chunk[0] === LF) i = 1
    }
    let seg = i
    // Cached positions of the next CR / LF at or after i (n when none).
    let cr = -1
    let lf = -1
    while (i < n) {
      if (this.atLineStart) {
        this.atLineStart = false
        if (this.dotStuff && chunk[i] === DOT) {
          parts.push(chunk.subarray(seg, i), DOT_BUF)
          stuffed++
          seg = i
        }
      }
      if (cr < i) {
        cr = chunk.indexOf(CR, i)
        if (cr < 0) cr = n
      }
      if (lf < i) {
        lf = chunk.indexOf(LF, i)
        if (lf < 0) lf = n
      }
      if (cr === n && lf === n) break
      this.atLineStart = true
      if (cr < lf) {
        if (cr + 1 === lf && lf < n) {
          i = lf + 1
        } else {
          // A lone CR (or one that ends the chunk): send CRLF now, and swallow a following LF if it comes later.
          parts.push(chunk.subarray(seg, cr + 1), LF_BUF)
          i = cr + 1
          seg = i
          if (i === n) this.skipLf = true
        }
      } else {
        // A bare LF: insert the CR before it.
        parts.push(chunk.subarray(seg, lf), CR_BUF)
        seg = lf
        i = lf + 1
      }
    }
    if (seg < n) parts.push(chunk.subarray(seg, n))
    const out = parts.length === 1 ? parts[0]! : Buffer.concat(parts)
    this.octets += out.length - stuffed
    return out
  }

  /** Finishes: a CRLF if the message did not end with one, then `.` CRLF when dot-stuffing. */
  end(): Buffer {
    if (this.ended) throw new Error('DataEncoder: end() called twice')
    this.ended = true
    let tail = ''
    if (!this.atLineStart) {
      tail += '\r\n'
      this.octets += 2
    }
    if (this.dotStuff) tail += '.\r\n'
    return Buffer.from(tail, 'latin1')
  }

  /** Message octets after line-end normalisation, before stuffing (what SIZE= should declare); after end() it
   * includes the CRLF that end() added, so it equals what a DataDecoder counts. */
  get messageSize(): number {
    return this.octets
  }
  /** True when any octet >= 0x80 was seen. */
  get has8bit(): boolean {
    return this.eightBit
  }
}
