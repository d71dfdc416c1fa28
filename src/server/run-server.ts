/**
 * Runs `lmtp serve`: checks the configuration (users file, certificate), binds the listeners (or adopts the
 * sockets systemd passed), drops to --user, checks the Maildir is writable as that user, cleans stale temp
 * files, serves, reloads on SIGHUP and stops gracefully on SIGTERM/SIGINT, telling systemd each step. Lives
 * outside the command so tests and other commands can start a server.
 */
import {access, chown, constants, lchown, mkdir, stat} from 'node:fs/promises'
import path from 'node:path'
import {CliError, EXIT, type ExitCode} from '../cli/exit-codes.js'
import {MaildirBackend, type OverQuotaMode} from '../delivery/maildir-backend.js'
import {SPOOL_DIR} from '../delivery/mailbox.js'
import type {Target} from '../net/target.js'
import {causeOf} from '../protocol/backend.js'
import {EventBus} from '../protocol/events.js'
import type {ServerTotals} from '../protocol/totals.js'
import {RecordDirError, SessionRecorder} from '../replay/recorder.js'
import {type EventsTarget, openEventFeed} from './event-feed.js'
import {IdentityError, type Identity, dropPrivileges, parseOwner, resolveIdentity, runningAsRoot} from './identity.js'
import {type LogFormat, attachLogger, createLogger} from './logger.js'
import {type MetricsEndpoint, MetricsListenError, ServerMetrics, openMetricsEndpoint} from './metrics.js'
import {ConfigProblem, Reloader, type ReloadResult, checkOwnersAllowed, loadTls, loadUsers} from './reload.js'
import {ListenError, LmtpServer} from './server.js'
import type {CidrList} from '../net/proxy-protocol.js'
import type {WorkerMessage} from './workers.js'
import {ServerStats} from './stats.js'
import {type InheritedSocket, SystemdNotifier, takeListenFds} from './systemd.js'
import {expiryWarning} from './tls-files.js'

/** Everything `lmtp serve` is configured with. */
export interface ServeOptions {
  maildir: string
  listen: Target[]
  /** Listeners whose connections start with a PROXY protocol header, and the networks trusted to send one. */
  proxy?: {listen: Target[]; trusted: CidrList; headerTimeoutMs?: number}
  /** Set in a worker of `serve --workers`: listeners are shared, readiness and the summary go to the primary. */
  worker?: {send: (message: WorkerMessage) => void}
  socketMode: number
  /** Owner of the Unix sockets, `USER[:GROUP]` (`--socket-owner`). */
  socketOwner?: string
  /** Drop to this user after binding (`--user`; only when started as root). */
  user?: string
  /** ... and this group (`--group`; default the user's primary group). */
  group?: string
  hostname: string
  usersFile?: string
  quota?: number
  overQuota: OverQuotaMode
  checkQuotaAtRcpt: boolean
  maxSize: number
  maxRecipients: number
  maxConnections: number
  idleTimeoutMs: number
  /** Certificate and key already in memory (tests); see tlsFiles for the flags. */
  tls?: {cert: Buffer; key: Buffer}
  /** `--tls-cert` / `--tls-key`: read and checked at startup, re-read on SIGHUP. */
  tlsFiles?: {cert: string; key: string}
  /** Sockets passed by systemd (default: taken from LISTEN_FDS when it is meant for this process). */
  inherited?: InheritedSocket[]
  /** Environment holding NOTIFY_SOCKET / LISTEN_FDS (default process.env). */
  env?: NodeJS.ProcessEnv
  logFormat: LogFormat
  shutdownGraceMs: number
  /** Where log lines go. */
  log: (line: string) => void
  /** Resolves when the server should stop (default: SIGTERM or SIGINT). */
  until?: Promise<unknown>
  /** Record every session into this directory (transcripts + bodies, see src/replay/transcript.ts). */
  record?: string
  /**
   * Called once listening, with the server, its bus and the controls (tests, the dashboard, the event feed).
   * `reload` does what SIGHUP does.
   */
  onReady?: (server: LmtpServer, bus: EventBus, control: ServeControl) => void
  /** Publish the event feed for `lmtp watch` on this socket; undefined: no feed (`--no-events`). */
  events?: EventsTarget
  /** Serve Prometheus metrics and /healthz over HTTP here (`--metrics HOST:PORT`); port 0 picks one. */
  metrics?: {host: string; port: number}
  /** Called once the metrics endpoint is up, with its address (tests). */
  onMetrics?: (endpoint: MetricsEndpoint) => void
}

/** What a running server offers its embedder besides signals. */
export interface ServeControl {
  /** Re-reads the users file and the certificate, as SIGHUP does. */
  reload(): Promise<ReloadResult>
}

/** What `lmtp serve` returns when it stops (its --json output). */
export interface ServeSummary {
  listeners: string[]
  maildir: string
  uptimeMs: number
  totals: ServerTotals
  tmpCleanup: {removed: number; kept: number}
}

/** Starts the server, runs until stopped, returns the summary. Startup problems are CliErrors. */
export async function runServer(o: ServeOptions): Promise<ServeSummary> {
  // Listen for SIGTERM/SIGINT from the start: a signal during startup then stops the server once it is up.
  const signal = o.until ?? waitForSignal()
  const logger = createLogger(o.logFormat, o.log)
  const say = (level: 'info' | 'warn', message: string): void => logger.say(level, message)
  const env = o.env ?? process.env
  const notifier = new SystemdNotifier(env, (m) => say('warn', m))
  let identity = configured(() => (o.user === undefined ? undefined : resolveIdentity(o.user, o.group)))
  const socketOwner = configured(() => (o.socketOwner === undefined ? undefined : parseOwner(o.socketOwner, '--socket-owner')))
  if (identity && !runningAsRoot()) {
    // Already that user (systemd's User= with the same name in the config file): nothing to drop.
    if (process.geteuid?.() !== identity.uid || process.getegid?.() !== identity.gid) {
      throw new CliError(`--user ${o.user} needs root to switch to: start as root (it binds, then drops), or leave --user out`, EXIT.usage)
    }
    identity = undefined
  }
  const users = o.usersFile ? await configuredAsync(() => loadUsers(o.usersFile!)) : undefined
  if (users) configured(() => checkOwnersAllowed(users, o.usersFile!, identity))
  let tlsPair = o.tls
  if (o.tlsFiles) {
    const files = await configuredAsync(() => loadTls(o.tlsFiles!.cert, o.tlsFiles!.key))
    const warning = expiryWarning(files, o.tlsFiles.cert)
    if (warning) say('warn', warning)
    tlsPair = files
  }
  await createMaildirRoot(o.maildir, identity)
  const backend = new MaildirBackend({
    root: o.maildir,
    users,
    defaultQuota: o.quota,
    overQuota: o.overQuota,
    checkQuotaAtRcpt: o.checkQuotaAtRcpt,
    hostname: o.hostname,
    onWarning: (message, err) => logger.warn(err === undefined ? message : `${message}: ${causeOf(err)}`),
  })
  const bus = new EventBus()
  const recorder = o.record ? await openRecorder(o.record, identity, (m) => say('warn', m)) : undefined
  const detachRecorder = recorder?.attach(bus)
  const stats = new ServerStats(bus)
  const detachLog = attachLogger(bus, logger)
  const server = new LmtpServer(
    {
      listen: o.listen,
      socketMode: o.socketMode,
      socketOwner,
      holdUntilResumed: true,
      inherited: o.inherited ?? takeListenFds(env),
      hostname: o.hostname,
      maxConnections: o.maxConnections,
      idleTimeoutMs: o.idleTimeoutMs,
      tls: tlsPair,
      limits: {maxMessageSize: o.maxSize, maxRecipients: o.maxRecipients},
      proxy: o.proxy,
      sharedListeners: o.worker !== undefined,
      onWarning: (message) => say('warn', message),
    },
    recorder ? recorder.wrap(backend) : backend,
    bus,
  )
  const metrics = o.metrics
    ? new ServerMetrics({
        bus,
        totals: () => stats.totals,
        maildir: o.maildir,
        listeners: () => server.listenerStatus(),
        certificate: () => server.certificate,
      })
    : undefined
  let endpoint: MetricsEndpoint | undefined
  let listeners: Awaited<ReturnType<LmtpServer['start']>>
  try {
    // The metrics port is bound with the listeners (before dropping privileges); /healthz is 503 until they are up.
    if (metrics && o.metrics) endpoint = await openMetricsEndpoint(o.metrics.host, o.metrics.port, metrics)
    listeners = await server.start()
    // Bound (ports below 1024, sockets in root's directories) and not serving yet: now become --user.
    if (identity) dropPrivileges(identity)
    await checkMaildirWritable(backend.root)
  } catch (err) {
    detachLog()
    metrics?.detach()
    await endpoint?.close()
    await server.stop(0)
    if (err instanceof ListenError || err instanceof MetricsListenError) {
      throw new CliError(err.message, err.code === 'EACCES' ? EXIT.usage : EXIT.unavailable)
    }
    if (err instanceof IdentityError) throw new CliError(err.message, EXIT.config)
    throw err
  }
  if (runningAsRoot()) say('warn', 'delivering as root: every mail file will be owned by root; start with --user vmail (a user of your own) to drop privileges once the sockets are bound')
  const cleanup = await backend.cleanTmp()
  const feed = o.events
    ? await openEventFeed(
        o.events,
        {
          bus,
          totals: () => stats.totals,
          server: () => ({hostname: o.hostname, pid: process.pid, listeners: server.listeners.map((l) => l.address), startedAt: stats.totals.startedAt}),
        },
        (message) => say('warn', message),
      )
    : undefined
  if (feed) logger.log('info', 'events', {path: feed.path}, `lmtp serve: event feed for lmtp watch at ${feed.path}`)
  server.resume()
  const addresses = listeners.map((l) => l.address)
  const started = Date.now()
  logger.log(
    'info',
    o.worker ? 'worker.listening' : 'listening',
    {listeners: addresses, maildir: o.maildir, metrics: endpoint?.address, tmpCleanup: cleanup, uid: process.getuid?.(), ...(o.worker ? {pid: process.pid} : {})},
    `lmtp serve${o.worker ? ` worker ${process.pid}` : ''}: listening on ${addresses.join(', ')}, delivering into ${o.maildir}` +
      `${endpoint ? `, metrics and /healthz on http://${endpoint.address}/` : ''}` +
      `${cleanup.removed ? ` (removed ${cleanup.removed} stale temp files)` : ''}`,
  )
  o.worker?.send({type: 'lmtp-serve-ready', listeners: addresses, tmpCleanup: {removed: cleanup.removed, kept: cleanup.kept}})
  if (endpoint) o.onMetrics?.(endpoint)
  const reloader = new Reloader({usersFile: o.usersFile, tlsFiles: o.tlsFiles, defaultQuota: o.quota, backend, server, notifier, log: say})
  const onHup = (): void => {
    say('info', 'SIGHUP: reloading the users file and the TLS certificate')
    void reloader.reload()
  }
  process.on('SIGHUP', onHup)
  await notifier.ready(`listening on ${addresses.join(', ')}`)
  o.onReady?.(server, bus, {reload: () => reloader.reload()})

  await signal
  process.off('SIGHUP', onHup)
  logger.log('info', 'stopping', {}, 'lmtp serve: stopping (finishing transactions in flight)')
  const notified = notifier.stopping()
  await server.stop(o.shutdownGraceMs)
  // Let the last session.closed events reach the logger.
  await new Promise((r) => setImmediate(r))
  await feed?.stop()
  await endpoint?.close()
  metrics?.detach()
  await notified
  logger.log('info', 'stopped', {}, 'lmtp serve: stopped')
  detachLog()
  stats.detach()
  detachRecorder?.()
  await recorder?.close()
  return {
    listeners: addresses,
    maildir: o.maildir,
    uptimeMs: Date.now() - started,
    totals: stats.totals,
    tmpCleanup: {removed: cleanup.removed, kept: cleanup.kept},
  }
}

/** Runs a configuration step; its IdentityError or ConfigProblem becomes a CliError with the right exit code. */
function configured<T>(step: () => T): T {
  try {
    return step()
  } catch (err) {
    throw asCliError(err)
  }
}

async function configuredAsync<T>(step: () => Promise<T>): Promise<T> {
  try {
    return await step()
  } catch (err) {
    throw asCliError(err)
  }
}

function asCliError(err: unknown): unknown {
  if (err instanceof IdentityError) return new CliError(err.message, EXIT.config)
  if (err instanceof ConfigProblem) return new CliError(err.message, err.exit as ExitCode)
  return err
}

/** Creates the Maildir root when missing; one created here for --user is given to that user. */
async function createMaildirRoot(root: string, identity: Identity | undefined): Promise<void> {
  let created: string | undefined
  try {
    created = await mkdir(root, {recursive: true, mode: 0o700})
  } catch (err) {
    throw new CliError(`cannot create the Maildir root ${root}: ${(err as Error).message}; create it and give it to the user serve runs as`, EXIT.cantCreate)
  }
  if (created !== undefined && identity) await chown(root, identity.uid, identity.gid)
}

/** The Maildir root (and its spool directory, when present) must be writable by the identity serve now runs as. */
async function checkMaildirWritable(root: string): Promise<void> {
  for (const dir of [root, path.join(root, SPOOL_DIR)]) {
    try {
      await access(dir, constants.W_OK | constants.X_OK)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT' && dir !== root) continue
      const owner = await stat(dir).then((s) => `${s.uid}:${s.gid} mode ${(s.mode & 0o7777).toString(8)}`, () => 'missing')
      const uid = process.getuid?.() ?? -1
      throw new CliError(
        `the Maildir ${dir === root ? 'root' : 'spool directory'} ${dir} is not writable by uid ${uid} (${code}; it is ${owner}): chown -R ${uid}:${process.getgid?.() ?? ''} ${root}, or run serve as its owner (--user)`,
        EXIT.cantCreate,
      )
    }
  }
}

/**
 * Opens the session recorder of `--record DIR` (before the listeners, as the backend it wraps); a directory that
 * cannot be made is an I/O error (exit 74), one another user could have prepared a configuration error (78). With
 * --user the directory is given to that user.
 */
async function openRecorder(dir: string, identity: Identity | undefined, warn: (message: string) => void): Promise<SessionRecorder> {
  try {
    const recorder = await SessionRecorder.create(dir, {onWarning: warn, owner: identity?.uid})
    if (identity) {
      // Both were just checked (no symlink, not writable by others), so nobody can swap them; lchown all the same.
      await lchown(dir, identity.uid, identity.gid)
      await lchown(recorder.bodiesDir, identity.uid, identity.gid)
    }
    return recorder
  } catch (err) {
    if (err instanceof RecordDirError) {
      throw new CliError(
        `--record ${dir} is not safe to write into: ${err.message}; use a directory of your own (mode 0700, no symlinks), or fix its owner and mode`,
        EXIT.config,
      )
    }
    throw new CliError(`cannot create the recording directory ${dir}: ${(err as Error).message}`, EXIT.ioErr)
  }
}

function waitForSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (sig: string): void => {
      process.off('SIGTERM', on)
      process.off('SIGINT', on)
      resolve(sig)
    }
    process.once('SIGTERM', on)
    process.once('SIGINT', on)
  })
}
