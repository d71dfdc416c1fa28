/**
 * Reads the Message-ID of a message from its header section as the body streams past (for the log line of
 * each recipient), in bounded memory: it keeps at most the first 32 KiB, stops at the end of the header
 * section, and never changes or holds the body.
 */

const MAX_HEADER_BYTES = 32 * 1024
const MAX_ID_LENGTH = 256

/** Feed it the un-stuffed body in order; {@link messageId} is the header's value once seen. */
export class MessageIdScanner {
  private parts: Buffer[] = []
  private kept = 0
  private done = false
  private id: string | undefined

  /** Looks at the next piece of the body (CRLF line ends). */
  push(chunk: Buffer): void {
    if (this.done) return
    const room = MAX_HEADER_BYTES - this.kept
    const piece = chunk.length > room ? chunk.subarray(0, room) : chunk
    this.parts.push(Buffer.from(piece))
    this.kept += piece.length
    const all = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts)
    this.parts = [all]
    const end = all.indexOf('\r\n\r\n')
    if (end >= 0 || this.kept >= MAX_HEADER_BYTES || all.subarray(0, 2).toString('latin1') === '\r\n') this.finish(all, end)
  }

  /** The Message-ID (angle brackets kept), or undefined when the header section has none (so far). */
  get messageId(): string | undefined {
    if (!this.done && this.parts.length > 0) this.finish(this.parts[0]!, -1)
    return this.id
  }

  private finish(all: Buffer, end: number): void {
    this.done = true
    this.parts = []
    const header = all.subarray(0, end >= 0 ? end : all.length).toString('utf8')
    // Unfold, then find the field (case-insensitive name, RFC 5322 section 3.6.4).
    const unfolded = header.replace(/\r\n(?=[ \t])/g, '')
    const match = /^message-id[ \t]*:[ \t]*(.*)$/im.exec(unfolded)
    if (!match) return
    const value = match[1]!.replace(/[\x00-\x1f\x7f]/g, '').trim()
    const bracketed = /<[^<>\s]*>/.exec(value)
    const id = (bracketed ? bracketed[0] : value.split(/\s/, 1)[0]!).slice(0, MAX_ID_LENGTH)
    if (id) this.id = id
  }
}
