/**
 * The one TLS upgrader of the client side: wraps a connected socket after STARTTLS (RFC 3207) with a handshake
 * timeout, the CA to verify with (or none: insecure), and SNI; and the facts of what was negotiated. send, probe
 * and replay all go through openSession (session.ts), which uses this.
 */
import net from 'node:net'
import type {Duplex} from 'node:stream'
import type {TLSSocket} from 'node:tls'
import type {Target} from '../net/target.js'

/** How to upgrade. */
export interface TlsOptions {
  /** Accept a certificate that does not verify (the facts still say whether it did, and why not). */
  insecure?: boolean
  /** CA certificates (PEM) to verify with, instead of the system's. */
  ca?: Buffer
  /** Name to send in SNI and to check the certificate against (default: the target's host when it is a name). */
  servername?: string
  /** The whole handshake must finish within this many milliseconds. */
  handshakeTimeoutMs: number
}

/** What was negotiated. */
export interface TlsInfo {
  /** e.g. `TLSv1.3`. */
  protocol: string
  /** e.g. `TLS_AES_256_GCM_SHA384`. */
  cipher: string
  /** True when the certificate verified against the system CAs or the given CA. */
  verified: boolean
  /** Why it did not verify (only when insecure; otherwise the handshake fails). */
  verifyError?: string
  /** The certificate's common name (or organisation). */
  subject?: string
  /** The issuer's common name (or organisation). */
  issuer?: string
  /** The certificate's notAfter, as the certificate gives it (e.g. `Dec  2 16:00:00 2027 GMT`). */
  validTo?: string
  /** subjectAltName entries, e.g. `DNS:localhost`, `IP Address:127.0.0.1`. */
  altNames?: string[]
}

/** Why an upgrade failed: the handshake timed out, the certificate did not verify, or the handshake broke. */
export class TlsUpgradeError extends Error {
  constructor(
    readonly kind: 'timeout' | 'verify' | 'handshake',
    message: string,
    /** Node's error code (e.g. `DEPTH_ZERO_SELF_SIGNED_CERT`), when there is one. */
    readonly code?: string,
  ) {
    super(message)
    this.name = 'TlsUpgradeError'
  }
}

/** Node's error codes that mean "the certificate did not verify" (rather than a broken handshake). */
const VERIFY_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
])

/**
 * Returns an upgrade function for LmtpClient.startTls: wraps the plain stream in TLS and resolves once the
 * handshake is done; rejects with a TlsUpgradeError (timeout, verify, handshake).
 */
export function tlsUpgrader(target: Target, options: TlsOptions): (plain: Duplex) => Promise<TLSSocket> {
  return async (plain) => {
    // Loaded only when needed: node:tls costs start-up time that a plain session does not have to pay.
    const tls = await import('node:tls')
    const host = target.kind === 'tcp' ? target.host : 'localhost'
    const servername = options.servername ?? (net.isIP(host) ? undefined : host)
    return new Promise<TLSSocket>((resolve, reject) => {
      const secure = tls.connect({
        socket: plain as net.Socket,
        host: servername ?? host,
        // SNI carries names only, never IP addresses (RFC 6066 section 3); an IP is checked against IP SANs.
        ...(servername === undefined ? {} : {servername}),
        rejectUnauthorized: options.insecure !== true,
        ...(options.ca ? {ca: options.ca} : {}),
      })
      const timer = setTimeout(() => {
        secure.destroy()
        reject(new TlsUpgradeError('timeout', `no TLS handshake within ${options.handshakeTimeoutMs / 1000}s`))
      }, options.handshakeTimeoutMs)
      timer.unref?.()
      const onError = (err: NodeJS.ErrnoException): void => {
        clearTimeout(timer)
        const code = err.code
        if (code && VERIFY_CODES.has(code)) {
          reject(new TlsUpgradeError('verify', `the server's certificate did not verify (${err.message})`, code))
        } else reject(new TlsUpgradeError('handshake', `TLS handshake failed: ${err.message}`, code))
      }
      secure.once('error', onError)
      secure.once('secureConnect', () => {
        clearTimeout(timer)
        secure.off('error', onError)
        resolve(secure)
      })
    })
  }
}

function certName(name: unknown): string | undefined {
  if (!name || typeof name !== 'object') return undefined
  const n = name as Record<string, string | string[] | undefined>
  const cn = n.CN ?? n.O
  return Array.isArray(cn) ? cn.join(', ') : cn
}

/** The facts of a TLS socket after its handshake. */
export function describeTls(socket: TLSSocket): TlsInfo {
  const cert = socket.getPeerCertificate()
  const hasCert = cert !== undefined && cert !== null && Object.keys(cert).length > 0
  return {
    protocol: socket.getProtocol() ?? 'unknown',
    cipher: socket.getCipher()?.name ?? 'unknown',
    verified: socket.authorized,
    ...(socket.authorized ? {} : {verifyError: String(socket.authorizationError)}),
    ...(hasCert
      ? {
          subject: certName(cert.subject),
          issuer: certName(cert.issuer),
          validTo: cert.valid_to,
          altNames: cert.subjectaltname ? cert.subjectaltname.split(/,\s*/) : [],
        }
      : {}),
  }
}
