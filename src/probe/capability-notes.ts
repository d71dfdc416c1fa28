/**
 * LHLO keywords explained for a person reading a probe report: what each one lets a client do, and for the
 * ones an LMTP server should not advertise, why.
 */
import {formatSize} from '../util/units.js'
import type {CapabilityInfo} from './types.js'

const NOTES: Record<string, string> = {
  PIPELINING: 'commands may be sent in batches without waiting for each reply (RFC 2920; required for LMTP)',
  ENHANCEDSTATUSCODES: 'replies carry codes such as 5.1.1 that say exactly what failed (RFC 2034; required for LMTP)',
  '8BITMIME': 'accepts 8-bit message bodies (BODY=8BITMIME, RFC 6152)',
  CHUNKING: 'accepts the body in BDAT chunks of a stated size, no dot-stuffing (RFC 3030)',
  BINARYMIME: 'accepts binary bodies sent with BDAT (BODY=BINARYMIME, RFC 3030)',
  SMTPUTF8: 'accepts UTF-8 addresses and headers (RFC 6531)',
  STARTTLS: 'can switch the connection to TLS (RFC 3207)',
  DSN: 'takes over delivery status notifications (RFC 3461): Postfix then treats this server as a relay and stops sending its own notices',
  HELP: 'answers HELP (informational only)',
  VRFY: 'answers VRFY address verification',
  ETRN: 'remote queue start (RFC 1985): meaningless for LMTP, which has no queue',
  AUTH: 'SMTP authentication (RFC 4954)',
  XCLIENT: 'Postfix XCLIENT: the client may override the connection facts it reports',
  XFORWARD: 'Postfix XFORWARD: the client forwards the original client name and address for logging',
  DELIVERBY: 'deliver-by time limits (RFC 2852)',
  REQUIRETLS: 'the message may demand TLS on every hop (RFC 8689)',
  'MT-PRIORITY': 'message transfer priorities (RFC 6710)',
  BURL: 'the body may be fetched from an IMAP URL (RFC 4468)',
}

/** One keyword line of an LHLO reply (`SIZE 52428800`) explained. */
export function explainCapability(keywordLine: string): CapabilityInfo {
  const [kw = '', ...rest] = keywordLine.trim().split(/\s+/)
  const keyword = kw.toUpperCase()
  const params = rest.join(' ')
  let meaning = NOTES[keyword]
  if (keyword === 'SIZE') {
    const n = Number(rest[0])
    meaning =
      rest.length === 0 || n === 0 || !Number.isFinite(n)
        ? 'declares message sizes (RFC 1870) but states no limit'
        : `messages up to ${formatSize(n)} (${n} octets) are accepted (RFC 1870)`
  } else if (keyword === 'AUTH' && params !== '') {
    meaning = `${NOTES.AUTH} with ${params}`
  }
  return {keyword, params, meaning: meaning ?? 'not a keyword lmtp knows (a private or newer extension)'}
}

