/**
 * A replay run: the item feed (sources or the generator) -> the scheduler (when each message is due) -> the
 * session pool (one session per worker, reused) -> one transaction per message -> the result sink (counts,
 * compare, report, resume file). `--concurrency` workers each take the next item, wait until it is due, open it,
 * and send it on their session.
 *
 * A server that goes away: the recipients of the message in flight are deferred (the client synthesises
 * "connection lost"), and workers reconnect with exponential backoff. The run is abandoned (exit 74) only
 * when no connection succeeds for --reconnect-for, or when the very first connection fails.
 * A server that refuses a second MAIL in a session (503; GNU Mailutils allows one transaction per session): the
 * message is sent again once on a fresh session, and from then on every message gets its own session.
 */
import {performance} from 'node:perf_hooks'
import type {AuthCredentials} from '../client/auth.js'
import {AUTH_REQUIRED_HINT, requiresAuth} from '../client/outcome.js'
import {EXIT} from '../util/exit-codes.js'
import type {Target} from '../net/target.js'
import type {ClientTimeouts, RecipientResult, TransactionResult} from '../protocol/client.js'
import {lostResult} from '../protocol/client.js'
import {ItemFeed} from './feed.js'
import {InputError, type MessageInfo, type OpenedMessage, type ReplayItem, type SourceEntry} from './item.js'
import {messageInfo} from './measure.js'
import {type PooledSession, RunAbort, SessionPool} from './pool.js'
import {type ResumeJournal, resumeKey} from './resume.js'
import {Scheduler} from './scheduler.js'
import {ResultSink} from './sink.js'
import {exitCodeOf, type ReplayProgress, type ReplaySummary} from './summary.js'
import {type Outgoing, transmit} from './transmit.js'

/** Everything a replay run is configured with. */
export interface ReplayOptions {
  /** Makes one pass over the input (sources or the generator); called again for --loop. */
  input: () => AsyncIterable<SourceEntry>
  /** True for generated load (changes defaults and the "no input" rule). */
  generated?: boolean
  target: Target
  /** Envelope overrides. */
  from?: string
  to?: string[]
  concurrency: number
  messagesPerConnection?: number
  /** Open-loop rate, messages per second. */
  rate?: number
  /** Replay transcripts at their recorded times, divided by `speed`. */
  originalTiming?: boolean
  speed?: number
  count?: number
  durationMs?: number
  loop?: boolean
  bdat?: boolean
  pipelining?: boolean
  starttls?: boolean
  tlsInsecure?: boolean
  tlsCa?: Buffer
  /** LMTP AUTH on every session. */
  auth?: AuthCredentials
  compare?: boolean
  /** NDJSON, one line per recipient result. */
  reportFile?: string
  /** What was already sent (--resume): not sent again; what is sent now is appended. */
  journal?: ResumeJournal
  lhloName: string
  timeouts?: Partial<ClientTimeouts>
  /** Give up when no connection succeeds for this long (default 30 s). */
  reconnectForMs?: number
  /** Called about every 200 ms and once at the end. */
  onProgress?: (p: ReplayProgress) => void
  /** Stops starting new messages (Ctrl-C); messages in flight finish. */
  signal?: AbortSignal
}

/** The parts of one run, shared by its workers. */
interface Run {
  o: ReplayOptions
  feed: ItemFeed
  scheduler: Scheduler
  pool: SessionPool
  sink: ResultSink
  resumed: {alreadyDone: number; recipientsAlreadyDone: number}
}

/** A message about to be sent: its envelope after --to/--from and --resume. */
interface Envelope {
  from: string
  to: string[]
  /** The source envelope index of each recipient in `to`. */
  indexes: number[]
  key?: string
}

/** Runs a replay and returns its summary. Never throws for server or input trouble: those are in the summary. */
export async function runReplay(o: ReplayOptions): Promise<ReplaySummary> {
  const t0 = Date.now()
  const feed = new ItemFeed({
    open: o.input,
    count: o.count,
    loop: o.loop,
    // The feed stops handing out items at the deadline; messages in flight finish.
    deadline: o.durationMs === undefined ? undefined : t0 + o.durationMs,
    readAhead: Math.max(64, o.concurrency * 4),
  })
  const sink = await ResultSink.open({compare: o.compare, reportFile: o.reportFile, journal: o.journal})
  const pool = new SessionPool(
    {
      target: o.target,
      lhloName: o.lhloName,
      starttls: o.starttls,
      tlsInsecure: o.tlsInsecure,
      tlsCa: o.tlsCa,
      auth: o.auth,
      needChunking: o.bdat,
      timeouts: o.timeouts,
      messagesPerConnection: o.messagesPerConnection,
      reconnectForMs: o.reconnectForMs,
      signal: o.signal,
    },
    sink.latency,
  )
  const run: Run = {o, feed, scheduler: new Scheduler(o), pool, sink, resumed: {alreadyDone: 0, recipientsAlreadyDone: 0}}
  const stopAll = (): void => feed.stop()
  o.signal?.addEventListener('abort', stopAll, {once: true})
  const progress = (final: boolean): void => o.onProgress?.(snapshot(run, t0, final))
  const ticker = o.onProgress ? setInterval(() => progress(false), 200) : undefined
  ticker?.unref()

  await Promise.all(Array.from({length: Math.max(1, o.concurrency)}, () => worker(run)))
  feed.stop()
  if (ticker) clearInterval(ticker)
  o.signal?.removeEventListener('abort', stopAll)
  await sink.close()
  const elapsedMs = Date.now() - t0
  progress(true)
  return summarise(run, elapsedMs)
}

/** One worker: takes items until the feed is empty, the run is stopped or the pool gave up. */
async function worker(run: Run): Promise<void> {
  const {feed, scheduler, pool, o} = run
  let session: PooledSession | undefined
  try {
    for (;;) {
      const ticket = await feed.take()
      if (!ticket) break
      const due = scheduler.dueAt(ticket.item, ticket.seq)
      await scheduler.waitUntil(due, o.signal)
      if (o.signal?.aborted) break
      const opened = await openItem(run, ticket.item)
      if (!opened) continue
      try {
        const env = envelopeOf(run, ticket.item, opened.msg, opened.info)
        if (!env) continue
        session = await deliver(run, session, {item: ticket.item, ...opened, ...env, due}, env)
      } catch (err) {
        if (!(err instanceof RunAbort)) throw err
        break
      } finally {
        await opened.msg.close()
      }
    }
  } finally {
    await pool.finish(session)
  }
}

/** Opens an item and learns what its bytes are; a bad one is counted as skipped (undefined). */
async function openItem(run: Run, item: ReplayItem): Promise<{msg: OpenedMessage; info: MessageInfo} | undefined> {
  let msg: OpenedMessage | undefined
  try {
    msg = await item.open()
    return {msg, info: await messageInfo(item, msg)}
  } catch (err) {
    await msg?.close()
    run.feed.problem(err instanceof InputError ? err.problem : {source: item.source, reason: String(err)})
    return undefined
  }
}

/**
 * The envelope to send, after --to/--from and --resume (recipients a resume file says were answered finally are
 * left out); undefined when there is nothing to send (no recipient: skipped; all done: already sent).
 */
function envelopeOf(run: Run, item: ReplayItem, msg: OpenedMessage, info: MessageInfo): Envelope | undefined {
  const {o, resumed} = run
  const all = o.to ?? msg.to
  if (all.length === 0) {
    run.feed.problem({source: item.source, reason: 'no recipient: no Delivered-To, X-Original-To or To header (give --to)'})
    return undefined
  }
  const from = o.from ?? msg.from ?? ''
  if (!o.journal) return {from, to: all, indexes: all.map((_, i) => i)}
  const key = resumeKey(item, info)
  const done = o.journal.doneFor(key)
  const indexes = all.map((_, i) => i).filter((i) => !done.has(i))
  resumed.recipientsAlreadyDone += all.length - indexes.length
  if (indexes.length === 0) {
    resumed.alreadyDone++
    return undefined
  }
  return {from, to: indexes.map((i) => all[i]!), indexes, key}
}

/** The worker's session, or a new one; when none can be had, the message's recipients are deferred and the run stops. */
async function sessionFor(run: Run, current: PooledSession | undefined, m: Outgoing, env: Envelope): Promise<PooledSession> {
  const {pool} = run
  try {
    return await pool.ready(current)
  } catch (err) {
    run.feed.stop()
    const abort = err instanceof RunAbort ? err : new RunAbort(String(err), EXIT.software)
    pool.abort ??= abort
    if (pool.connected) await finish(run, m.item, env, {recipients: m.to.map((r, i) => lostResult(i, r, 'RCPT', abort.message))})
    throw abort
  }
}

/**
 * Sends one message: on the worker's session (opened when needed), once more on a fresh session when the server
 * refused a second MAIL in a session, and hands the results to the sink. Returns the session to keep.
 */
async function deliver(run: Run, current: PooledSession | undefined, m: Outgoing, env: Envelope): Promise<PooledSession | undefined> {
  const {pool, sink, o} = run
  let session = await sessionFor(run, current, m, env)
  sink.started++
  sink.lastStart = performance.now()
  const countBytes = (n: number): void => {
    sink.bytes += n
  }
  let result = await transmit(session, m, o, sink.latency, countBytes)
  if (result.markerRefused) {
    const r = result.markerRefused
    pool.learnOneTransactionPerSession(`${pool.server} answered ${r.code} to LHLO after a transaction: one session per message from then on`)
  }
  if (refusedSecondMail(session, result)) {
    pool.learnOneTransactionPerSession(
      `${pool.server} answered ${result.mail.code} to MAIL in a session that already carried a transaction: one session per message from then on`,
    )
    await pool.close(session)
    // MAIL was refused, so the body was not sent: open the item again and send it on a fresh session, once.
    // (Should it have become unreadable meanwhile, the 503 stands as its outcome.)
    const again = await m.item.open().catch(() => undefined)
    if (again) {
      try {
        session = await sessionFor(run, undefined, m, env)
        result = await transmit(session, {...m, msg: again}, o, sink.latency, countBytes)
      } finally {
        await again.close()
      }
    }
  }
  await finish(run, m.item, env, result)
  if (!o.auth && requiresAuth(result.mail)) {
    // Every other message would be refused the same way: stop now, and say what to do.
    run.feed.stop()
    await pool.close(session)
    throw (pool.abort ??= new RunAbort(`${pool.server} answered ${result.mail.code} to MAIL: ${AUTH_REQUIRED_HINT}`, EXIT.config))
  }
  return pool.after(session)
}

/** A 503 to MAIL on a session that already carried a transaction: the server allows one per session. */
function refusedSecondMail(s: PooledSession, result: TransactionResult): boolean {
  return s.sent > 1 && result.mail.code === 503 && !s.client.closed
}

/** Hands a message's results to the sink, with their indexes in the source's envelope. */
async function finish(run: Run, item: ReplayItem, env: Envelope, result: Pick<TransactionResult, 'recipients' | 'violation'>): Promise<void> {
  const results: RecipientResult[] = result.recipients.map((r) => ({...r, index: env.indexes[r.index] ?? r.index}))
  await run.sink.message({item, results, overridden: run.o.to !== undefined, violation: result.violation, key: env.key})
}

function snapshot(run: Run, t0: number, final: boolean): ReplayProgress {
  const {sink, feed} = run
  const elapsedMs = Date.now() - t0
  return {
    done: sink.messages.total + feed.problemCount,
    total: feed.total,
    elapsedMs,
    rate: elapsedMs > 0 ? (sink.messages.total * 1000) / elapsedMs : 0,
    delivered: sink.recipients.delivered,
    deferred: sink.recipients.deferred,
    rejected: sink.recipients.rejected,
    skipped: feed.problemCount,
    final,
  }
}

function summarise(run: Run, elapsedMs: number): ReplaySummary {
  const {o, sink, pool, feed, scheduler} = run
  const secs = Math.max(elapsedMs, 1) / 1000
  const compare = sink.compareSummary()
  const writeError = sink.writeError()
  const summary: ReplaySummary = {
    server: pool.server,
    mode: scheduler.mode,
    concurrency: o.concurrency,
    ...(o.rate ? {targetRate: o.rate} : {}),
    elapsedMs,
    messages: sink.messages,
    recipients: sink.recipients,
    codes: sink.codeCounts(),
    throughput: {
      // Over the span in which messages were started: the rate the server was actually offered.
      startedPerSec:
        sink.started > 1 ? round(((sink.started - 1) * 1000) / Math.max(sink.lastStart - scheduler.start, 1)) : round(sink.started / secs),
      messagesPerSec: round(sink.messages.total / secs),
      recipientsPerSec: round(sink.recipients.total / secs),
      bytesPerSec: Math.round(sink.bytes / secs),
    },
    bytes: sink.bytes,
    latency: sink.latency.stats(),
    connections: pool.counts,
    ...(pool.oneTransactionPerSession ? {oneTransactionPerSession: pool.oneTransactionPerSession} : {}),
    input: {read: feed.read, skipped: feed.problemCount, notMail: feed.notMailCount, ignoredFiles: feed.ignored, problems: feed.problems},
    ...(o.journal ? {resume: {file: o.journal.file, ...run.resumed}} : {}),
    ...(compare ? {compare} : {}),
    violations: sink.violationSummary(),
    ...(pool.abort ? {aborted: pool.abort.message} : writeError ? {aborted: writeError} : {}),
    ...(o.signal?.aborted ? {interrupted: true} : {}),
    exitCode: EXIT.ok,
  }
  summary.exitCode = pool.abort ? pool.abort.exitCode : writeError ? EXIT.ioErr : exitCodeOf(summary, o.generated === true)
  return summary
}

function round(n: number): number {
  return Math.round(n * 10) / 10
}
