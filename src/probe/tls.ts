/**
 * TLS for the probe: upgrading a connected socket after STARTTLS (tls.connect over the existing socket) and
 * describing what was negotiated. The handshake never rejects an unverifiable certificate by itself: the probe
 * wants to report it (subject, issuer, why it does not verify), and the checks decide how much that matters.
 */
import net from 'node:net'
import type {Duplex} from 'node:stream'
import tls from 'node:tls'
import type {Target} from '../net/target.js'
import type {TlsInfo} from './types.js'

const DAY_MS = 86_400_000

/** Returns an upgrade function for LmtpClient.startTls / ProbeConnection.upgrade, bounded by a timeout. */
export function tlsUpgrader(target: Target, timeoutMs: number, onSecure?: (socket: tls.TLSSocket) => void) {
  return (plain: Duplex): Promise<Duplex> =>
    new Promise<Duplex>((resolve, reject) => {
      const host = target.kind === 'tcp' ? target.host : 'localhost'
      const secure = tls.connect({
        socket: plain as net.Socket,
        host,
        // SNI is only for names, never for IP addresses (RFC 6066 section 3).
        servername: net.isIP(host) ? undefined : host,
        rejectUnauthorized: false,
      })
      const timer = setTimeout(() => {
        secure.destroy()
        reject(new Error(`TLS handshake did not finish within ${timeoutMs / 1000}s`))
      }, timeoutMs)
      secure.once('secureConnect', () => {
        clearTimeout(timer)
        onSecure?.(secure)
        resolve(secure)
      })
      secure.once('error', (err) => {
        clearTimeout(timer)
        reject(new Error(`TLS handshake failed: ${err.message}`))
      })
    })
}

/** Formats a certificate name object (`{CN: 'x', O: 'y'}`) as `CN=x, O=y`. */
function formatName(name: tls.Certificate | undefined): string | undefined {
  if (!name) return undefined
  const parts = Object.entries(name).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : String(v)}`)
  return parts.length > 0 ? parts.join(', ') : undefined
}

/** What was negotiated on a TLS socket: protocol, cipher, certificate facts and whether it verifies. */
export function describeTls(socket: tls.TLSSocket, now: Date, handshakeMs: number): TlsInfo {
  const cert = socket.getPeerCertificate()
  const hasCert = cert && Object.keys(cert).length > 0
  const validTo = hasCert && cert.valid_to ? new Date(cert.valid_to) : undefined
  const info: TlsInfo = {
    offered: true,
    established: true,
    protocol: socket.getProtocol() ?? undefined,
    cipher: socket.getCipher()?.name,
    handshakeMs,
    verified: socket.authorized,
  }
  if (!socket.authorized && socket.authorizationError) info.verifyError = String(socket.authorizationError)
  if (hasCert) {
    info.subject = formatName(cert.subject)
    info.issuer = formatName(cert.issuer)
    info.altNames = cert.subjectaltname ? cert.subjectaltname.split(/,\s*/) : []
    if (validTo && !Number.isNaN(validTo.getTime())) {
      info.validTo = validTo.toISOString()
      info.daysToExpiry = Math.floor((validTo.getTime() - now.getTime()) / DAY_MS)
    }
  }
  return info
}
