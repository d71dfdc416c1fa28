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

/** Incremental CRLF line splitter with a hard length cap. */
export class LineReader {
  constructor(options: LineReaderOptions = {}) {
    void options
    throw new Error('LineReader: not implemented yet')
  }

  /** Appends received bytes. */
  push(chunk: Buffer): void {
    void chunk
  }

  /** Returns the next complete line event, or undefined when more bytes are needed. */
  next(): LineEvent | undefined {
    return undefined
  }

  /**
   * Removes and returns every byte received but not yet returned as a line: used when the session switches to
   * DATA/BDAT mode (the bytes are body) and after STARTTLS (the bytes must be thrown away).
   */
  take(): Buffer {
    return Buffer.alloc(0)
  }

  /** Octets held (excluding an overlong line being discarded). */
  get buffered(): number {
    return 0
  }
}
