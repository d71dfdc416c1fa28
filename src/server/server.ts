/**
 * The LMTP server around the protocol's ServerSession: listeners (TCP and Unix), the connection cap, the idle
 * timer, STARTTLS, reply coalescing, and graceful shutdown. Everything it observes goes onto the event bus.
 */
import fs from 'node:fs/promises'
import net from 'node:net'
import tls from 'node:tls'
import type {Backend} from '../protocol/backend.js'
import {type EventBus, SESSION_END_TEXT} from '../protocol/events.js'
import {R} from '../protocol/replies.js'
import {formatReply} from '../protocol/reply.js'
import {ServerSession, type SessionOptions} from '../protocol/server-session.js'
import {clearStaleSocketFile} from '../net/socket-file.js'
import {type Target, formatTarget} from '../net/target.js'
import {type ProxyPolicy, readProxyHeader} from './proxy-accept.js'

/** Settings of a server. */
export interface ServerConfig {
  listen: Target[]
  /** Permissions of Unix sockets (default 0o660). */
  socketMode?: number
  /** Owner of the Unix sockets this server creates (`--socket-owner`); default: the process's own. */
  socketOwner?: {uid: number; gid: number}
  /**
   * Hold connections accepted by start() until resume() (the caller drops privileges in between, so no session
   * ever runs as root). Default false: start() serves at once.
   */
  holdUntilResumed?: boolean
  /** Listening sockets passed by a service manager (socket activation), adopted as they are. */
  inherited?: {fd: number; name: string}[]
  hostname: string
  /** Connections at once; beyond it: 421 4.7.0 and close (default 256). */
  maxConnections?: number
  /** Idle time before 421 4.4.2 and close, in ms (default 300 000). */
  idleTimeoutMs?: number
  /** Certificate and key (PEM) to offer STARTTLS on TCP listeners. */
  tls?: {cert: Buffer; key: Buffer}
  /** Protocol limits passed to every session. */
  limits?: Pick<SessionOptions, 'maxLineLength' | 'maxMessageSize' | 'maxRecipients' | 'maxErrors' | 'vrfy'>
  /** Listeners that expect a PROXY protocol header (`--proxy-listen`), and who may send one. */
  proxy?: ProxyPolicy & {listen: Target[]}
  /**
   * Listeners shared with other worker processes (`serve --workers`): the primary checked for a stale Unix socket
   * and removes the files at the end, so this server neither probes nor unlinks them.
   */
  sharedListeners?: boolean
  /** Problems worth a log line that are not a session's (a refused PROXY connection). */
  onWarning?: (message: string) => void
}

/** A listener that is up. */
export interface ListenerInfo {
  target: Target
  /** The address as text, with the real port when port 0 was asked for. */
  address: string
  /** True when connections must start with a PROXY protocol header. */
  proxy?: boolean
}

/** A failure to start a listener; the message says what to do. */
export class ListenError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message)
    this.name = 'ListenError'
  }
}

/** The real client of a connection that came through a balancer (from its PROXY header). */
interface Proxied {
  peer: string
  proxiedBy: string
  /** Bytes that followed the header. */
  rest: Buffer
}

interface Connection {
  socket: net.Socket
  session: ServerSession
  /** Closed by stop() after the grace period. */
  forced?: boolean
}

let sessionCounter = 0
const EMPTY = Buffer.alloc(0)

/**
 * The one way a listener is made (bound here, or inherited from systemd). allowHalfOpen: a client's end of stream
 * (shutdown(SHUT_WR) right after the final dot) must not close our side before the per-recipient replies are
 * written; onEnd closes it once the session has caught up.
 */
function listeningServer(onConnection: (socket: net.Socket) => void): net.Server {
  return net.createServer({noDelay: true, allowHalfOpen: true}, onConnection)
}
/** Reply bytes a connection may have unsent before the server stops reading from it. */
const MAX_UNSENT_REPLY_BYTES = 64 * 1024

/** An LMTP server: start() binds every listener, stop() drains and closes. */
export class LmtpServer {
  private readonly servers: {server: net.Server; target: Target; inherited?: boolean}[] = []
  private readonly connections = new Set<Connection>()
  private secureContext: tls.SecureContext | undefined
  private certificatePem: Buffer | undefined
  private stopping = false
  /** Connections accepted while held (holdUntilResumed), served by resume(). */
  private held: {socket: net.Socket; target: Target; proxied?: Proxied}[] | undefined
  /** Listeners that are up (after start()). */
  listeners: ListenerInfo[] = []
  /** Connections accepted since start. */
  totalConnections = 0

  constructor(
    private readonly config: ServerConfig,
    private readonly backend: Backend,
    private readonly bus: EventBus,
  ) {
    this.secureContext = config.tls ? tls.createSecureContext({cert: config.tls.cert, key: config.tls.key}) : undefined
    this.certificatePem = config.tls?.cert
    if (config.holdUntilResumed) this.held = []
  }

  /** Serves the connections held since start() and every later one (see holdUntilResumed). */
  resume(): void {
    const held = this.held ?? []
    this.held = undefined
    for (const h of held) if (!h.socket.destroyed) this.accept(h.socket, h.target, h.proxied)
  }

  /** Every bound listener and whether it accepts connections now (for /healthz); empty once stopped. */
  listenerStatus(): {address: string; up: boolean}[] {
    return this.servers.map(({server, target}, i) => ({address: this.listeners[i]?.address ?? formatTarget(target), up: server.listening}))
  }

  /** Connections open now. */
  get openConnections(): number {
    return this.connections.size
  }

  /**
   * Replaces the certificate and key (SIGHUP): sessions that already use TLS keep theirs, the next STARTTLS
   * gets the new one. Only a server started with TLS can change it (a listener's capabilities do not change).
   */
  setTls(pair: {cert: Buffer; key: Buffer}): void {
    if (!this.secureContext) return
    this.secureContext = tls.createSecureContext({cert: pair.cert, key: pair.key})
    this.certificatePem = pair.cert
  }

  /** The certificate (PEM) STARTTLS offers now, if any (its expiry is a metric). */
  get certificate(): Buffer | undefined {
    return this.certificatePem
  }

  /** Binds every listener; on any failure closes those already bound and throws ListenError. */
  async start(): Promise<ListenerInfo[]> {
    try {
      for (const target of this.config.listen) {
        this.listeners.push(await this.listen(target))
      }
      for (const target of this.config.proxy?.listen ?? []) {
        this.listeners.push({...(await this.listen(target, true)), proxy: true})
      }
      for (const inherited of this.config.inherited ?? []) {
        this.listeners.push(await this.adopt(inherited.fd, inherited.name))
      }
    } catch (err) {
      await this.closeListeners()
      throw err
    }
    return this.listeners
  }

  private async listen(target: Target, proxied = false): Promise<ListenerInfo> {
    const server = listeningServer((socket) => (proxied ? this.acceptProxied(socket, target) : this.accept(socket, target)))
    server.maxConnections = Number.MAX_SAFE_INTEGER
    if (target.kind === 'unix' && !this.config.sharedListeners) await this.clearStaleSocket(target.path)
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => reject(listenError(target, err)))
      if (target.kind === 'unix') server.listen(target.path, () => resolve())
      else server.listen(target.port, target.host, () => resolve())
    })
    server.on('error', () => {})
    this.servers.push({server, target})
    if (target.kind === 'unix') {
      await fs.chmod(target.path, this.config.socketMode ?? 0o660)
      if (this.config.socketOwner) await fs.chown(target.path, this.config.socketOwner.uid, this.config.socketOwner.gid)
      return {target, address: formatTarget(target)}
    }
    const addr = server.address() as net.AddressInfo
    const bound: Target = {kind: 'tcp', host: target.host, port: addr.port}
    return {target: bound, address: formatTarget(bound)}
  }

  /** Listens on a socket passed by the service manager (its file, if any, stays the manager's: never unlinked). */
  private async adopt(fd: number, name: string): Promise<ListenerInfo> {
    let target: Target = {kind: 'unix', path: `fd:${fd}`}
    const server = listeningServer((socket) => this.accept(socket, target))
    server.maxConnections = Number.MAX_SAFE_INTEGER
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new ListenError(`cannot listen on the inherited socket ${name} (fd ${fd}): ${err.message}; check ListenStream= of the socket unit`, 'EBADF')))
      server.listen({fd}, () => resolve())
    })
    server.on('error', () => {})
    const addr = server.address()
    target = typeof addr === 'string' || addr === null ? {kind: 'unix', path: addr || `fd:${fd}`} : {kind: 'tcp', host: addr.address, port: addr.port}
    this.servers.push({server, target, inherited: true})
    return {target, address: `${formatTarget(target)} (systemd ${name})`}
  }

  /** A socket file left by a dead server is removed; a live one (something answers) is an error. */
  private async clearStaleSocket(path: string): Promise<void> {
    const state = await clearStaleSocketFile(path)
    if (state === 'not-socket') {
      throw new ListenError(`unix:${path} exists and is not a socket: remove it or choose another path`, 'EEXIST')
    }
    if (state === 'live') {
      throw new ListenError(
        `unix:${path} is in use by a running server: stop it first or choose another socket path`,
        'EADDRINUSE',
      )
    }
  }

  /** A connection on a PROXY listener: its header first (see proxy-accept.ts), then an ordinary session. */
  private acceptProxied(socket: net.Socket, target: Target): void {
    socket.on('error', () => {})
    void readProxyHeader(socket, target.kind === 'unix', this.config.proxy!).then((r) => {
      if (!r.ok) {
        this.config.onWarning?.(r.reason)
        socket.destroy()
      } else if (!socket.destroyed) {
        this.accept(socket, target, r)
      }
    })
  }

  private accept(socket: net.Socket, target: Target, proxied?: Proxied): void {
    if (this.held) {
      this.held.push({socket, target, proxied})
      return
    }
    const listener = formatTarget(target)
    if (this.stopping || this.connections.size >= (this.config.maxConnections ?? 256)) {
      socket.on('error', () => {})
      socket.end(formatReply(this.stopping ? R.shuttingDown : R.tooManyConnections))
      setTimeout(() => socket.destroy(), 2000).unref()
      return
    }
    this.totalConnections++
    const sessionId = `${Date.now().toString(36)}-${(++sessionCounter).toString(36)}`
    const peer = proxied?.peer ?? (target.kind === 'unix' ? 'unix' : `${socket.remoteAddress}:${socket.remotePort}`)
    let current: net.Socket | tls.TLSSocket = socket
    let pending: string[] = []
    let scheduled = false
    let closed = false
    // Replies written in one turn of the event loop go out in one write (pipelined replies, one packet).
    const flush = (): void => {
      scheduled = false
      if (pending.length === 0 || current.destroyed) return
      const data = pending.length === 1 ? pending[0]! : pending.join('')
      pending = []
      current.write(data)
    }
    const io = {
      write: (data: string): void => {
        pending.push(data)
        if (!scheduled) {
          scheduled = true
          setImmediate(flush)
        }
      },
      close: (): void => {
        flush()
        current.end()
        setTimeout(() => current.destroy(), 5000).unref()
      },
      startTls:
        this.secureContext && target.kind === 'tcp'
          ? (): Promise<{protocol: string; cipher: string}> => {
              flush()
              return new Promise((resolve, reject) => {
                socket.removeListener('data', onData)
                const secure = new tls.TLSSocket(socket, {isServer: true, secureContext: this.secureContext})
                secure.once('secure', () => {
                  current = secure
                  secure.on('data', onData)
                  secure.on('end', onEnd)
                  secure.on('error', () => {})
                  resolve({protocol: secure.getProtocol() ?? 'unknown', cipher: secure.getCipher()?.name ?? 'unknown'})
                })
                secure.once('error', reject)
              })
            }
          : undefined,
    }
    const session = new ServerSession(
      {
        ...this.config.limits,
        sessionId,
        hostname: this.config.hostname,
        peer,
        startTlsAvailable: io.startTls !== undefined,
      },
      this.backend,
      io,
      (e) => this.bus.emit(e),
    )
    const conn: Connection = {socket, session}
    this.connections.add(conn)
    // Backpressure on the write side: replies the client does not read stay in our socket buffer, so we read
    // nothing more from it until they drain (a client pipelining NOOPs and never reading cannot grow us).
    const resumeWhenDrained = (): void => {
      if (current.destroyed) return
      if (current.writableLength > MAX_UNSENT_REPLY_BYTES) current.once('drain', resumeWhenDrained)
      else current.resume()
    }
    const onData = (chunk: Buffer): void => {
      current.pause()
      session.receive(chunk).then(
        () => {
          flush()
          resumeWhenDrained()
        },
        () => current.destroy(),
      )
    }
    // The client ended its stream: finish what it sent (a transaction may still be delivering), write every
    // reply, then end our side.
    const onEnd = (): void => {
      session.receive(EMPTY).then(
        () => {
          flush()
          current.end()
        },
        () => current.destroy(),
      )
    }
    const onClosed = (): void => {
      if (closed) return
      closed = true
      this.connections.delete(conn)
      void session.abort(conn.forced ? 'shutdown' : undefined).finally(() => {
        const end = session.end ?? 'client-closed'
        this.bus.emit({
          type: 'session.closed',
          at: Date.now(),
          sessionId,
          role: 'server',
          end,
          reason: SESSION_END_TEXT[end],
          bytesIn: session.bytesIn,
          bytesOut: session.bytesOut,
        })
        this.drained?.()
      })
    }
    socket.on('data', onData)
    socket.on('end', onEnd)
    socket.on('error', () => {})
    socket.on('close', onClosed)
    socket.setTimeout(this.config.idleTimeoutMs ?? 300_000, () => {
      // Time spent delivering is not idleness.
      if (session.state !== 'DELIVERING') session.idleTimeout()
    })
    this.bus.emit({
      type: 'session.opened',
      at: Date.now(),
      sessionId,
      role: 'server',
      peer,
      ...(proxied ? {proxiedBy: proxied.proxiedBy} : {}),
      listener,
      transport: target.kind,
    })
    session.greet()
    if (proxied) {
      // readProxyHeader left the socket paused; what followed the header is the session's first input.
      if (proxied.rest.length > 0) onData(proxied.rest)
      else socket.resume()
    }
  }

  private drained: (() => void) | undefined

  /**
   * Stops accepting, sends 421 4.3.2 to idle sessions, lets transactions in flight finish for up to
   * `graceMs`, then closes whatever is left. Unix socket files are removed.
   */
  async stop(graceMs = 30_000): Promise<void> {
    this.stopping = true
    this.resume()
    const closing = this.closeListeners()
    for (const c of this.connections) c.session.shutdown()
    if (this.connections.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs)
        timer.unref()
        this.drained = () => {
          if (this.connections.size === 0) {
            clearTimeout(timer)
            resolve()
          }
        }
      })
    }
    for (const c of this.connections) {
      c.forced = true
      c.socket.destroy()
    }
    await closing
  }

  private async closeListeners(): Promise<void> {
    const all = this.servers.splice(0)
    await Promise.all(
      all.map(
        ({server, target, inherited}) =>
          new Promise<void>((resolve) => {
            server.close(() => resolve())
            if (target.kind === 'unix' && !inherited && !this.config.sharedListeners) void fs.unlink(target.path).catch(() => {})
          }),
      ),
    )
  }
}

/** Turns a listen() error into a message with the next step. */
function listenError(target: Target, err: NodeJS.ErrnoException): ListenError {
  const where = formatTarget(target)
  switch (err.code) {
    case 'EADDRINUSE':
      return new ListenError(
        `${where} is already in use (another LMTP server?): stop it, or choose another --listen address`,
        'EADDRINUSE',
      )
    case 'EACCES':
      if (target.kind === 'tcp' && target.port < 1024) {
        return new ListenError(
          `port ${target.port} needs root: use --listen ${target.host}:${target.port === 24 ? 2424 : 10000 + target.port} or a unix: socket`,
          'EACCES',
        )
      }
      return new ListenError(`${where}: permission denied (check the directory's permissions)`, 'EACCES')
    case 'EADDRNOTAVAIL':
      return new ListenError(`${where}: no such local address on this machine; use 127.0.0.1 or a local IP`, 'EADDRNOTAVAIL')
    case 'ENOENT':
      return new ListenError(`${where}: the directory does not exist; create it first`, 'ENOENT')
    default:
      return new ListenError(`cannot listen on ${where}: ${err.message}`, err.code ?? 'EIO')
  }
}
