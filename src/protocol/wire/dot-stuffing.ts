/**
 * The DATA body on the wire (RFC 5321 section 4.5.2). The decoder (server side) finds the end of data ONLY at
 * CRLF.CRLF, removes the stuffed leading dots, counts octets so a size limit holds while streaming, and
 * reports bare CR / bare LF (SMTP smuggling variants such as `\n.\n` are body bytes, never an end).
 * The encoder (client side) turns bare LF into CRLF, stuffs leading dots and adds the terminating CRLF.CRLF.
 * No I/O: both work on chunks split anywhere.
 */

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

/** Streaming DATA decoder (server side). Starts at the beginning of the first body line, right after 354. */
export class DataDecoder {
  constructor(options: DataDecoderOptions = {}) {
    void options
    throw new Error('DataDecoder: not implemented yet')
  }
  /** Feeds a chunk. */
  push(chunk: Buffer): DataDecodeResult {
    void chunk
    return {body: [], done: false, rest: Buffer.alloc(0)}
  }
  /** Message octets seen so far (counted even when oversize). */
  get size(): number {
    return 0
  }
  /** True once the message exceeded maxSize. */
  get oversize(): boolean {
    return false
  }
  /** True when a CR not followed by LF was seen in the body. */
  get bareCr(): boolean {
    return false
  }
  /** True when an LF not preceded by CR was seen in the body. */
  get bareLf(): boolean {
    return false
  }
  /** True when any octet >= 0x80 was seen (8-bit content). */
  get has8bit(): boolean {
    return false
  }
  /** Longest line seen, in octets including its CRLF. */
  get longestLine(): number {
    return 0
  }
}

/** Options of the DATA encoder. */
export interface DataEncoderOptions {
  /** Stuff leading dots and end with `.` CRLF (DATA). False for BDAT: line ends are normalised only. Default true. */
  dotStuff?: boolean
}

/** Streaming DATA encoder (client side): bare LF -> CRLF, dot-stuffing, terminator on end(). */
export class DataEncoder {
  constructor(options: DataEncoderOptions = {}) {
    void options
    throw new Error('DataEncoder: not implemented yet')
  }
  /** Encodes a chunk of the message (any line ends); returns the wire bytes. */
  push(chunk: Buffer): Buffer {
    return chunk
  }
  /** Finishes: a CRLF if the message did not end with one, then `.` CRLF when dot-stuffing. */
  end(): Buffer {
    return Buffer.alloc(0)
  }
  /** Message octets after line-end normalisation, before stuffing (what SIZE= should declare). */
  get messageSize(): number {
    return 0
  }
  /** True when any octet >= 0x80 was seen. */
  get has8bit(): boolean {
    return false
  }
}
