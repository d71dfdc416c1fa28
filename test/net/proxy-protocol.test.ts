/**
 * The PROXY protocol decoder (v1 and v2): every case fed whole, split at every byte boundary, and byte by byte,
 * must give the same header and the same rest; malformed headers give an error at the first byte that proves it;
 * random input never throws; encode -> decode round-trips. And the trusted-network list.
 */
import fc from 'fast-check'
import {describe, expect, test} from 'vitest'
import {CidrList, encodeProxyV2, type ProxyDecodeResult, ProxyHeaderDecoder, PROXY_V2_SIGNATURE} from '../../src/net/proxy-protocol.js'

/** Feeds chunks as a socket would; once the header is found, later chunks belong to the rest (the session). */
function feed(chunks: Buffer[]): ProxyDecodeResult {
  const d = new ProxyHeaderDecoder()
  let r: ProxyDecodeResult = {kind: 'more'}
  for (const [i, c] of chunks.entries()) {
    r = d.push(c)
    if (r.kind === 'header') return {...r, rest: Buffer.concat([r.rest, ...chunks.slice(i + 1)])}
    if (r.kind === 'error') return r
  }
  return r
}

/** Every way of cutting `input` once, plus byte by byte: all must agree with feeding it whole. */
function everySplit(input: Buffer): ProxyDecodeResult[] {
  const out = [feed([input])]
  for (let i = 1; i < input.length; i++) out.push(feed([input.subarray(0, i), input.subarray(i)]))
  out.push(feed([...input].map((b) => Buffer.from([b]))))
  return out
}

/** Normalises a result for comparison (rest as text). */
function shape(r: ProxyDecodeResult): unknown {
  return r.kind === 'header' ? {kind: r.kind, header: r.header, rest: r.rest.toString('latin1')} : r
}

const AFTER = Buffer.from('LHLO mta.example\r\n')

function v2(verCmd: number, fam: number, body: Buffer): Buffer {
  const head = Buffer.alloc(16)
  PROXY_V2_SIGNATURE.copy(head)
  head[12] = verCmd
  head[13] = fam
  head.writeUInt16BE(body.length, 14)
  return Buffer.concat([head, body])
}

const good: [string, Buffer, unknown][] = [
  [
    'v1 TCP4',
    Buffer.from('PROXY TCP4 192.0.2.10 127.0.0.1 51234 2424\r\n'),
    {version: 1, command: 'PROXY', family: 'TCP4', source: {address: '192.0.2.10', port: 51234}, destination: {address: '127.0.0.1', port: 2424}},
  ],
  [
    'v1 TCP6',
    Buffer.from('PROXY TCP6 2001:db8::5 ::1 65535 24\r\n'),
    {version: 1, command: 'PROXY', family: 'TCP6', source: {address: '2001:db8::5', port: 65535}, destination: {address: '::1', port: 24}},
  ],
  ['v1 UNKNOWN', Buffer.from('PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n'), {version: 1, command: 'PROXY', family: 'UNKNOWN'}],
  [
    'v2 TCP4',
    encodeProxyV2({command: 'PROXY', source: {address: '198.51.100.7', port: 40000}, destination: {address: '127.0.0.1', port: 2424}}),
    {version: 2, command: 'PROXY', family: 'TCP4', source: {address: '198.51.100.7', port: 40000}, destination: {address: '127.0.0.1', port: 2424}},
  ],
  [
    'v2 TCP6 with TLVs',
    encodeProxyV2({
      command: 'PROXY',
      source: {address: '2001:db8::1:0:0:5', port: 1},
      destination: {address: '::1', port: 24},
      tlv: Buffer.from([0x04, 0x00, 0x03, 0x61, 0x62, 0x63]),
    }),
    {version: 2, command: 'PROXY', family: 'TCP6', source: {address: '2001:db8::1:0:0:5', port: 1}, destination: {address: '::1', port: 24}},
  ],
  ['v2 LOCAL (health check)', encodeProxyV2({command: 'LOCAL'}), {version: 2, command: 'LOCAL', family: 'UNKNOWN'}],
  ['v2 UNSPEC', v2(0x21, 0x00, Buffer.alloc(0)), {version: 2, command: 'PROXY', family: 'UNKNOWN'}],
  ['v2 UDP is taken as UNKNOWN', v2(0x21, 0x12, Buffer.alloc(12)), {version: 2, command: 'PROXY', family: 'UNKNOWN'}],
  ['v2 UNIX', v2(0x21, 0x31, Buffer.alloc(216)), {version: 2, command: 'PROXY', family: 'UNIX'}],
]

const bad: [string, Buffer, RegExp][] = [
  ['an LMTP command instead', Buffer.from('LHLO mta\r\n'), /no PROXY protocol header/],
  ['lower-case proxy', Buffer.from('proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n'), /no PROXY protocol header/],
  ['v1 unknown family', Buffer.from('PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n'), /malformed PROXY v1/],
  ['v1 missing port', Buffer.from('PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n'), /malformed PROXY v1/],
  ['v1 IPv6 address in TCP4', Buffer.from('PROXY TCP4 ::1 1.2.3.4 1 2\r\n'), /not TCP4/],
  ['v1 port out of range', Buffer.from('PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n'), /ports out of range/],
  ['v1 port with a leading zero', Buffer.from('PROXY TCP4 1.2.3.4 1.2.3.4 024 2\r\n'), /ports out of range/],
  ['v1 bare LF', Buffer.from('PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n'), /not ended by CRLF/],
  ['v1 CR without LF', Buffer.from('PROXY TCP4 1.2.3.4\rX'), /not ended by CRLF/],
  ['v1 too long', Buffer.from(`PROXY TCP6 ${'a'.repeat(120)}`), /longer than 107/],
  ['v2 version 1', v2(0x11, 0x11, Buffer.alloc(12)), /version 1/],
  ['v2 unknown command', v2(0x2f, 0x11, Buffer.alloc(12)), /unknown command 15/],
  ['v2 TCP4 too short', v2(0x21, 0x11, Buffer.alloc(8)), /12 needed/],
  ['v2 TCP6 too short', v2(0x21, 0x21, Buffer.alloc(20)), /36 needed/],
  ['v2 UNIX too short', v2(0x21, 0x31, Buffer.alloc(20)), /216 needed/],
  ['v2 unknown family', v2(0x21, 0x41, Buffer.alloc(12)), /unknown address family 4/],
]

describe('ProxyHeaderDecoder', () => {
  test.each(good)('%s: same header and rest at every split', (_name, header, expected) => {
    const input = Buffer.concat([header, AFTER])
    for (const r of everySplit(input)) expect(shape(r)).toEqual({kind: 'header', header: expected, rest: AFTER.toString('latin1')})
  })

  test.each(good)('%s: a prefix alone asks for more', (_name, header) => {
    for (let i = 0; i < header.length; i++) expect(feed([header.subarray(0, i)]).kind).toBe('more')
  })

  test.each(bad)('%s: refused at every split', (_name, input, message) => {
    for (const r of everySplit(input)) {
      expect(r.kind).toBe('error')
      expect(r.kind === 'error' && r.message).toMatch(message)
    }
  })

  test('v2 longer than the limit is refused as soon as its length is known', () => {
    const head = v2(0x21, 0x11, Buffer.alloc(0))
    head.writeUInt16BE(5000, 14)
    expect(feed([head])).toMatchObject({kind: 'error', message: expect.stringMatching(/too long/)})
  })

  test('after a result the decoder keeps it', () => {
    const d = new ProxyHeaderDecoder()
    expect(d.push(Buffer.from('NOPE\r\n')).kind).toBe('error')
    expect(d.push(Buffer.from('PROXY UNKNOWN\r\n')).kind).toBe('error')
  })

  test('random bytes never throw and never yield a header without the signature or "PROXY "', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({maxLength: 40}), {maxLength: 6}), (chunks) => {
        const r = feed(chunks.map((c) => Buffer.from(c)))
        if (r.kind === 'header') {
          const all = Buffer.concat(chunks.map((c) => Buffer.from(c)))
          expect(all.subarray(0, 12).equals(PROXY_V2_SIGNATURE) || all.subarray(0, 6).toString('latin1') === 'PROXY ').toBe(true)
        }
      }),
    )
  })

  test('random headers after the v2 signature never throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({minLength: 4, maxLength: 300}), (tail) => {
        feed([Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from(tail)])])
      }),
    )
  })

  test('encodeProxyV2 round-trips any IPv4 and IPv6 endpoints', () => {
    const port = fc.integer({min: 0, max: 65535})
    fc.assert(
      fc.property(fc.oneof(fc.tuple(fc.ipV4(), fc.ipV4()), fc.tuple(fc.ipV6(), fc.ipV6())), port, port, ([src, dst], sp, dp) => {
        const r = feed([encodeProxyV2({command: 'PROXY', source: {address: src, port: sp}, destination: {address: dst, port: dp}})])
        expect(r.kind).toBe('header')
        if (r.kind !== 'header') return
        expect(r.header.source!.port).toBe(sp)
        expect(r.header.destination!.port).toBe(dp)
        const canon = (a: string) => (a.includes(':') ? new URL(`http://[${a}]/`).hostname.slice(1, -1) : a)
        expect(canon(r.header.source!.address)).toBe(canon(src))
        expect(canon(r.header.destination!.address)).toBe(canon(dst))
      }),
    )
  })
})

describe('CidrList', () => {
  test('matches addresses and networks, IPv4-mapped IPv6 included', () => {
    const l = new CidrList(['127.0.0.1', '10.0.0.0/8', '::1/128', '2001:db8::/32'])
    expect(l.has('127.0.0.1')).toBe(true)
    expect(l.has('::ffff:127.0.0.1')).toBe(true)
    expect(l.has('10.200.3.4')).toBe(true)
    expect(l.has('11.0.0.1')).toBe(false)
    expect(l.has('127.0.0.2')).toBe(false)
    expect(l.has('::1')).toBe(true)
    expect(l.has('2001:db8:ffff::9')).toBe(true)
    expect(l.has('2001:db9::1')).toBe(false)
    expect(l.has('not an address')).toBe(false)
  })

  test.each(['10.0.0.0/33', 'example.com', '10.0.0.0/x', '::1/129', ''])('refuses %j with a message', (entry) => {
    expect(() => new CidrList([entry])).toThrow(/is not an address or a network/)
  })
})
