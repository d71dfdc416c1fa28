/**
 * Runs `lmtp serve`: loads the users file, cleans stale temp files, starts the listeners, logs, and stops
 * gracefully on SIGTERM/SIGINT. Lives outside the command so tests and other commands can start a server.
 */
import {mkdir} from 'node:fs/promises'
import {CliError, EXIT} from '../cli/exit-codes.js'
import {MaildirBackend, type OverQuotaMode} from '../delivery/maildir-backend.js'
import {UsersFileError, loadUsersFile} from '../delivery/users.js'
import type {Target} from '../net/target.js'
import {EventBus} from '../protocol/events.js'
import {SessionRecorder} from '../replay/recorder.js'
import {type EventsTarget, openEventFeed} from './event-feed.js'
import {type LogFormat, attachLogger} from './logger.js'
import {ListenError, LmtpServer} from './server.js'
import {ServerStats, type ServerTotals} from './stats.js'

/** Everything `lmtp serve` is configured with. */
export interface ServeOptions {
  maildir: string
  listen: Target[]
  socketMode: number
  hostname: string
  usersFile?: string
  quota?: number
  overQuota: OverQuotaMode
  checkQuotaAtRcpt: boolean
  maxSize: number
  maxRecipients: number
  maxConnections: number
  idleTimeoutMs: number
  tls?: {cert: Buffer; key: Buffer}
  logFormat: LogFormat
  shutdownGraceMs: number
  /** Where log lines go. */
  log: (line: string) => void
  /** Resolves when the server should stop (default: SIGTERM or SIGINT). */
  until?: Promise<unknown>
  /** Record every session into this directory (transcripts + bodies, see src/replay/transcript.ts). */
  record?: string
  /** Called once listening, with the server and its bus (tests, the dashboard, the event feed). */
  onReady?: (server: LmtpServer, bus: EventBus) => void
  /** Publish the event feed for `lmtp watch` on this socket; undefined: no feed (`--no-events`). */
  events?: EventsTarget
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
  let users: Awaited<ReturnType<typeof loadUsersFile>> | undefined
  if (o.usersFile) {
    try {
      users = await loadUsersFile(o.usersFile)
    } catch (err) {
      if (err instanceof UsersFileError) throw new CliError(err.message, EXIT.config)
      throw new CliError(`cannot read the users file ${o.usersFile}: ${(err as Error).message}`, EXIT.noInput)
    }
  }
  try {
    await mkdir(o.maildir, {recursive: true, mode: 0o700})
  } catch (err) {
    throw new CliError(`cannot create the Maildir root ${o.maildir}: ${(err as Error).message}`, EXIT.ioErr)
  }
  const backend = new MaildirBackend({
    root: o.maildir,
    users,
    defaultQuota: o.quota,
    overQuota: o.overQuota,
    checkQuotaAtRcpt: o.checkQuotaAtRcpt,
    hostname: o.hostname,
    onWarning: (message) => o.log(o.logFormat === 'json' ? JSON.stringify({level: 'warn', message}) : `warning: ${message}`),
  })
  const cleanup = await backend.cleanTmp()
  const bus = new EventBus()
  const recorder = o.record ? await openRecorder(o.record, o.log) : undefined
  const detachRecorder = recorder?.attach(bus)
  const stats = new ServerStats(bus)
  const detachLog = attachLogger(bus, o.logFormat, o.log)
  const server = new LmtpServer(
    {
      listen: o.listen,
      socketMode: o.socketMode,
      hostname: o.hostname,
      maxConnections: o.maxConnections,
      idleTimeoutMs: o.idleTimeoutMs,
      tls: o.tls,
      limits: {maxMessageSize: o.maxSize, maxRecipients: o.maxRecipients},
    },
    recorder ? recorder.wrap(backend) : backend,
    bus,
  )
  const feed = o.events
    ? await openEventFeed(
        o.events,
        {
          bus,
          totals: () => stats.totals,
          server: () => ({hostname: o.hostname, pid: process.pid, listeners: server.listeners.map((l) => l.address), startedAt: stats.totals.startedAt}),
        },
        (message) => o.log(o.logFormat === 'json' ? JSON.stringify({level: 'warn', message}) : `warning: ${message}`),
      )
    : undefined
  if (feed) o.log(o.logFormat === 'json' ? JSON.stringify({level: 'info', event: 'events', path: feed.path}) : `lmtp serve: event feed for lmtp watch at ${feed.path}`)
  let listeners: Awaited<ReturnType<LmtpServer['start']>>
  try {
    listeners = await server.start()
  } catch (err) {
    detachLog()
    await feed?.stop()
    if (err instanceof ListenError) throw new CliError(err.message, err.code === 'EACCES' ? EXIT.usage : EXIT.unavailable)
    throw err
  }
  const addresses = listeners.map((l) => l.address)
  const started = Date.now()
  const ready =
    o.logFormat === 'json'
      ? JSON.stringify({time: new Date().toISOString(), level: 'info', event: 'listening', listeners: addresses, maildir: o.maildir, tmpCleanup: cleanup})
      : `lmtp serve: listening on ${addresses.join(', ')}, delivering into ${o.maildir}${cleanup.removed ? ` (removed ${cleanup.removed} stale temp files)` : ''}`
  o.log(ready)
  o.onReady?.(server, bus)

  await signal
  o.log(o.logFormat === 'json' ? JSON.stringify({level: 'info', event: 'stopping'}) : 'lmtp serve: stopping (finishing transactions in flight)')
  await server.stop(o.shutdownGraceMs)
  // Let the last session.closed events reach the logger.
  await new Promise((r) => setImmediate(r))
  await feed?.stop()
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

/** Opens the session recorder of `--record DIR`; a directory that cannot be made is an I/O error (exit 74). */
async function openRecorder(dir: string, log: (line: string) => void): Promise<SessionRecorder> {
  try {
    return await SessionRecorder.create(dir, {onWarning: (message) => log(`warning: ${message}`)})
  } catch (err) {
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
