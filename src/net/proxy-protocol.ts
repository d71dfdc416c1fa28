/**
 * The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2): the header a load balancer sends first on
 * every connection it opens to a backend, naming the real client's address. A pure decoder, no I/O: bytes go in
 * as they arrive (a chunk may end anywhere), and out comes the header plus whatever followed it, or an error that
 * says what was wrong. Which peers may send a header is policy, decided by the server (see {@link CidrList}).
 *
 * v1: `PROXY TCP4|TCP6|UNKNOWN <src> <dst> <sport> <dport>\r\n`, at most 107 octets.
 * v2: the 12-octet signature, version/command, family/transport, a 16-bit length, the addresses, then TLVs
 * (read past, not interpreted). The LOCAL command (a health check from the balancer itself) carries no client.
 */
import net from 'node:net'

/** The v2 signature. */
export const PROXY_V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
const V1_PREFIX = Buffer.from('PROXY ')
/** Longest v1 line, CRLF included (the specification's limit). */
export const PROXY_V1_MAX = 107
/** Longest v2 header accepted (16 octets + addresses + TLVs); HAProxy's own headers are far smaller. */
export const PROXY_V2_MAX = 16 + 4096

/** An endpoint named by a header. */
export interface ProxyEndpoint {
  address: string
  port: number
}

/** A decoded header. `source` and `destination` are absent for LOCAL, UNKNOWN and unsupported families. */
export interface ProxyHeader {
  version: 1 | 2
  /** PROXY: relayed for a client; LOCAL: the balancer's own connection (health check), no client. */
  command: 'PROXY' | 'LOCAL'
  family: 'TCP4' | 'TCP6' | 'UNIX' | 'UNKNOWN'
  source?: ProxyEndpoint
  destination?: ProxyEndpoint
}

/** What {@link ProxyHeaderDecoder.push} returns. */
export type ProxyDecodeResult =
  | {kind: 'more'}
  | {kind: 'header'; header: ProxyHeader; rest: Buffer}
  | {kind: 'error'; message: string}

/** Formats an endpoint as the server shows peers (`address:port`, as for a direct connection). */
export function formatEndpoint(e: ProxyEndpoint): string {
  return `${e.address}:${e.port}`
}

/**
 * Decodes one PROXY header from a stream. Feed chunks with push() until it returns `header` or `error`;
 * after that the decoder is done (further pushes return the same error or throw nothing useful).
 */
export class ProxyHeaderDecoder {
  private buf: Buffer = Buffer.alloc(0)
  private result: ProxyDecodeResult | undefined

  /** Adds bytes; returns `more` until a whole header (or an error) is seen. */
  push(chunk: Buffer): ProxyDecodeResult {
    if (this.result) return this.result
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
    const r = decode(this.buf)
    if (r.kind !== 'more') this.result = r
    return r
  }
}

function startsLike(buf: Buffer, prefix: Buffer): boolean {
  const n = Math.min(buf.length, prefix.length)
  return buf.subarray(0, n).equals(prefix.subarray(0, n))
}

function decode(buf: Buffer): ProxyDecodeResult {
  if (buf.length === 0) return {kind: 'more'}
  if (startsLike(buf, PROXY_V2_SIGNATURE)) return buf.length < 16 ? {kind: 'more'} : decodeV2(buf)
  if (startsLike(buf, V1_PREFIX)) return decodeV1(buf)
  return {kind: 'error', message: 'no PROXY protocol header (expected "PROXY " or the v2 signature)'}
}

function decodeV1(buf: Buffer): ProxyDecodeResult {
  const end = buf.indexOf('\r\n')
  if (end < 0) {
    if (buf.length >= PROXY_V1_MAX) return {kind: 'error', message: `PROXY v1 line longer than ${PROXY_V1_MAX} octets`}
    // No CRLF yet: a LF, or a CR followed by anything, can no longer become one.
    const cr = buf.indexOf(0x0d)
    if (buf.indexOf(0x0a) >= 0 || (cr >= 0 && cr < buf.length - 1)) return {kind: 'error', message: 'PROXY v1 line not ended by CRLF'}
    return {kind: 'more'}
  }
  if (end + 2 > PROXY_V1_MAX) return {kind: 'error', message: `PROXY v1 line longer than ${PROXY_V1_MAX} octets`}
  const line = buf.subarray(0, end).toString('latin1')
  const rest = buf.subarray(end + 2)
  const parts = line.split(' ')
  if (parts[1] === 'UNKNOWN') return {kind: 'header', header: {version: 1, command: 'PROXY', family: 'UNKNOWN'}, rest}
  if (parts.length !== 6 || (parts[1] !== 'TCP4' && parts[1] !== 'TCP6')) {
    return {kind: 'error', message: `malformed PROXY v1 line: ${JSON.stringify(line.slice(0, 120))}`}
  }
  const family = parts[1]
  const want = family === 'TCP4' ? 4 : 6
  const [src, dst] = [parts[2]!, parts[3]!]
  if (net.isIP(src) !== want || net.isIP(dst) !== want) return {kind: 'error', message: `PROXY v1 addresses are not ${family}: ${src} ${dst}`}
  const sport = v1Port(parts[4]!)
  const dport = v1Port(parts[5]!)
  if (sport === undefined || dport === undefined) return {kind: 'error', message: `PROXY v1 ports out of range: ${parts[4]} ${parts[5]}`}
  return {
    kind: 'header',
    header: {version: 1, command: 'PROXY', family, source: {address: src, port: sport}, destination: {address: dst, port: dport}},
    rest,
  }
}

function v1Port(text: string): number | undefined {
  if (!/^(0|[1-9]\d{0,4})$/.test(text)) return undefined
  const n = Number(text)
  return n <= 65535 ? n : undefined
}

function decodeV2(buf: Buffer): ProxyDecodeResult {
  const verCmd = buf[12]!
  if (verCmd >> 4 !== 2) return {kind: 'error', message: `PROXY v2 header with version ${verCmd >> 4}`}
  const cmd = verCmd & 0x0f
  if (cmd > 1) return {kind: 'error', message: `PROXY v2 header with unknown command ${cmd}`}
  const famProto = buf[13]!
  const length = buf.readUInt16BE(14)
  if (16 + length > PROXY_V2_MAX) return {kind: 'error', message: `PROXY v2 header of ${16 + length} octets is too long`}
  if (buf.length < 16 + length) return {kind: 'more'}
  const body = buf.subarray(16, 16 + length)
  const rest = buf.subarray(16 + length)
  if (cmd === 0) return {kind: 'header', header: {version: 2, command: 'LOCAL', family: 'UNKNOWN'}, rest}
  const family = famProto >> 4
  const transport = famProto & 0x0f
  if (family === 0 || transport !== 1) {
    // UNSPEC, or not a stream: the specification says to accept it and use the real connection's addresses.
    return {kind: 'header', header: {version: 2, command: 'PROXY', family: 'UNKNOWN'}, rest}
  }
  if (family === 1) {
    if (length < 12) return {kind: 'error', message: `PROXY v2 TCP4 header with ${length} octets of addresses (12 needed)`}
    const ip = (o: number) => `${body[o]}.${body[o + 1]}.${body[o + 2]}.${body[o + 3]}`
    return {
      kind: 'header',
      header: {
        version: 2,
        command: 'PROXY',
        family: 'TCP4',
        source: {address: ip(0), port: body.readUInt16BE(8)},
        destination: {address: ip(4), port: body.readUInt16BE(10)},
      },
      rest,
    }
  }
  if (family === 2) {
    if (length < 36) return {kind: 'error', message: `PROXY v2 TCP6 header with ${length} octets of addresses (36 needed)`}
    return {
      kind: 'header',
      header: {
        version: 2,
        command: 'PROXY',
        family: 'TCP6',
        source: {address: ipv6(body.subarray(0, 16)), port: body.readUInt16BE(32)},
        destination: {address: ipv6(body.subarray(16, 32)), port: body.readUInt16BE(34)},
      },
      rest,
    }
  }
  if (family === 3) {
    if (length < 216) return {kind: 'error', message: `PROXY v2 UNIX header with ${length} octets of addresses (216 needed)`}
    return {kind: 'header', header: {version: 2, command: 'PROXY', family: 'UNIX'}, rest}
  }
  return {kind: 'error', message: `PROXY v2 header with unknown address family ${family}`}
}

/** An IPv6 address in its canonical text form (an IPv4-mapped one as `::ffff:a.b.c.d`). */
function ipv6(b: Buffer): string {
  const groups: string[] = []
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16))
  // Node canonicalises (compresses zeros) when it parses the address.
  return new net.SocketAddress({address: groups.join(':'), family: 'ipv6'}).address
}

/** Encodes a v2 header (for tests and tools): PROXY with TCP4/TCP6 endpoints, or LOCAL. */
export function encodeProxyV2(header: {command: 'PROXY' | 'LOCAL'; source?: ProxyEndpoint; destination?: ProxyEndpoint; tlv?: Buffer}): Buffer {
  const tlv = header.tlv ?? Buffer.alloc(0)
  if (header.command === 'LOCAL' || !header.source || !header.destination) {
    const head = Buffer.alloc(16)
    PROXY_V2_SIGNATURE.copy(head)
    head[12] = header.command === 'LOCAL' ? 0x20 : 0x21
    head[13] = 0x00
    head.writeUInt16BE(tlv.length, 14)
    return Buffer.concat([head, tlv])
  }
  const v6 = net.isIPv6(header.source.address)
  const addrLen = v6 ? 36 : 12
  const out = Buffer.alloc(16 + addrLen)
  PROXY_V2_SIGNATURE.copy(out)
  out[12] = 0x21
  out[13] = v6 ? 0x21 : 0x11
  out.writeUInt16BE(addrLen + tlv.length, 14)
  const put = (address: string, at: number) => {
    if (v6) ipv6Bytes(address).copy(out, at)
    else {
      for (const [i, o] of address.split('.').entries()) out[at + i] = Number(o)
    }
  }
  put(header.source.address, 16)
  put(header.destination.address, 16 + (v6 ? 16 : 4))
  out.writeUInt16BE(header.source.port, 16 + addrLen - 4)
  out.writeUInt16BE(header.destination.port, 16 + addrLen - 2)
  return Buffer.concat([out, tlv])
}

function ipv6Bytes(text: string): Buffer {
  // An embedded IPv4 tail (`::ffff:192.0.2.1`) becomes its two groups.
  const address = text.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_m, a, b, c, d) =>
    `${((Number(a) << 8) | Number(b)).toString(16)}:${((Number(c) << 8) | Number(d)).toString(16)}`,
  )
  const [head, tail] = address.includes('::') ? address.split('::') : [address, undefined]
  const h = head ? head.split(':') : []
  const t = tail ? tail.split(':') : []
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t]
  const b = Buffer.alloc(16)
  for (const [i, g] of groups.entries()) b.writeUInt16BE(Number.parseInt(g, 16), i * 2)
  return b
}

/** A list of trusted networks (`10.0.0.0/8`, `::1/128`, or a bare address), matched against peer addresses. */
export class CidrList {
  private readonly list = new net.BlockList()
  /** The networks as given, for messages. */
  readonly text: string[]

  /** Throws an Error naming the entry that is not an address or a network. */
  constructor(entries: string[]) {
    this.text = entries
    for (const raw of entries) {
      const entry = raw.trim()
      const [address, bits] = entry.split('/')
      const family = net.isIP(address ?? '')
      const prefix = bits === undefined ? (family === 4 ? 32 : 128) : Number(bits)
      if (family === 0 || !Number.isInteger(prefix) || prefix < 0 || prefix > (family === 4 ? 32 : 128) || (bits !== undefined && !/^\d+$/.test(bits))) {
        throw new Error(`${JSON.stringify(entry)} is not an address or a network such as 10.0.0.0/8 or ::1/128`)
      }
      this.list.addSubnet(address!, prefix, family === 4 ? 'ipv4' : 'ipv6')
    }
  }

  /** Whether a peer address (as Node reports it, IPv4-mapped IPv6 included) is in the list. */
  has(address: string): boolean {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
    const a = mapped ? mapped[1]! : address
    const family = net.isIP(a)
    if (family === 0) return false
    return this.list.check(a, family === 4 ? 'ipv4' : 'ipv6')
  }
}
