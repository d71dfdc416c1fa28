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
  /** The server's name: the first word of the reply's first line. */
  serverName?: string
  /** Lines that are not keyword lines but the server talking (Cyrus: `Ok SESSIONID=<...>`); never capabilities. */
  freeText?: string[]
}

/** The keywords parseCapabilities understands (recognised in any case). */
const UNDERSTOOD = new Set(['PIPELINING', 'ENHANCEDSTATUSCODES', '8BITMIME', 'SIZE', 'CHUNKING', 'BINARYMIME', 'SMTPUTF8', 'STARTTLS', 'DSN', 'AUTH'])

/**
 * True when an LHLO line (after the name line) is a keyword line: its first word is an ehlo-keyword (RFC 5321
 * section 4.1.1.1; `AUTH=...` legacy form included) written in upper case as every registered one is, or a
 * keyword understood here in any case. Anything else (`Ok SESSIONID=<...>`, whose id changes per transaction)
 * is free text from the server, not an extension a client may use.
 */
export function isKeywordLine(line: string): boolean {
  const word = line.trim().split(/\s+/, 1)[0] ?? ''
  const keyword = word.split('=', 1)[0]!
  if (!/^[A-Za-z0-9][A-Za-z0-9-]*$/.test(keyword)) return false
  return keyword === keyword.toUpperCase() || UNDERSTOOD.has(keyword.toUpperCase())
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
    serverName: (lines[0] ?? '').trim().split(/\s+/, 1)[0] ?? '',
    freeText: [],
  }
  for (const raw of lines.slice(1)) {
    const line = raw.trim()
    if (line === '') continue
    if (!isKeywordLine(line)) {
      caps.freeText!.push(line)
      continue
    }
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
