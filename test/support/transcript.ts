/**
 * Transcript fixtures: `C:` lines the client sends (CRLF added), `B:` raw bytes (escapes \r \n \t \xHH, no
 * CRLF added), `S:` lines the server must answer, exactly. Consecutive C:/B: lines are sent as one chunk
 * (pipelined). Directives configure the backend and the session:
 *   @rcpt-fail ADDRESS CODE ENHANCED TEXT     refuse at RCPT
 *   @deliver-fail ADDRESS CODE ENHANCED TEXT  fail after the body
 *   @option NAME=NUMBER                        a SessionOptions number (maxRecipients, maxMessageSize, ...)
 *   @closed                                    the session must be closed at this point
 *   @include FILE                              (expanded by the test before parsing)
 * `#` starts a comment line.
 */
import {ServerSession, type SessionOptions} from '../../src/protocol/server-session.js'
import {reply} from '../../src/protocol/reply.js'
import {MemoryBackend} from './memory-backend.js'

/** A parsed transcript: steps of input and expected output. */
export interface Transcript {
  backend: MemoryBackend
  options: Partial<SessionOptions>
  steps: {send: Buffer; expect: string[]; closed: boolean}[]
}

/** Decodes the escapes of a B: line. */
export function unescapeBytes(text: string): Buffer {
  const out: number[] = []
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!
    if (ch === '\\' && i + 1 < text.length) {
      const n = text[i + 1]!
      if (n === 'r') out.push(13)
      else if (n === 'n') out.push(10)
      else if (n === 't') out.push(9)
      else if (n === '\\') out.push(92)
      else if (n === 'x') {
        out.push(Number.parseInt(text.slice(i + 2, i + 4), 16))
        i += 2
      } else out.push(...Buffer.from(`\\${n}`))
      i++
    } else out.push(...Buffer.from(ch))
  }
  return Buffer.from(out)
}

/** Parses a transcript text. */
export function parseTranscript(text: string): Transcript {
  const backend = new MemoryBackend()
  const options: Partial<SessionOptions> = {}
  const steps: Transcript['steps'] = []
  let sending: Buffer[] = []
  let current: Transcript['steps'][number] | undefined
  const startStep = (): void => {
    if (sending.length > 0) {
      current = {send: Buffer.concat(sending), expect: [], closed: false}
      steps.push(current)
      sending = []
    }
  }
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '')
    if (line.trim() === '' || line.startsWith('#')) continue
    if (line.startsWith('@')) {
      const [directive, ...rest] = line.split(' ')
      if (directive === '@rcpt-fail' || directive === '@deliver-fail') {
        const [addr, code, enhanced, ...words] = rest
        const map = directive === '@rcpt-fail' ? backend.rcptFailures : backend.deliveryFailures
        map.set(addr!.toLowerCase(), reply(Number(code), enhanced, words.join(' ')))
      } else if (directive === '@option') {
        const [name, value] = rest[0]!.split('=')
        ;(options as Record<string, unknown>)[name!] = value === 'true' ? true : value === 'false' ? false : Number(value)
      } else if (directive === '@closed') {
        startStep()
        if (!current) throw new Error('@closed before any input')
        current.closed = true
      } else throw new Error(`unknown directive ${directive}`)
      continue
    }
    const tag = line.slice(0, 3)
    const body = line.slice(3)
    if (tag === 'C: ') {
      if (current && current.expect.length > 0 && sending.length === 0) current = undefined
      sending.push(Buffer.from(`${body}\r\n`))
    } else if (tag === 'B: ') {
      sending.push(unescapeBytes(body))
    } else if (tag === 'S: ') {
      startStep()
      if (!current) {
        // Lines before any input: the greeting.
        current = {send: Buffer.alloc(0), expect: [], closed: false}
        steps.push(current)
      }
      current.expect.push(body)
    } else throw new Error(`bad transcript line: ${line}`)
  }
  startStep()
  return {backend, options, steps}
}

/** Runs a session over a transcript; `split` feeds every chunk byte by byte. Returns actual output per step. */
export async function runTranscript(
  t: Transcript,
  split: 'whole' | 'bytes',
): Promise<{outputs: string[][]; closedAt: number[]; session: ServerSession}> {
  let out = ''
  let closed = false
  const session = new ServerSession(
    {sessionId: 't1', hostname: 'mx.test', peer: '127.0.0.1:1', maxMessageSize: 1_000_000, ...t.options},
    t.backend,
    {
      write: (d) => {
        out += d
      },
      close: () => {
        closed = true
      },
    },
  )
  const outputs: string[][] = []
  const closedAt: number[] = []
  session.greet()
  for (const [i, step] of t.steps.entries()) {
    if (split === 'whole') await session.receive(step.send)
    else for (let b = 0; b < step.send.length; b++) await session.receive(step.send.subarray(b, b + 1))
    // Let delayed backend results settle.
    await new Promise((r) => setTimeout(r, 0))
    const lines = out.split('\r\n')
    lines.pop()
    outputs.push(lines)
    out = ''
    if (closed) closedAt.push(i)
  }
  return {outputs, closedAt, session}
}
