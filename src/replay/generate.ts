/**
 * Generated messages for load (`lmtp replay --generate SIZE`): one body buffer built once and reused for
 * every message, behind a small per-message header block (a unique Message-ID), so generating costs nothing
 * next to sending.
 */
import {randomBytes} from 'node:crypto'
import type {ReplayItem, SourceEntry} from './item.js'
import {measureChunks} from './measure.js'

/** Options of the generator. */
export interface GenerateOptions {
  /** Approximate size of each message in octets (headers included). */
  size: number
  /** The From and To header addresses (the envelope comes from --from / --to). */
  from: string
  to: string[]
}

const LINE = 'The quick brown fox jumps over the lazy dog. 0123456789 lmtp replay load.'

/** Builds the shared body: text lines (CRLF) padded to `bytes`, never empty. */
export function generatedBody(bytes: number): Buffer {
  const lines: string[] = []
  let size = 0
  while (size < bytes || lines.length === 0) {
    const room = bytes - size - 2
    const line = room >= LINE.length || room <= 0 ? LINE : LINE.slice(0, room)
    lines.push(line)
    size += line.length + 2
  }
  return Buffer.from(`${lines.join('\r\n')}\r\n`)
}

/** An endless source of generated messages. */
export async function* generateMessages(o: GenerateOptions): AsyncGenerator<SourceEntry> {
  const run = randomBytes(4).toString('hex')
  const date = new Date().toUTCString().replace('GMT', '+0000')
  const fixed = `From: <${o.from || 'mailer-daemon@localhost'}>\r\nTo: ${o.to.map((t) => `<${t}>`).join(', ')}\r\nSubject: lmtp replay load test\r\nDate: ${date}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n`
  const headerGuess = fixed.length + 60
  const body = Buffer.concat([Buffer.from('\r\n'), generatedBody(Math.max(1, o.size - headerGuess))])
  const fixedBuf = Buffer.from(fixed)
  // Every generated message is 7-bit; only its Message-ID line changes its size. No hash: --resume refuses
  // --generate, and hashing every message would cost a load tool its speed.
  const first = Buffer.from(`Message-ID: <1.${run}@lmtp-replay.invalid>\r\n`)
  const {sha256: _, ...sizeOf1} = await measureChunks([first, fixedBuf, body])
  for (let n = 1; ; n++) {
    const id = Buffer.from(`Message-ID: <${n}.${run}@lmtp-replay.invalid>\r\n`)
    const info = {...sizeOf1, size: sizeOf1.size + id.length - first.length}
    const item: ReplayItem = {
      source: `generated#${n}`,
      kind: 'generated',
      open: async () => ({
        from: o.from,
        to: o.to,
        body: parts([id, fixedBuf, body]),
        close: async () => {},
        info,
      }),
    }
    yield {item}
  }
}

async function* parts(bufs: Buffer[]): AsyncGenerator<Buffer> {
  for (const b of bufs) yield b
}
