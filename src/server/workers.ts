/**
 * `lmtp serve --workers N`: N worker processes (Node's cluster module) that share the listeners: the primary
 * binds each TCP port and Unix socket once and hands connections to the workers in turn, so one machine's cores
 * all deliver. Every worker is an ordinary `serve` (same flags) and they agree on quotas through the
 * cross-process mailbox lock (src/delivery/dotlock.ts). The primary only supervises: it checks for a stale Unix
 * socket before the workers bind, restarts a worker that dies (unless they keep dying), forwards SIGHUP, stops
 * every worker gracefully on SIGTERM/SIGINT (each finishes its transactions in flight), removes the socket files,
 * and returns the summed totals.
 */
import cluster, {type Worker} from 'node:cluster'
import {unlink} from 'node:fs/promises'
import {clearStaleSocketFile} from '../net/socket-file.js'
import type {Target} from '../net/target.js'
import type {ServeSummary} from './run-server.js'
import type {ServerTotals} from '../protocol/totals.js'

/** The IPC messages a worker sends to the primary. */
export type WorkerMessage =
  | {type: 'lmtp-serve-ready'; listeners: string[]; tmpCleanup: {removed: number; kept: number}}
  | {type: 'lmtp-serve-summary'; summary: ServeSummary}

/** What the primary needs. */
export interface WorkersOptions {
  workers: number
  maildir: string
  /** Every listener the workers open (TCP and Unix, plain and PROXY): Unix ones are checked and removed here. */
  targets: Target[]
  /** The serve arguments each worker runs with (the primary's, without --json). */
  args: string[]
  /** Where workers' log lines go: 1 (stdout) or 2 (stderr, when the primary's stdout carries --json). */
  workerStdout: 1 | 2
  /** The grace each worker has on SIGTERM; the primary kills what is left this long after (plus 10 s). */
  shutdownGraceMs: number
  log: (level: 'info' | 'warn', message: string, fields?: Record<string, unknown>) => void
  /** Resolves when the workers should stop (default: SIGTERM or SIGINT). */
  until?: Promise<unknown>
  /** Restarts allowed within one minute before the primary gives up (default 10). */
  maxRestartsPerMinute?: number
}

/** Thrown when the workers cannot be started or keep dying. */
export class WorkersError extends Error {}

function sumTotals(all: ServerTotals[]): ServerTotals {
  const out: ServerTotals = {startedAt: Date.now(), connections: 0, openSessions: 0, messages: 0, bytes: 0, delivered: 0, deferred: 0, rejected: 0, refusedAtRcpt: 0}
  for (const t of all) {
    out.startedAt = Math.min(out.startedAt, t.startedAt)
    for (const k of ['connections', 'openSessions', 'messages', 'bytes', 'delivered', 'deferred', 'rejected', 'refusedAtRcpt'] as const) out[k] += t[k]
  }
  return out
}

/** Runs the primary until stopped; returns the workers' summed summary. */
export async function runWorkers(o: WorkersOptions): Promise<ServeSummary> {
  const stop = o.until ?? new Promise<string>((resolve) => {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => resolve(sig))
  })
  for (const t of o.targets) {
    if (t.kind !== 'unix') continue
    const state = await clearStaleSocketFile(t.path)
    if (state === 'live' || state === 'not-socket') throw new WorkersError(`unix:${t.path} is in use or not a socket: stop that server or choose another path`)
  }
  // A worker is a plain serve: no service-manager sockets or notifications of its own (the primary owns them).
  cluster.setupPrimary({exec: process.argv[1], args: o.args, stdio: ['ignore', o.workerStdout, 2, 'ipc']})
  const started = Date.now()
  const summaries: ServerTotals[] = []
  const restarts: number[] = []
  const maxRestarts = o.maxRestartsPerMinute ?? 10
  let listeners: string[] = []
  let tmp = {removed: 0, kept: 0}
  let stopping = false
  let failed: WorkersError | undefined
  let signalFailure: (err: WorkersError) => void = () => {}
  const failure = new Promise<never>((_, reject) => {
    signalFailure = reject
  })
  failure.catch(() => undefined)

  const live = new Set<Worker>()
  let readyCount = 0
  let allReady: () => void = () => {}
  const ready = new Promise<void>((resolve) => {
    allReady = resolve
  })
  const fork = (): Worker => {
    const w = cluster.fork({NOTIFY_SOCKET: '', LISTEN_FDS: '', LISTEN_PID: '', LMTP_SERVE_WORKER: '1'})
    live.add(w)
    let wasReady = false
    w.on('message', (m: WorkerMessage) => {
      if (m?.type === 'lmtp-serve-ready' && !wasReady) {
        wasReady = true
        listeners = m.listeners
        tmp = {removed: tmp.removed + m.tmpCleanup.removed, kept: tmp.kept + m.tmpCleanup.kept}
        if (++readyCount === o.workers) allReady()
      } else if (m?.type === 'lmtp-serve-summary') summaries.push(m.summary.totals)
    })
    w.on('exit', (code, signal) => {
      live.delete(w)
      if (stopping) return
      const now = Date.now()
      restarts.push(now)
      while (restarts.length > 0 && restarts[0]! < now - 60_000) restarts.shift()
      if (!wasReady && readyCount < o.workers) {
        failed = new WorkersError(`worker ${w.process.pid} exited (${signal ?? code}) before it was listening: see its error above`)
        signalFailure(failed)
        return
      }
      if (restarts.length > maxRestarts) {
        failed = new WorkersError(`workers keep dying (${restarts.length} restarts within a minute): stopping`)
        signalFailure(failed)
        return
      }
      o.log('warn', `worker ${w.process.pid} died (${signal ?? `exit ${code}`}): starting another`, {event: 'worker.restart', pid: w.process.pid})
      fork()
    })
    return w
  }
  const onHup = (): void => {
    for (const w of live) w.process.kill('SIGHUP')
  }
  process.on('SIGHUP', onHup)
  try {
    for (let i = 0; i < o.workers; i++) fork()
    await Promise.race([ready, failure])
    o.log('info', `${o.workers} workers listening on ${listeners.join(', ')}, delivering into ${o.maildir}`, {
      event: 'listening',
      listeners,
      maildir: o.maildir,
      workers: o.workers,
      pids: [...live].map((w) => w.process.pid),
      tmpCleanup: tmp,
    })
    await Promise.race([stop, failure]).catch(() => undefined)
  } finally {
    process.off('SIGHUP', onHup)
    stopping = true
    o.log('info', 'stopping the workers (each finishes its transactions in flight)', {event: 'stopping'})
    await stopAll(live, o.shutdownGraceMs + 10_000)
    for (const t of o.targets) if (t.kind === 'unix') await unlink(t.path).catch(() => undefined)
  }
  if (failed) throw failed
  return {listeners, maildir: o.maildir, uptimeMs: Date.now() - started, totals: sumTotals(summaries), tmpCleanup: tmp}
}

/** SIGTERM to every worker, SIGKILL to those still there after `killAfterMs`; resolves once all have exited. */
async function stopAll(live: Set<Worker>, killAfterMs: number): Promise<void> {
  const exits = [...live].map((w) => new Promise<void>((resolve) => (w.isDead() ? resolve() : w.once('exit', () => resolve()))))
  for (const w of live) w.process.kill('SIGTERM')
  const timer = setTimeout(() => {
    for (const w of live) w.process.kill('SIGKILL')
  }, killAfterMs)
  timer.unref()
  await Promise.all(exits)
  clearTimeout(timer)
}
