/**
 * The server side of the PROXY protocol on a listener that expects it (`--proxy-listen`): a connection from a
 * trusted network (`--proxy-protocol-from`) must start with a v1 or v2 header, read before the greeting (the
 * balancer speaks first); the header's source becomes the session's peer, so logs, Received headers and the
 * event feed show the real client. A connection from anywhere else, a malformed header, or none within the
 * time limit is refused: the caller logs the reason and closes, without a greeting.
 */
import type net from 'node:net'
import {type CidrList, formatEndpoint, ProxyHeaderDecoder} from '../net/proxy-protocol.js'

/** Who may send PROXY headers and how long to wait for one. */
export interface ProxyPolicy {
  /** Networks whose connections must start with a header; others are refused. Unix sockets are always trusted. */
  trusted: CidrList
  /** Time allowed for the header to arrive (default 10 s). */
  headerTimeoutMs?: number
}

/** Networks trusted by default: the loopback addresses (a balancer on the same host). */
export const DEFAULT_PROXY_TRUSTED = ['127.0.0.0/8', '::1/128']

/** The outcome of reading a header: the real client, or why the connection is refused. */
export type ProxyAcceptResult =
  | {ok: true; peer: string; proxiedBy: string; rest: Buffer}
  | {ok: false; reason: string}

/**
 * Reads the PROXY header from a new connection. On success the socket is left paused with its other listeners
 * untouched, and `rest` holds the bytes that followed the header (the caller hands them to the session).
 */
export function readProxyHeader(socket: net.Socket, unix: boolean, policy: ProxyPolicy): Promise<ProxyAcceptResult> {
  const direct = unix ? 'unix' : `${socket.remoteAddress}:${socket.remotePort}`
  if (!unix && !policy.trusted.has(socket.remoteAddress ?? '')) {
    return Promise.resolve({ok: false, reason: `connection from ${direct} refused: not in --proxy-protocol-from (${policy.trusted.text.join(', ')})`})
  }
  return new Promise((resolve) => {
    const decoder = new ProxyHeaderDecoder()
    const finish = (r: ProxyAcceptResult): void => {
      clearTimeout(timer)
      socket.pause()
      socket.off('data', onData)
      socket.off('end', onEnd)
      socket.off('close', onEnd)
      resolve(r)
    }
    const onData = (chunk: Buffer): void => {
      const r = decoder.push(chunk)
      if (r.kind === 'more') return
      if (r.kind === 'error') {
        finish({ok: false, reason: `PROXY header from ${direct} refused: ${r.message}`})
        return
      }
      // LOCAL (the balancer's own health check) and UNKNOWN carry no client: the connection's own address stands.
      const source = r.header.command === 'PROXY' ? r.header.source : undefined
      finish({ok: true, peer: source ? formatEndpoint(source) : direct, proxiedBy: direct, rest: r.rest})
    }
    const onEnd = (): void => finish({ok: false, reason: `${direct} closed before sending its PROXY header`})
    const timer = setTimeout(
      () => finish({ok: false, reason: `no PROXY header from ${direct} within ${policy.headerTimeoutMs ?? 10_000} ms`}),
      policy.headerTimeoutMs ?? 10_000,
    )
    timer.unref()
    socket.on('data', onData)
    socket.on('end', onEnd)
    socket.on('close', onEnd)
  })
}
