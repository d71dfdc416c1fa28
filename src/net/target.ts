/**
 * Targets: where a server listens or a client connects, written `HOST:PORT`, `[IPv6]:PORT`, `HOST` (port 24)
 * or `unix:/path`. Port 25 is refused everywhere: LMTP must never run on the SMTP port (RFC 2033 section 5).
 */
import net from 'node:net'
import path from 'node:path'

/** The conventional LMTP port. */
export const DEFAULT_LMTP_PORT = 24

/** A parsed target. */
export type Target = {kind: 'tcp'; host: string; port: number} | {kind: 'unix'; path: string}

/** A target that cannot be used; the message says what to write instead. */
export class TargetError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'TargetError'
  }
}

/** Parses a target. Throws TargetError with the next step in its message. */
export function parseTarget(text: string, defaultPort = DEFAULT_LMTP_PORT): Target {
  const t = text.trim()
  if (t === '') throw new TargetError('empty target: write HOST:PORT (e.g. 127.0.0.1:24) or unix:/path/to/socket')
  if (t.startsWith('unix:')) {
    const p = t.slice(5)
    if (p === '') throw new TargetError(`"${text}": unix: needs a socket path, e.g. unix:/run/lmtp.sock`)
    return {kind: 'unix', path: path.resolve(p)}
  }
  if (t.startsWith('/') || t.startsWith('./')) return {kind: 'unix', path: path.resolve(t)}
  let host: string
  let portText: string | undefined
  const v6 = /^\[([^\]]+)\](?::(.*))?$/.exec(t)
  if (v6) {
    host = v6[1]!
    portText = v6[2]
  } else if (t.split(':').length > 2) {
    throw new TargetError(`"${text}": write an IPv6 address in brackets, e.g. [::1]:24`)
  } else {
    const i = t.lastIndexOf(':')
    host = i >= 0 ? t.slice(0, i) : t
    portText = i >= 0 ? t.slice(i + 1) : undefined
  }
  if (host === '') throw new TargetError(`"${text}": missing host, e.g. 127.0.0.1:${portText || DEFAULT_LMTP_PORT}`)
  let port = defaultPort
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
      throw new TargetError(`"${text}": the port must be a number from 0 to 65535`)
    }
    port = Number(portText)
  }
  if (port === 25) {
    throw new TargetError(
      `"${text}": port 25 is the SMTP port, and LMTP must not run there (RFC 2033 section 5); use port 24, another port, or a unix: socket`,
    )
  }
  return {kind: 'tcp', host, port}
}

/** The target as text, the way a user writes it. */
export function formatTarget(t: Target): string {
  if (t.kind === 'unix') return `unix:${t.path}`
  return net.isIPv6(t.host) ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`
}

/** Opens a connection to a target; rejects with the socket error (ECONNREFUSED, ENOENT, ...) or on timeout. */
export function connectTarget(target: Target, timeoutMs = 30_000): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket =
      target.kind === 'unix' ? net.connect({path: target.path}) : net.connect({host: target.host, port: target.port})
    const timer = setTimeout(() => {
      socket.destroy()
      reject(Object.assign(new Error(`connect to ${formatTarget(target)} timed out after ${timeoutMs / 1000}s`), {code: 'ETIMEDOUT'}))
    }, timeoutMs)
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.setNoDelay(true)
      resolve(socket)
    })
    socket.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  })
}

/** A readable explanation of a connection error, with the next step. */
export function explainConnectError(target: Target, err: NodeJS.ErrnoException): string {
  const where = formatTarget(target)
  switch (err.code) {
    case 'ECONNREFUSED':
      return `cannot connect to ${where}: connection refused (is the LMTP server running and listening there?)`
    case 'ENOENT':
      return `cannot connect to ${where}: no such socket file (check the path, or start the server)`
    case 'EACCES':
      return `cannot connect to ${where}: permission denied (check the socket's owner and mode)`
    case 'ETIMEDOUT':
      return `cannot connect to ${where}: timed out (is a firewall dropping packets?)`
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `cannot connect to ${where}: host name not found`
    default:
      return `cannot connect to ${where}: ${err.message}`
  }
}
