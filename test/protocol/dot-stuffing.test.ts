import fc from 'fast-check'
import {describe, expect, test} from 'vitest'
import {DataDecoder, DataEncoder} from '../../src/protocol/wire/dot-stuffing.js'

/** Every way the tests feed an input: whole, after an empty chunk, split at each byte boundary, byte by byte. */
function* splits(input: Buffer): Generator<{name: string; chunks: Buffer[]}> {
  yield {name: 'whole', chunks: [input]}
  yield {name: 'empty first', chunks: [Buffer.alloc(0), input]}
  for (let k = 1; k < input.length; k++) {
    yield {name: `split at ${k}`, chunks: [input.subarray(0, k), input.subarray(k)]}
  }
  yield {name: 'byte by byte', chunks: [...input].map((b) => Buffer.from([b]))}
}

/** Cuts a buffer at the given positions. */
function cut(input: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set([0, ...cuts, input.length])].sort((a, b) => a - b)
  const out: Buffer[] = []
  for (let i = 1; i < points.length; i++) out.push(input.subarray(points[i - 1]!, points[i]!))
  return out
}

const bin = (s: string): Buffer => Buffer.from(s, 'latin1')
const str = (b: Buffer): string => b.toString('latin1')

/** What a whole decode produced, in a comparable form. */
interface Decoded {
  body: string
  done: boolean
  rest: string
  size: number
  oversize: boolean
  bareCr: boolean
  bareLf: boolean
  has8bit: boolean
  longestLine: number
}

/** Pushes chunks until the decoder is done; the chunks after that are added to `rest`, like a session would. */
function decodeAll(chunks: Buffer[], maxSize?: number): Decoded {
  const decoder = new DataDecoder({maxSize})
  const body: Buffer[] = []
  const rest: Buffer[] = []
  let done = false
  for (const chunk of chunks) {
    if (done) {
      rest.push(chunk)
      continue
    }
    const r = decoder.push(chunk)
    body.push(...r.body)
    if (r.done) {
      done = true
      rest.push(r.rest)
    } else {
      expect(r.rest.length).toBe(0)
    }
  }
  return {
    body: str(Buffer.concat(body)),
    done,
    rest: str(Buffer.concat(rest)),
    size: decoder.size,
    oversize: decoder.oversize,
    bareCr: decoder.bareCr,
    bareLf: decoder.bareLf,
    has8bit: decoder.has8bit,
    longestLine: decoder.longestLine,
  }
}

/** Encodes chunks; returns the wire bytes including end(). */
function encodeAll(chunks: Buffer[], dotStuff?: boolean): {wire: string; messageSize: number; has8bit: boolean} {
  const encoder = new DataEncoder({dotStuff})
  const out = chunks.map((c) => encoder.push(c))
  out.push(encoder.end())
  return {wire: str(Buffer.concat(out)), messageSize: encoder.messageSize, has8bit: encoder.has8bit}
}

const clean = {rest: '', oversize: false, bareCr: false, bareLf: false, has8bit: false}

interface DecodeCase {
  name: string
  input: string
  maxSize?: number
  expected: Partial<Decoded>
}

const decodeCases: DecodeCase[] = [
  // Ends and un-stuffing.
  {name: 'empty message', input: '.\r\n', expected: {...clean, body: '', done: true, size: 0, longestLine: 0}},
  {name: 'one line', input: 'a\r\n.\r\n', expected: {...clean, body: 'a\r\n', done: true, size: 3, longestLine: 3}},
  {name: 'headers and body', input: 'Subject: hi\r\n\r\nbody\r\n.\r\n', expected: {...clean, body: 'Subject: hi\r\n\r\nbody\r\n', done: true, size: 21, longestLine: 13}},
  {name: 'empty lines only', input: '\r\n\r\n.\r\n', expected: {...clean, body: '\r\n\r\n', done: true, longestLine: 2}},
  {name: 'stuffed dot removed', input: 'a\r\n..b\r\n.\r\n', expected: {...clean, body: 'a\r\n.b\r\n', done: true, size: 7}},
  {name: 'stuffed dot at the start', input: '..b\r\n.\r\n', expected: {...clean, body: '.b\r\n', done: true, size: 4, longestLine: 4}},
  {name: 'a line that is one dot', input: '..\r\n.\r\n', expected: {...clean, body: '.\r\n', done: true, size: 3}},
  {name: 'a line of three dots', input: '...\r\n.\r\n', expected: {...clean, body: '..\r\n', done: true}},
  {name: 'unstuffed leading dot is dropped too', input: '.x\r\n.\r\n', expected: {...clean, body: 'x\r\n', done: true}},
  {name: 'dot inside a line is kept', input: 'a.b.\r\n.\r\n', expected: {...clean, body: 'a.b.\r\n', done: true}},
  {name: 'dot before the terminator is body', input: 'a.\r\n.\r\n', expected: {...clean, body: 'a.\r\n', done: true}},
  {name: 'no terminator yet', input: 'a\r\nb\r\n', expected: {...clean, body: 'a\r\nb\r\n', done: false, size: 6}},
  {name: 'terminator not finished', input: 'a\r\n.\r', expected: {...clean, body: 'a\r\n', done: false, size: 3}},
  {name: 'dot line not finished', input: 'a\r\n.', expected: {...clean, body: 'a\r\n', done: false}},
  // What follows the terminator is handed back untouched.
  {name: 'pipelined commands after the end', input: 'a\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<b@c>\r\n', expected: {...clean, body: 'a\r\n', done: true, rest: 'MAIL FROM:<>\r\nRCPT TO:<b@c>\r\n'}},
  {name: 'a second terminator is rest, not body', input: 'a\r\n.\r\n.\r\n', expected: {...clean, body: 'a\r\n', done: true, rest: '.\r\n'}},
  {name: 'rest with bare LF and 8-bit does not taint the message', input: '.\r\n\n\xff\r', expected: {...clean, body: '', done: true, rest: '\n\xff\r'}},
  // Smuggling variants: body bytes, never an end.
  {name: 'smuggling LF.LF', input: 'a\n.\nb\r\n.\r\n', expected: {body: 'a\n.\nb\r\n', done: true, bareLf: true, bareCr: false, rest: ''}},
  {name: 'smuggling CRLF.LF (the dot is un-stuffed, lines end at CRLF)', input: 'a\r\n.\nb\r\n.\r\n', expected: {body: 'a\r\n\nb\r\n', done: true, bareLf: true, bareCr: false}},
  {name: 'smuggling LF.CRLF', input: 'a\n.\r\nb\r\n.\r\n', expected: {body: 'a\n.\r\nb\r\n', done: true, bareLf: true, bareCr: false}},
  {name: 'smuggling CR.CRLF', input: 'a\r.\r\nb\r\n.\r\n', expected: {body: 'a\r.\r\nb\r\n', done: true, bareCr: true, bareLf: false}},
  {name: 'smuggling CR.CR', input: 'a\r\n.\r\rMAIL FROM:<x>\r\n.\r\n', expected: {body: 'a\r\n\r\rMAIL FROM:<x>\r\n', done: true, bareCr: true, bareLf: false}},
  {name: 'smuggling LF.LF at the start', input: '\n.\nMAIL FROM:<x>\r\n', expected: {body: '\n.\nMAIL FROM:<x>\r\n', done: false, bareLf: true}},
  {name: 'smuggling LF.CRLF then commands, no real end', input: 'a\n.\r\nRSET\r\nMAIL FROM:<x>\r\n', expected: {body: 'a\n.\r\nRSET\r\nMAIL FROM:<x>\r\n', done: false, bareLf: true}},
  {name: 'smuggling CRLF.LF then commands, no real end', input: 'a\r\n.\nRSET\r\n', expected: {body: 'a\r\n\nRSET\r\n', done: false, bareLf: true}},
  {name: 'smuggling CR.CRLF then commands, no real end', input: 'a\r.\r\nRSET\r\n', expected: {body: 'a\r.\r\nRSET\r\n', done: false, bareCr: true}},
  {name: 'bare LF before a real end', input: 'a\r\n\n.\r\n.\r\n', expected: {body: 'a\r\n\n.\r\n', done: true, bareLf: true, bareCr: false}},
  // Bare line ends.
  {name: 'bare CR inside a line', input: 'a\rb\r\n.\r\n', expected: {body: 'a\rb\r\n', done: true, bareCr: true, bareLf: false, longestLine: 5}},
  {name: 'bare LF inside a line does not end it', input: 'a\nb\r\n.\r\n', expected: {body: 'a\nb\r\n', done: true, bareCr: false, bareLf: true, longestLine: 5}},
  {name: 'CR CR LF', input: 'a\r\r\n.\r\n', expected: {body: 'a\r\r\n', done: true, bareCr: true, bareLf: false}},
  {name: 'LF CR LF', input: 'a\n\r\n.\r\n', expected: {body: 'a\n\r\n', done: true, bareCr: false, bareLf: true}},
  {name: 'LF first', input: '\nx\r\n.\r\n', expected: {body: '\nx\r\n', done: true, bareLf: true, bareCr: false}},
  {name: 'CR first', input: '\rx\r\n.\r\n', expected: {body: '\rx\r\n', done: true, bareCr: true, bareLf: false}},
  {name: 'dot CR x: the dot is stuffing, the CR is bare', input: '.\rx\r\n.\r\n', expected: {body: '\rx\r\n', done: true, bareCr: true, bareLf: false, longestLine: 4}},
  {name: 'dot LF: the LF is bare', input: '.\n.\r\n.\r\n', expected: {body: '\n.\r\n', done: true, bareCr: false, bareLf: true}},
  // 8-bit and line lengths.
  {name: '8-bit octet', input: 'caf\xe9\r\n.\r\n', expected: {...clean, body: 'caf\xe9\r\n', done: true, has8bit: true}},
  {name: 'NUL and controls are 7-bit', input: '\x00\x01\x7f\r\n.\r\n', expected: {...clean, body: '\x00\x01\x7f\r\n', done: true, has8bit: false}},
  {name: 'longest line counts CRLF, not the stuffed dot', input: 'ab\r\n..abcd\r\n\r\n.\r\n', expected: {...clean, body: 'ab\r\n.abcd\r\n\r\n', done: true, longestLine: 7}},
  // Size limit.
  {name: 'size at the limit', input: 'abc\r\n.\r\n', maxSize: 5, expected: {...clean, body: 'abc\r\n', done: true, size: 5, oversize: false}},
  {name: 'size one over the limit', input: 'abc\r\n\r\n.\r\n', maxSize: 5, expected: {...clean, body: 'abc\r\n', done: true, size: 7, oversize: true}},
  {name: 'oversize keeps scanning and counting', input: 'abc\r\ndef\r\n..g\r\n.\r\nQUIT\r\n', maxSize: 4, expected: {...clean, body: 'abc\r', done: true, size: 14, oversize: true, rest: 'QUIT\r\n', longestLine: 5}},
  {name: 'oversize still flags bare LF and 8-bit', input: 'abcdef\r\n\xe9\nz\r\n.\r\n', maxSize: 2, expected: {body: 'ab', done: true, size: 13, oversize: true, bareLf: true, has8bit: true}},
  {name: 'limit 0, empty message', input: '.\r\n', maxSize: 0, expected: {...clean, body: '', done: true, size: 0, oversize: false}},
  {name: 'limit 0, one line', input: 'a\r\n.\r\n', maxSize: 0, expected: {...clean, body: '', done: true, size: 3, oversize: true}},
]

describe('DataDecoder', () => {
  describe.each(decodeCases)('$name', (c) => {
    test.each([...splits(bin(c.input))])('$name', ({chunks}) => {
      const got = decodeAll(chunks, c.maxSize)
      expect(got).toMatchObject(c.expected)
      // Without a limit, size is exactly the body emitted.
      if (c.maxSize === undefined) expect(got.size).toBe(got.body.length)
    })
  })

  test('push() after the end throws', () => {
    const decoder = new DataDecoder()
    expect(decoder.push(bin('.\r\nQUIT\r\n')).done).toBe(true)
    expect(() => decoder.push(bin('x'))).toThrow()
  })

  test('rejects a negative maxSize', () => {
    expect(() => new DataDecoder({maxSize: -1})).toThrow(RangeError)
  })

  test('body parts are views into the pushed chunk, not copies', () => {
    const chunk = bin('Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n')
    const r = new DataDecoder().push(chunk)
    expect(r.body.length).toBe(1)
    expect(r.body[0]!.buffer).toBe(chunk.buffer)
    expect(r.rest.buffer).toBe(chunk.buffer)
  })

  test('no body parts are emitted once oversize', () => {
    const decoder = new DataDecoder({maxSize: 10})
    expect(Buffer.concat(decoder.push(bin('0123456789abc')).body).toString()).toBe('0123456789')
    expect(decoder.oversize).toBe(true)
    expect(decoder.push(bin('more\r\nlines\r\n')).body).toEqual([])
    const end = decoder.push(bin('.\r\nRSET\r\n'))
    expect(end).toMatchObject({body: [], done: true})
    expect(end.rest.toString()).toBe('RSET\r\n')
    expect(decoder.size).toBe(13 + 13)
  })

  test('a large message in 64 KiB chunks: right size, ends once, rest intact', () => {
    const line = bin(`${'x'.repeat(76)}\r\n`)
    const lines = 50_000
    const message = Buffer.concat(Array.from({length: lines}, (_, i) => (i % 1000 === 0 ? bin('.. stuffed\r\n') : line)))
    const wire = Buffer.concat([message, bin('.\r\nQUIT\r\n')])
    const decoder = new DataDecoder()
    let size = 0
    let rest = ''
    let ends = 0
    for (let i = 0; i < wire.length; i += 65_536) {
      const r = decoder.push(wire.subarray(i, Math.min(wire.length, i + 65_536)))
      for (const b of r.body) size += b.length
      if (r.done) {
        ends++
        rest = r.rest.toString()
        break
      }
    }
    expect(ends).toBe(1)
    expect(rest).toBe('QUIT\r\n')
    expect(size).toBe(message.length - lines / 1000)
    expect(decoder.size).toBe(size)
    expect(decoder.longestLine).toBe(78)
    expect(decoder.bareCr || decoder.bareLf || decoder.has8bit).toBe(false)
  })
})

interface EncodeCase {
  name: string
  input: string
  wire: string
  /** Wire bytes with dotStuff:false. */
  raw: string
  size: number
  has8bit?: boolean
}

const encodeCases: EncodeCase[] = [
  {name: 'empty message', input: '', wire: '.\r\n', raw: '', size: 0},
  {name: 'no final line end', input: 'a', wire: 'a\r\n.\r\n', raw: 'a\r\n', size: 3},
  {name: 'bare LF', input: 'a\nb\n', wire: 'a\r\nb\r\n.\r\n', raw: 'a\r\nb\r\n', size: 6},
  {name: 'CRLF kept', input: 'a\r\nb\r\n', wire: 'a\r\nb\r\n.\r\n', raw: 'a\r\nb\r\n', size: 6},
  {name: 'lone CR', input: 'a\rb', wire: 'a\r\nb\r\n.\r\n', raw: 'a\r\nb\r\n', size: 6},
  {name: 'CR at the end', input: 'a\r', wire: 'a\r\n.\r\n', raw: 'a\r\n', size: 3},
  {name: 'CR CR LF', input: '\r\r\n', wire: '\r\n\r\n.\r\n', raw: '\r\n\r\n', size: 4},
  {name: 'LF CR', input: '\n\r', wire: '\r\n\r\n.\r\n', raw: '\r\n\r\n', size: 4},
  {name: 'empty lines', input: '\n\n', wire: '\r\n\r\n.\r\n', raw: '\r\n\r\n', size: 4},
  {name: 'leading dots stuffed', input: '.a\n.\n..\n', wire: '..a\r\n..\r\n...\r\n.\r\n', raw: '.a\r\n.\r\n..\r\n', size: 11},
  {name: 'dot after a lone CR is at a line start', input: 'x\r.', wire: 'x\r\n..\r\n.\r\n', raw: 'x\r\n.\r\n', size: 6},
  {name: 'dot inside a line untouched', input: 'a.b.\r\n', wire: 'a.b.\r\n.\r\n', raw: 'a.b.\r\n', size: 6},
  {name: 'a message that is one dot', input: '.', wire: '..\r\n.\r\n', raw: '.\r\n', size: 3},
  {name: 'smuggling attempt is neutralised', input: 'a\n.\nMAIL FROM:<x>\r\n', wire: 'a\r\n..\r\nMAIL FROM:<x>\r\n.\r\n', raw: 'a\r\n.\r\nMAIL FROM:<x>\r\n', size: 21},
  {name: '8-bit', input: 'caf\xe9', wire: 'caf\xe9\r\n.\r\n', raw: 'caf\xe9\r\n', size: 6, has8bit: true},
]

describe('DataEncoder', () => {
  describe.each(encodeCases)('$name', (c) => {
    test.each([...splits(bin(c.input))])('$name', ({chunks}) => {
      expect(encodeAll(chunks)).toEqual({wire: c.wire, messageSize: c.size, has8bit: c.has8bit ?? false})
      expect(encodeAll(chunks, false)).toEqual({wire: c.raw, messageSize: c.size, has8bit: c.has8bit ?? false})
    })
  })

  test('push() after end() throws, and so does a second end()', () => {
    const encoder = new DataEncoder()
    encoder.end()
    expect(() => encoder.push(bin('x'))).toThrow()
    expect(() => encoder.end()).toThrow()
  })

  test('messageSize before end() leaves out the CRLF end() will add', () => {
    const encoder = new DataEncoder()
    encoder.push(bin('..ab'))
    expect(encoder.messageSize).toBe(4)
    encoder.end()
    expect(encoder.messageSize).toBe(6)
  })
})

describe('properties', () => {
  /** Bytes biased towards CR, LF and dot, so line ends, stuffing and terminator near-misses are frequent. */
  const byteArb = fc.oneof(
    {arbitrary: fc.constantFrom(0x0d, 0x0a, 0x2e), weight: 3},
    {arbitrary: fc.constantFrom(0x41, 0xe9), weight: 1},
    {arbitrary: fc.integer({min: 0, max: 255}), weight: 1},
  )
  const bytes = fc.array(byteArb, {maxLength: 120}).map((a) => Buffer.from(a))
  const chunked = (b: fc.Arbitrary<Buffer>) =>
    b.chain((input) => fc.uniqueArray(fc.integer({min: 0, max: input.length}), {maxLength: 12}).map((cuts) => ({input, chunks: cut(input, cuts)})))

  /** The CRLF normalisation the encoder promises: every CR, every LF and every CR LF becomes one CRLF. */
  function normalise(input: Buffer): string {
    let s = str(input).replace(/\r\n|\r|\n/g, '\r\n')
    if (s.length > 0 && !s.endsWith('\r\n')) s += '\r\n'
    return s
  }

  /** The RFC reading of a DATA stream: ends at the first CRLF "." CRLF (the data start counts as after CRLF). */
  function model(input: Buffer): Partial<Decoded> {
    const s = str(input)
    const at = `\r\n${s}`.indexOf('\r\n.\r\n')
    // Without an end, a "." or "." CR at a line start is still held back by the decoder (it may start the end).
    const raw = at < 0 ? s.replace(/(^|\r\n)\.\r?$/, '$1') : s.slice(0, at)
    const body = raw.replace(/(^|\r\n)\./g, '$1')
    if (at < 0) return {done: false, rest: '', size: body.length, body}
    const lines = body.split('\r\n').slice(0, -1)
    return {
      done: true,
      body,
      size: body.length,
      rest: s.slice(at + 3),
      bareCr: /\r(?!\n)/.test(body),
      bareLf: /(^|[^\r])\n/.test(body),
      has8bit: /[\x80-\xff]/.test(body),
      longestLine: Math.max(0, ...lines.map((l) => l.length + 2)),
    }
  }

  test('encode then decode gives back the CRLF-normalised message, for any bytes and any chunking', () => {
    fc.assert(
      fc.property(chunked(bytes), fc.array(fc.nat(), {maxLength: 8}), ({input, chunks}, decodeCuts) => {
        const encoded = encodeAll(chunks)
        const expected = normalise(input)
        const wire = bin(encoded.wire)
        const decoded = decodeAll(cut(wire, decodeCuts.map((n) => n % (wire.length + 1))))
        expect(decoded).toEqual({
          body: expected,
          done: true,
          rest: '',
          size: expected.length,
          oversize: false,
          bareCr: false,
          bareLf: false,
          has8bit: input.some((b) => b >= 0x80),
          longestLine: decoded.longestLine,
        })
        expect(encoded.messageSize).toBe(expected.length)
        expect(encoded.has8bit).toBe(decoded.has8bit)
        // With dotStuff:false the wire is exactly the normalised message.
        expect(encodeAll(chunks, false).wire).toBe(expected)
      }),
      {numRuns: 1000},
    )
  })

  test('the decoder ends only at CRLF.CRLF and agrees with the RFC model, for any bytes and any chunking', () => {
    fc.assert(
      fc.property(chunked(bytes), ({input, chunks}) => {
        const got = decodeAll(chunks)
        const expected = model(input)
        expect(got).toMatchObject(expected)
        if (got.done) {
          const consumed = str(input).slice(0, input.length - got.rest.length)
          expect(consumed === '.\r\n' || consumed.endsWith('\r\n.\r\n')).toBe(true)
        }
      }),
      {numRuns: 2000},
    )
  })

  test('random bytes never crash the decoder, and the chunking never changes the result', () => {
    fc.assert(
      fc.property(chunked(fc.uint8Array({maxLength: 300}).map((a) => Buffer.from(a))), fc.option(fc.nat({max: 300})), ({input, chunks}, maxSize) => {
        const limit = maxSize ?? undefined
        expect(decodeAll(chunks, limit)).toEqual(decodeAll([input], limit))
      }),
      {numRuns: 500},
    )
  })

  test('with a limit, the body is the first maxSize octets of the unlimited body', () => {
    fc.assert(
      fc.property(chunked(bytes), fc.nat({max: 130}), ({input, chunks}, maxSize) => {
        const full = decodeAll([input])
        const limited = decodeAll(chunks, maxSize)
        expect(limited.size).toBe(full.size)
        expect(limited.body).toBe(full.body.slice(0, maxSize))
        expect(limited.oversize).toBe(full.size > maxSize)
      }),
      {numRuns: 500},
    )
  })
})
