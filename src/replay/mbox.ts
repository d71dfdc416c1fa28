/**
 * A streaming mbox reader. The file is read once, front to back, in 1 MiB chunks; each message is handed out
 * as soon as the next separator is seen, so replay starts long before a 10 GB mbox has been scanned.
 *
 * Format: mboxrd. A message starts at a `From ` line at the start of the file or after an empty line; the
 * empty line before a separator (and at the end of the file) belongs to the mbox, not to the message. Body
 * lines written as `>From `, `>>From `, ... lose one `>` (mboxrd unescaping). For an mboxo file that is also
 * right, except for a body line that really began with `>From ` (mboxo cannot tell those apart).
 *
 * Messages up to `bufferLimit` (1 MiB) are kept from the scan and sent from memory; larger ones are read again
 * from their byte range when sent, so memory stays bounded whatever the message sizes.
 * Bad input is reported with the line of its `From ` line and skipped: text before the first separator, a
 * separator without a sender and date, a message without headers.
 */
import {createReadStream} from 'node:fs'
import {
  envelopeFromHeaders,
  HeaderError,
  type HeaderField,
  leadingTraceLength,
  MAX_HEADER_BLOCK,
  parseHeaderBlock,
} from './headers.js'
import type {OpenedMessage, SourceEntry} from './item.js'
import {fsReason} from './item.js'
import {measureChunks} from './measure.js'

/** Options of the mbox reader. */
export interface MboxOptions {
  /** Messages up to this size are kept in memory from the scan (default 1 MiB). */
  bufferLimit?: number
  /** Read chunk size (default 1 MiB; tests use tiny ones). */
  chunkSize?: number
  /** Keep the leading Return-Path / Delivered-To / X-Original-To fields (default: left out, see headers.ts). */
  keepTrace?: boolean
}

const FROM_ = Buffer.from('From ')
/** A separator line longer than this is body text, not a separator. */
const MAX_SEPARATOR = 1000

interface Msg {
  line: number
  sender?: string
  broken?: string
  start: number
  size: number
  parts: Buffer[] | null
  header: Buffer[]
  headerBytes: number
  headersDone: boolean
  lines: number
  lastLen: number
  lastEmpty: boolean
}

/** Reads an mbox file: yields one item per message and a problem per bad part. */
export async function* readMbox(file: string, options: MboxOptions = {}): AsyncGenerator<SourceEntry> {
  const bufferLimit = options.bufferLimit ?? 1024 * 1024
  const out: SourceEntry[] = []
  let pos = 0
  let lineNo = 0
  let cur: Msg | undefined
  let skipping = false
  let prevEmpty = true
  // The current line.
  let lineStart = 0
  let lineLen = 0
  let head: Buffer = Buffer.alloc(0)
  let held: Buffer[] = []
  let candidate: boolean | undefined

  const content = (piece: Buffer): void => {
    const m = cur
    if (!m || m.broken) return
    m.size += piece.length
    if (m.parts) {
      if (m.size <= bufferLimit) m.parts.push(piece)
      else m.parts = null
    }
    if (!m.headersDone) {
      m.headerBytes += piece.length
      if (m.headerBytes > MAX_HEADER_BLOCK) m.broken = 'the header block is longer than 1 MiB'
      else m.header.push(piece)
    }
  }

  const finish = (m: Msg): void => {
    if (m.broken) {
      out.push({problem: {source: file, line: m.line, reason: m.broken}})
      return
    }
    const trim = m.lastEmpty ? m.lastLen : 0
    const size = m.size - trim
    if (size <= 0 || m.lines === 0) {
      out.push({problem: {source: file, line: m.line, reason: 'empty message after the From_ line'}})
      return
    }
    let fields: HeaderField[]
    let skip = 0
    try {
      const block = Buffer.concat(m.header)
      fields = parseHeaderBlock(block.subarray(0, Math.min(block.length, size)))
      if (!options.keepTrace) skip = Math.min(leadingTraceLength(block), size)
    } catch (err) {
      out.push({problem: {source: file, line: m.line, reason: err instanceof HeaderError ? err.message : String(err)}})
      return
    }
    const env = envelopeFromHeaders(fields, m.sender)
    const buffered = m.parts ? Buffer.concat(m.parts).subarray(skip, size) : undefined
    const start = m.start + skip
    const end = m.start + size
    out.push({
      item: {
        source: `${file}:${m.line}`,
        kind: 'mbox',
        open: async (): Promise<OpenedMessage> => {
          const stream = buffered ? undefined : createReadStream(file, {start, end: end - 1, highWaterMark: 256 * 1024})
          const raw: AsyncIterable<Buffer> = buffered ? once(buffered) : (stream as AsyncIterable<Buffer>)
          return {
            ...env,
            // A message kept in memory is measured here (after unescaping: the bytes that are sent).
            ...(buffered ? {info: await measureChunks(unescapeMboxrd(once(buffered)))} : {}),
            body: unescapeMboxrd(raw),
            close: async () => {
              stream?.destroy()
            },
          }
        },
      },
    })
  }

  const onLine = (isSeparator: boolean): void => {
    lineNo++
    const empty = (lineLen === 1 && head[0] === 0x0a) || (lineLen === 2 && head[0] === 0x0d && head[1] === 0x0a)
    if (isSeparator) {
      if (cur) finish(cur)
      skipping = false
      const text = head.toString('latin1').replace(/\r?\n$/, '')
      const m = /^From (\S+)\s+(.*\d.*)$/.exec(text)
      cur = {
        line: lineNo,
        start: lineStart + lineLen,
        size: 0,
        parts: [],
        header: [],
        headerBytes: 0,
        headersDone: false,
        lines: 0,
        lastLen: 0,
        lastEmpty: false,
      }
      if (!m) cur.broken = `broken From_ separator ${JSON.stringify(text.slice(0, 80))}: expected "From SENDER DATE"`
      else cur.sender = m[1] === 'MAILER-DAEMON' ? '' : m[1]
    } else {
      if (lineNo === 1) {
        out.push({problem: {source: file, line: 1, reason: 'not an mbox separator: the file should start with a "From " line; skipped up to the next one'}})
        skipping = true
      }
      const m = cur
      if (m && !skipping) {
        if (m.lines === 0 && empty) m.broken = 'the message has no headers (an empty line follows the From_ line)'
        if (empty) m.headersDone = true
        m.lines++
        m.lastLen = lineLen
        m.lastEmpty = empty
      }
    }
    prevEmpty = empty
  }

  let stream: AsyncIterable<Buffer>
  try {
    stream = createReadStream(file, {highWaterMark: options.chunkSize ?? 1024 * 1024})
    for await (const chunk of stream) {
      let i = 0
      while (i < chunk.length) {
        const nl = chunk.indexOf(0x0a, i)
        const end = nl < 0 ? chunk.length : nl + 1
        const piece = chunk.subarray(i, end)
        if (lineLen === 0) {
          lineStart = pos + i
          head = Buffer.alloc(0)
          held = []
          candidate = undefined
        }
        if (head.length < MAX_SEPARATOR + 1) {
          const take = piece.subarray(0, MAX_SEPARATOR + 1 - head.length)
          head = head.length === 0 ? take : Buffer.concat([head, take])
        }
        lineLen += piece.length
        if (candidate === undefined && (head.length >= FROM_.length || nl >= 0)) {
          candidate = (prevEmpty || skipping || !cur) && head.subarray(0, FROM_.length).equals(FROM_)
          if (!candidate) for (const h of held.splice(0)) content(h)
        }
        if (candidate === true && lineLen > MAX_SEPARATOR) {
          candidate = false
          for (const h of held.splice(0)) content(h)
        }
        if (candidate === false) content(piece)
        else held.push(piece)
        if (nl >= 0) {
          onLine(candidate === true)
          lineLen = 0
        }
        i = end
      }
      pos += chunk.length
      if (out.length > 0) yield* out.splice(0)
    }
  } catch (err) {
    out.push({problem: {source: file, reason: `cannot read: ${fsReason(err)}`}})
    yield* out.splice(0)
    return
  }
  // A last line without a newline.
  if (lineLen > 0) {
    if (candidate !== false) for (const h of held.splice(0)) content(h)
    onLine(false)
  }
  if (cur) finish(cur)
  else if (lineNo === 0) out.push({problem: {source: file, reason: 'the mbox is empty'}})
  yield* out.splice(0)
}

/**
 * mboxrd unescaping as a stream: a line matching `>+From ` loses its first `>`. Works across chunk
 * boundaries (a line start split between chunks is held until it can be decided).
 */
export async function* unescapeMboxrd(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let hold: Buffer | undefined
  let atLineStart = true
  for await (const chunk of source) {
    if (chunk.length === 0) continue
    const buf = hold ? Buffer.concat([hold, chunk]) : chunk
    hold = undefined
    let emitFrom = 0
    let p = atLineStart ? 0 : nextLineStart(buf, 0)
    const pieces: Buffer[] = []
    while (p >= 0 && p < buf.length) {
      if (buf[p] === 0x3e) {
        let q = p
        while (q < buf.length && buf[q] === 0x3e) q++
        if (buf.length - q < FROM_.length && q - p < MAX_SEPARATOR) {
          // Cannot decide yet: hold the rest of the buffer.
          pieces.push(buf.subarray(emitFrom, p))
          hold = Buffer.from(buf.subarray(p))
          emitFrom = buf.length
          break
        }
        if (buf.subarray(q, q + FROM_.length).equals(FROM_)) {
          pieces.push(buf.subarray(emitFrom, p))
          emitFrom = p + 1
        }
      }
      p = nextLineStart(buf, p)
    }
    if (emitFrom < buf.length) pieces.push(buf.subarray(emitFrom))
    if (!hold) atLineStart = buf[buf.length - 1] === 0x0a
    else atLineStart = true
    for (const piece of pieces) if (piece.length > 0) yield piece
  }
  if (hold && hold.length > 0) yield hold
}

async function* once(buf: Buffer): AsyncGenerator<Buffer> {
  yield buf
}

function nextLineStart(buf: Buffer, from: number): number {
  const nl = buf.indexOf(0x0a, from)
  return nl < 0 ? -1 : nl + 1
}
