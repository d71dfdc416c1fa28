/**
 * Where the message `lmtp send` delivers comes from: a file, stdin, or a generated test message. Every source
 * streams (a 1 GB file is never held in memory) and can be read more than once, so a preflight pass can measure
 * the message (size after CRLF normalisation, 8-bit content) before anything is sent. Stdin, which can be read
 * only once, is spooled to a private temp file first.
 */
import {createReadStream, createWriteStream} from 'node:fs'
import {mkdtemp, open, rm, stat} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import type {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {DataEncoder} from '../protocol/wire/dot-stuffing.js'

/** What the preflight pass learns about a message. */
export interface MessageInfo {
  /** Octets after line-end normalisation (every line ending CRLF, a final CRLF added): what SIZE= declares. */
  size: number
  /** True when any octet is >= 0x80 (needs 8BITMIME). */
  has8bit: boolean
}

/** A message that can be streamed, more than once. */
export interface MessageSource {
  /** What it is, for messages and --json: a file path, `stdin` or `generated`. */
  readonly description: string
  /** Streams the message bytes (any line ends; the client normalises them). */
  open(): AsyncIterable<Buffer>
  /** Reads the message once and measures it. */
  scan(): Promise<MessageInfo>
  /** Removes whatever the source created (the stdin spool). Safe to call twice. */
  dispose(): Promise<void>
}

/** A message file that cannot be read; the message says which file and why (exit 66). */
export class MessageSourceError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'MessageSourceError'
  }
}

const READ_CHUNK = 256 * 1024

/** Measures a stream of message bytes the way the client will send them. */
export async function measure(chunks: AsyncIterable<Buffer>): Promise<MessageInfo> {
  const enc = new DataEncoder({dotStuff: false})
  for await (const chunk of chunks) enc.push(chunk)
  enc.end()
  return {size: enc.messageSize, has8bit: enc.has8bit}
}

function describeFsError(file: string, err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ENOENT':
      return `cannot read the message file ${file}: no such file (check the path; use - for stdin, or give no FILE for a generated test message)`
    case 'EACCES':
    case 'EPERM':
      return `cannot read the message file ${file}: permission denied (check its owner and mode)`
    case 'EISDIR':
      return `cannot read the message file ${file}: it is a directory, give a message file`
    default:
      return `cannot read the message file ${file}: ${err.message}`
  }
}

/** Streams a file, turning read errors into MessageSourceError. */
async function* readFileStream(file: string, label: string): AsyncIterable<Buffer> {
  try {
    for await (const chunk of createReadStream(file, {highWaterMark: READ_CHUNK})) yield chunk as Buffer
  } catch (err) {
    throw new MessageSourceError(describeFsError(label, err as NodeJS.ErrnoException))
  }
}

/**
 * A message file. Checks at once that it exists, is a regular file and can be opened for reading; throws
 * MessageSourceError (exit 66) otherwise.
 */
export async function fileSource(file: string): Promise<MessageSource> {
  try {
    const st = await stat(file)
    if (st.isDirectory()) throw Object.assign(new Error('is a directory'), {code: 'EISDIR'})
    const fh = await open(file, 'r')
    await fh.close()
  } catch (err) {
    throw new MessageSourceError(describeFsError(file, err as NodeJS.ErrnoException))
  }
  return {
    description: file,
    open: () => readFileStream(file, file),
    scan: () => measure(readFileStream(file, file)),
    dispose: async () => {},
  }
}

/**
 * Stdin (or any readable): spooled, streaming, into a mode-0600 file in a private temp dir, measured on the
 * way, then read from there. The spool is removed by dispose().
 */
export async function stdinSource(input: Readable = process.stdin, tmpDir = os.tmpdir()): Promise<MessageSource> {
  const dir = await mkdtemp(path.join(tmpDir, 'lmtp-send-'))
  const spool = path.join(dir, 'message')
  const enc = new DataEncoder({dotStuff: false})
  try {
    await pipeline(
      input,
      async function* (source: AsyncIterable<Buffer | string>) {
        for await (const chunk of source) {
          const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
          enc.push(buf)
          yield buf
        }
      },
      createWriteStream(spool, {mode: 0o600}),
    )
  } catch (err) {
    await rm(dir, {recursive: true, force: true})
    throw new MessageSourceError(`cannot read the message from stdin: ${(err as Error).message}`)
  }
  enc.end()
  const info: MessageInfo = {size: enc.messageSize, has8bit: enc.has8bit}
  return {
    description: 'stdin',
    open: () => readFileStream(spool, 'stdin (spooled)'),
    scan: async () => info,
    dispose: () => rm(dir, {recursive: true, force: true}),
  }
}

/** What a generated test message says. */
export interface GeneratedMessageOptions {
  /** The From: header address. */
  from: string
  /** The To: header addresses. */
  to: string[]
  /** Pad the message to exactly this many octets (CRLF line ends); a smaller value leaves it unpadded. */
  size?: number
  /** Used in Message-ID. */
  hostname: string
  /** The Date: header (default now). */
  date?: Date
}

/** RFC 5322 date-time, e.g. `Tue, 02 Jan 2024 15:04:05 +0100`, in local time. */
export function formatRfc5322Date(d: Date): string {
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat']
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
  const two = (n: number): string => String(n).padStart(2, '0')
  const off = -d.getTimezoneOffset()
  const sign = off >= 0 ? '+' : '-'
  const abs = Math.abs(off)
  return `${days[d.getDay()]}, ${two(d.getDate())} ${months[d.getMonth()]} ${d.getFullYear()} ${two(d.getHours())}:${two(
    d.getMinutes(),
  )}:${two(d.getSeconds())} ${sign}${two(Math.floor(abs / 60))}${two(abs % 60)}`
}

/** The header block and first body lines of a generated message (CRLF line ends). */
function generatedHead(o: GeneratedMessageOptions): string {
  const date = o.date ?? new Date()
  const id = `${date.getTime().toString(36)}.${process.pid}.${Math.random().toString(36).slice(2, 10)}@${o.hostname}`
  // Fold To: after each address so long recipient lists stay under the line limit.
  const to = o.to.map((a) => `<${a}>`).join(',\r\n ')
  const nonAscii = /[^\x00-\x7f]/.test(o.from + o.to.join(''))
  return [
    `Date: ${formatRfc5322Date(date)}`,
    `Message-ID: <${id}>`,
    `From: <${o.from}>`,
    `To: ${to}`,
    'Subject: lmtp send test message',
    'MIME-Version: 1.0',
    `Content-Type: text/plain; charset=${nonAscii ? 'utf-8' : 'us-ascii'}`,
    'X-Mailer: lmtp send',
    '',
    'This is a test message sent by `lmtp send`.',
    `It was generated at ${date.toISOString()}.`,
    '',
  ].join('\r\n')
}

const FILLER = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmn' // 76 characters

/** Yields `n` octets of filler lines, each ending CRLF (the last one shortened to fit; n >= 2 or 0). */
function* filler(n: number): Generator<Buffer> {
  const line = `${FILLER}\r\n`
  const block = Buffer.from(line.repeat(Math.floor(READ_CHUNK / line.length)))
  let left = n
  while (left >= block.length + 2) {
    yield block
    left -= block.length
  }
  while (left >= line.length + 2) {
    yield Buffer.from(line)
    left -= line.length
  }
  // The last line: `left` octets including its CRLF (a bare CRLF when only 2 are left).
  if (left >= 2) yield Buffer.from(`${'x'.repeat(left - 2)}\r\n`)
}

/**
 * A generated test message (Date, Message-ID, From, To, Subject, a short body), padded with filler lines to
 * `size` octets when asked. Generated lazily, so a large --size never sits in memory.
 */
export function generatedSource(o: GeneratedMessageOptions): MessageSource {
  const head = Buffer.from(generatedHead(o))
  const pad = o.size !== undefined && o.size > head.length + 1 ? o.size - head.length : 0
  async function* stream(): AsyncIterable<Buffer> {
    yield head
    yield* filler(pad)
  }
  return {
    description: 'generated',
    open: stream,
    scan: () => measure(stream()),
    dispose: async () => {},
  }
}
