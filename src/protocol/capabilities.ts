/**
 * LHLO capabilities (service extensions): what the server advertises and what the client understands of it.
 * One definition for both sides, so a keyword the server sends is a keyword the client knows.
 */

/** What a server offers in its LHLO reply. */
export interface Capabilities {
  /** RFC 2920; mandatory for LMTP. */
  pipelining: boolean
  /** RFC 2034; mandatory for LMTP. */
  enhancedStatusCodes: boolean
  /** RFC 6152. */
  eightBitMime: boolean
  /** RFC 1870: the advertised limit in octets; 0 means "SIZE without a limit"; undefined means not advertised. */
  size?: number
  /** RFC 3030 BDAT. */
  chunking: boolean
  /** RFC 3030 BINARYMIME. */
  binaryMime: boolean
  /** RFC 6531. */
  smtputf8: boolean
  /** RFC 3207. */
  startTls: boolean
  /** RFC 3461; a delivery agent should not advertise it (Postfix then treats the server as a relay). */
  dsn: boolean
  /** Every keyword as advertised, upper-cased, with its parameters (e.g. `SIZE 52428800`). */
  keywords: string[]
}

/** The LHLO reply lines (after the host name line) for a server with these limits. */
export function formatCapabilities(options: {maxSize: number; startTls: boolean}): string[] {
  const lines = ['PIPELINING', 'ENHANCEDSTATUSCODES', '8BITMIME', `SIZE ${options.maxSize}`, 'CHUNKING', 'SMTPUTF8']
  if (options.startTls) lines.push('STARTTLS')
  return lines
}

/** Parses the lines of a 250 LHLO reply (the first line is the server's name and is skipped). */
export function parseCapabilities(lines: string[]): Capabilities {
  const caps: Capabilities = {
    pipelining: false,
    enhancedStatusCodes: false,
    eightBitMime: false,
    chunking: false,
    binaryMime: false,
    smtputf8: false,
    startTls: false,
    dsn: false,
    keywords: [],
  }
  for (const raw of lines.slice(1)) {
    const line = raw.trim()
    if (line === '') continue
    const [keyword = '', ...params] = line.split(/\s+/)
    const kw = keyword.toUpperCase()
    caps.keywords.push([kw, ...params].join(' '))
    switch (kw) {
      case 'PIPELINING':
        caps.pipelining = true
        break
      case 'ENHANCEDSTATUSCODES':
        caps.enhancedStatusCodes = true
        break
      case '8BITMIME':
        caps.eightBitMime = true
        break
      case 'SIZE': {
        const n = params[0] === undefined ? 0 : Number(params[0])
        caps.size = Number.isSafeInteger(n) && n >= 0 ? n : 0
        break
      }
      case 'CHUNKING':
        caps.chunking = true
        break
      case 'BINARYMIME':
        caps.binaryMime = true
        break
      case 'SMTPUTF8':
        caps.smtputf8 = true
        break
      case 'STARTTLS':
        caps.startTls = true
        break
      case 'DSN':
        caps.dsn = true
        break
    }
  }
  return caps
}
