/**
 * Postfix's smtp-sink as an LMTP server: a fast, dumb peer that accepts everything (or fails on purpose with
 * its fault flags), for driving the client side and for load baselines.
 */
import {peerBinary} from './gate.js'
import {allowPeerAccess, freePort, PeerProcess, tempDir, waitForListening} from './proc.js'

/** Options for {@link startSmtpSink}. */
export interface SmtpSinkOptions {
  /** TCP port on 127.0.0.1; a free one is picked when omitted (and retried on a bind race). */
  port?: number
  /** Listen on this Unix socket instead of TCP (made reachable for other users after start). */
  socketPath?: string
  /**
   * Extra smtp-sink options placed before the address, e.g. fault flags: `['-r', 'RCPT']` (reject RCPT),
   * `['-f', 'DATA']` (reject DATA / end of data), `['-Q', 'DATA']` (421 and close), `['-w', '2']` (delay the
   * data reply 2 s).
   */
  flags?: string[]
  /** Listen backlog (smtp-sink's last argument); default 256. */
  backlog?: number
}

/** A running smtp-sink. */
export interface SmtpSink {
  /** The TCP port, or 0 when listening on a Unix socket. */
  port: number
  /** The Unix socket path, when one was asked for. */
  socketPath?: string
  pid: number
  /** Stops it (by pid, then its process group) and waits until it is gone. */
  stop(): Promise<void>
}

/** Starts `smtp-sink -L -u nobody [flags] 127.0.0.1:P 256` and resolves once it accepts connections. */
export async function startSmtpSink(options: SmtpSinkOptions = {}): Promise<SmtpSink> {
  const binary = peerBinary('smtp-sink')
  const attempts = options.port === undefined && options.socketPath === undefined ? 3 : 1
  for (let attempt = 1; ; attempt++) {
    const port = options.socketPath ? 0 : (options.port ?? (await freePort()))
    const address = options.socketPath ? `unix:${options.socketPath}` : `127.0.0.1:${port}`
    const args = ['-L', '-u', 'nobody', ...(options.flags ?? []), address, String(options.backlog ?? 256)]
    const proc = new PeerProcess('smtp-sink', binary, args)
    try {
      const target = options.socketPath ? {socketPath: options.socketPath} : {port}
      await waitForListening(target, {process: proc, greeting: true})
      if (options.socketPath) allowPeerAccess(options.socketPath)
      const handle: SmtpSink = {port, pid: proc.pid, stop: () => proc.stop()}
      if (options.socketPath) handle.socketPath = options.socketPath
      return handle
    } catch (err) {
      await proc.stop()
      if (attempt >= attempts) throw err
    }
  }
}

/** A temp directory holding a socket path for a sink; `cleanup()` removes it (stop the sink first). */
export async function sinkSocketDir(): Promise<{socketPath: string; cleanup(): Promise<void>}> {
  const dir = await tempDir('lmtp-sink')
  return {socketPath: `${dir.path}/sink.sock`, cleanup: dir.cleanup}
}
