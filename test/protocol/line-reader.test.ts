import fc from 'fast-check'
import {describe, expect, test} from 'vitest'
import {DEFAULT_MAX_LINE_LENGTH, type LineEvent, LineReader} from '../../src/protocol/wire/line-reader.js'

/** Every way the tests feed an input: whole, after an empty chunk, split at each byte boundary, byte by byte. */
function* splits(input: Buffer): Generator<{name: string; chunks: Buffer[]}> {
  yield {name: 'whole', chunks: [input]}
  yield {name: 'empty first', chunks: [Buffer.alloc(0), input]}
  for (let k = 1; k < input.length; k++) {
    yield {name: `split at ${k}`, chunks: [input.subarray(0, k), input.subarray(k)]}
  }
  yield {name: 'byte by byte', chunks: [...input].map((b) => Buffer.from([b]))}
}

/** A serialisable view of an event, so runs can be compared with toEqual. */
type Seen = {kind: 'line'; text: string} | {kind: 'overlong'; length: number}

function view(ev: LineEvent): Seen {
  return ev.kind === 'line' ? {kind: 'line', text: ev.line.toString('latin1')} : ev
}

/** Pushes every chunk, draining next() after each push (the documented usage). */
function readAll(chunks: Buffer[], maxLength?: number): {events: Seen[]; buffered: number; maxBuffered: number} {
  const reader = new LineReader({maxLength})
  const events: Seen[] = []
  let maxBuffered = 0
  for (const chunk of chunks) {
    reader.push(chunk)
    maxBuffered = Math.max(maxBuffered, reader.buffered)
    for (let ev = reader.next(); ev; ev = reader.next()) events.push(view(ev))
    maxBuffered = Math.max(maxBuffered, reader.buffered)
  }
  return {events, buffered: reader.buffered, maxBuffered}
}

const line = (text: string): Seen => ({kind: 'line', text})
const overlong = (length: number): Seen => ({kind: 'overlong', length})

interface Case {
  name: string
  input: string
  maxLength?: number
  events: Seen[]
  /** Octets left over (an unfinished line). */
  buffered?: number
}

const cases: Case[] = [
  {name: 'one line', input: 'LHLO example.com\r\n', events: [line('LHLO example.com')]},
  {name: 'several lines in one chunk', input: 'MAIL FROM:<>\r\nRCPT TO:<a@b>\r\nDATA\r\n', events: [line('MAIL FROM:<>'), line('RCPT TO:<a@b>'), line('DATA')]},
  {name: 'empty line', input: '\r\n', events: [line('')]},
  {name: 'empty lines', input: '\r\n\r\nNOOP\r\n', events: [line(''), line(''), line('NOOP')]},
  {name: 'bare LF stays inside the line', input: 'NOOP\nQUIT\r\n', events: [line('NOOP\nQUIT')]},
  {name: 'bare LF alone is not a line end', input: 'NOOP\n', events: [], buffered: 5},
  {name: 'bare CR stays inside the line', input: 'NO\rOP\r\n', events: [line('NO\rOP')]},
  {name: 'LF then CRLF', input: 'a\n\r\n', events: [line('a\n')]},
  {name: 'CR CR LF', input: 'a\r\r\n', events: [line('a\r')]},
  {name: 'unfinished line is held', input: 'RSET\r\nQUI', events: [line('RSET')], buffered: 3},
  {name: 'trailing CR is held', input: 'QUIT\r', events: [], buffered: 5},
  {name: 'non-ASCII octets pass through', input: 'NOOP \xe9\xff\x00\r\n', events: [line('NOOP \xe9\xff\x00')]},
  {name: 'line of exactly maxLength', input: '12345678\r\n', maxLength: 10, events: [line('12345678')]},
  {name: 'line one over maxLength', input: '123456789\r\nNOOP\r\n', maxLength: 10, events: [overlong(11), line('NOOP')]},
  {
    name: 'long overlong line then normal lines',
    input: `${'x'.repeat(50)}\r\nNOOP\r\nQUIT\r\n`,
    maxLength: 10,
    events: [overlong(52), line('NOOP'), line('QUIT')],
  },
  {
    name: 'two overlong lines in a row',
    input: `${'x'.repeat(20)}\r\n${'y'.repeat(30)}\r\nok\r\n`,
    maxLength: 10,
    events: [overlong(22), overlong(32), line('ok')],
  },
  {
    name: 'overlong line containing bare CR and LF',
    input: `${'\rx'.repeat(10)}\n${'y\n'.repeat(10)}\r\nok\r\n`,
    maxLength: 10,
    events: [overlong(43), line('ok')],
  },
  {name: 'overlong line ending in CR CR LF', input: `${'x'.repeat(12)}\r\r\nok\r\n`, maxLength: 10, events: [overlong(15), line('ok')]},
  {name: 'overlong line still unfinished', input: `NOOP\r\n${'x'.repeat(25)}`, maxLength: 10, events: [line('NOOP')], buffered: 0},
  {name: 'short lines around an overlong one', input: `a\r\n${'z'.repeat(12)}\r\nb\r\n`, maxLength: 10, events: [line('a'), overlong(14), line('b')]},
  {name: 'smallest cap', input: '\r\na\r\n', maxLength: 2, events: [line(''), overlong(3)]},
]

describe('LineReader', () => {
  describe.each(cases)('$name', (c) => {
    const input = Buffer.from(c.input, 'latin1')
    test.each([...splits(input)])('$name', ({chunks}) => {
      const result = readAll(chunks, c.maxLength)
      expect(result.events).toEqual(c.events)
      expect(result.buffered).toBe(c.buffered ?? 0)
    })
  })

  test('the default cap is 2048 octets, CRLF included', () => {
    expect(DEFAULT_MAX_LINE_LENGTH).toBe(2048)
    const ok = `${'a'.repeat(2046)}\r\n`
    const tooLong = `${'b'.repeat(2047)}\r\n`
    expect(readAll([Buffer.from(ok + tooLong + 'NOOP\r\n')]).events).toEqual([line('a'.repeat(2046)), overlong(2049), line('NOOP')])
  })

  test.each([0, 1, -5, 2.5, Number.NaN])('rejects maxLength %s', (maxLength) => {
    expect(() => new LineReader({maxLength})).toThrow(RangeError)
  })

  test('a 10 MB line is skipped without being held, then reading goes on', () => {
    const chunkSize = 64 * 1024
    const total = 10 * 1024 * 1024
    const chunks: Buffer[] = [Buffer.from('NOOP\r\n')]
    for (let sent = 0; sent < total; sent += chunkSize) chunks.push(Buffer.alloc(chunkSize, 0x41))
    chunks.push(Buffer.from('\r\nQUIT\r\n'))
    const result = readAll(chunks)
    expect(result.events).toEqual([line('NOOP'), overlong(total + 2), line('QUIT')])
    // At most one chunk is ever held, whatever the line's length.
    expect(result.maxBuffered).toBeLessThanOrEqual(chunkSize + 6)
  })

  test('while an overlong line is skipped, nothing is buffered', () => {
    const reader = new LineReader({maxLength: 100})
    reader.push(Buffer.alloc(150, 0x41))
    expect(reader.next()).toBeUndefined()
    expect(reader.buffered).toBe(0)
    reader.push(Buffer.alloc(1000, 0x42))
    expect(reader.buffered).toBe(0)
    expect(reader.next()).toBeUndefined()
    reader.push(Buffer.from('\r\nNOOP\r\n'))
    expect(reader.next()).toEqual({kind: 'overlong', length: 1152})
    expect(reader.next()?.kind).toBe('line')
    expect(reader.next()).toBeUndefined()
  })

  test('many small lines in one chunk all come out, in order', () => {
    const count = 50_000
    const input = Buffer.from(Array.from({length: count}, (_, i) => `RCPT TO:<u${i}@example.com>\r\n`).join(''))
    const reader = new LineReader()
    reader.push(input)
    const got: string[] = []
    for (let ev = reader.next(); ev; ev = reader.next()) got.push(ev.kind === 'line' ? ev.line.toString() : 'overlong')
    expect(got).toEqual(Array.from({length: count}, (_, i) => `RCPT TO:<u${i}@example.com>`))
    expect(reader.buffered).toBe(0)
  })

  describe('take() hands over the bytes after a DATA line', () => {
    const takeCases = [
      {name: 'body in the same chunk', input: 'RCPT TO:<a@b>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n', lines: ['RCPT TO:<a@b>', 'DATA'], body: 'Subject: x\r\n\r\nhi\r\n.\r\n'},
      {name: 'nothing after DATA', input: 'DATA\r\n', lines: ['DATA'], body: ''},
      {name: 'body starting with an over-long line', input: `DATA\r\n${'x'.repeat(40)}\r\n`, lines: ['DATA'], body: `${'x'.repeat(40)}\r\n`},
      {name: 'body with bare LF', input: 'DATA\r\na\nb\r\n', lines: ['DATA'], body: 'a\nb\r\n'},
    ]
    describe.each(takeCases)('$name', (c) => {
      test.each([...splits(Buffer.from(c.input, 'latin1'))])('$name', ({chunks}) => {
        // Simulates a session: lines until DATA, then every further byte is body.
        const reader = new LineReader({maxLength: 20})
        const lines: string[] = []
        const body: Buffer[] = []
        let inBody = false
        for (const chunk of chunks) {
          if (inBody) {
            body.push(chunk)
            continue
          }
          reader.push(chunk)
          for (let ev = reader.next(); ev; ev = reader.next()) {
            if (ev.kind !== 'line') throw new Error('unexpected overlong')
            lines.push(ev.line.toString('latin1'))
            if (ev.line.toString() === 'DATA') {
              inBody = true
              body.push(reader.take())
              expect(reader.buffered).toBe(0)
              break
            }
          }
        }
        expect(lines).toEqual(c.lines)
        expect(Buffer.concat(body).toString('latin1')).toBe(c.body)
      })
    })
  })

  test('take() forgets an overlong line being skipped', () => {
    const reader = new LineReader({maxLength: 10})
    reader.push(Buffer.from('x'.repeat(30)))
    expect(reader.next()).toBeUndefined()
    expect(reader.take().length).toBe(0)
    reader.push(Buffer.from('yyy\r\nNOOP\r\n'))
    expect(reader.next()).toEqual({kind: 'line', line: Buffer.from('yyy')})
    expect(reader.next()).toEqual({kind: 'line', line: Buffer.from('NOOP')})
  })

  test('take() after STARTTLS returns the injected commands and leaves the reader empty', () => {
    const reader = new LineReader()
    reader.push(Buffer.from('STARTTLS\r\nRSET\r\nMAIL FROM:<evil@x>\r\n'))
    expect(reader.next()).toEqual({kind: 'line', line: Buffer.from('STARTTLS')})
    expect(reader.take().toString()).toBe('RSET\r\nMAIL FROM:<evil@x>\r\n')
    expect(reader.next()).toBeUndefined()
    expect(reader.buffered).toBe(0)
  })

  describe('properties', () => {
    /** Bytes biased towards CR, LF and a few letters, so line ends and near-misses are frequent. */
    const bytes = fc
      .array(fc.oneof(fc.constantFrom(0x0d, 0x0a, 0x41, 0x42), fc.integer({min: 0, max: 255})), {maxLength: 200})
      .map((a) => Buffer.from(a))
    /** Cut points for a random chunking of an input. */
    const chunkedBytes = bytes.chain((input) =>
      fc.uniqueArray(fc.integer({min: 0, max: input.length}), {maxLength: 20}).map((cuts) => ({input, chunks: cut(input, cuts)})),
    )

    /** The model: split on CRLF; a piece too long is an overlong event; an unfinished tail is held or dropped. */
    function model(input: Buffer, maxLength: number): {events: Seen[]; buffered: number} {
      const events: Seen[] = []
      let start = 0
      for (let k = input.indexOf('\r\n', start); k >= 0; k = input.indexOf('\r\n', start)) {
        const length = k + 2 - start
        events.push(length > maxLength ? overlong(length) : line(input.subarray(start, k).toString('latin1')))
        start = k + 2
      }
      const tail = input.length - start
      return {events, buffered: tail >= maxLength ? 0 : tail}
    }

    test('any chunking of any bytes gives the model events (and never throws)', () => {
      fc.assert(
        fc.property(chunkedBytes, fc.integer({min: 2, max: 40}), ({input, chunks}, maxLength) => {
          const result = readAll(chunks, maxLength)
          expect(result).toMatchObject(model(input, maxLength))
        }),
        {numRuns: 500},
      )
    })
  })
})

/** Cuts a buffer at the given positions. */
function cut(input: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set([0, ...cuts, input.length])].sort((a, b) => a - b)
  const out: Buffer[] = []
  for (let i = 1; i < points.length; i++) out.push(input.subarray(points[i - 1]!, points[i]!))
  return out
}
