/**
 * The replay driver: N workers, each with its own LMTP session (reused for many messages), take items from
 * the feed, send them with the shared client, and record every recipient's outcome, reply code and latency.
 *
 * Closed loop (default): each worker sends its next message as soon as the last one finished.
 * Open loop (--rate R): message k is due at start + k/R; a worker that picks it up late sends at once, and the
 * message latency is measured from the due time, so a slow server shows up as latency instead of silently
 * lowering the rate (no coordinated omission). --timing original: transcripts are due at their recorded
 * times (scaled by --speed).
 *
 * A server that goes away: the recipients of the message in flight are deferred (the client synthesises
 * "connection lost"), and workers reconnect with exponential backoff. The run is abandoned (exit 74) only
 * when no connection succeeds for --reconnect-for, or when the very first connection fails.
 */
import {createWriteStream, type WriteStream} from 'node:fs'
import net from 'node:net'
import {performance} from 'node:perf_hooks'
import type {Duplex} from 'node:stream'
import tls from 'node:tls'
import {EXIT, type ExitCode} from '../cli/exit-codes.js'
import {connectTarget, explainConnectError, formatTarget, type Target} from '../net/target.js'
import type {Capabilities} from '../protocol/capabilities.js'
import {
  type ClientTimeouts,
  LmtpClient,
  LmtpClientError,
  lostResult,
  type RecipientResult,
  type TransactionResult,
} from '../protocol/client.js'
import type {MailParams} from '../protocol/command.js'
import type {LmtpEvent, Outcome} from '../protocol/events.js'
import {ItemFeed} from './feed.js'
import {InputError, type InputProblem, type OpenedMessage, type ReplayItem, type SourceEntry} from './item.js'
import {LatencyRecorder, type LatencyStats, type Phase} from './latency.js'
import type {RecordedRecipient} from './transcript.js'

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
  compare?: boolean
  /** NDJSON, one line per recipient result. */
  reportFile?: string
  lhloName: string
  timeouts?: Partial<ClientTimeouts>
  /** Give up when no connection succeeds for this long (default 30 s). */
  reconnectForMs?: number
  /** Called about every 200 ms and once at the end. */
  onProgress?: (p: ReplayProgress) => void
  /** Stops starting new messages (Ctrl-C); messages in flight finish. */
  signal?: AbortSignal
}

/** A progress snapshot. */
export interface ReplayProgress {
  /** Messages finished (sent, with an outcome) plus skipped ones. */
  done: number
  /** Total, once known. */
  total?: number
  elapsedMs: number
  /** Messages finished per second so far. */
  rate: number
  delivered: number
  deferred: number
  rejected: number
  skipped: number
  final: boolean
}

/** Counts by outcome. */
export interface OutcomeCounts {
  total: number
  delivered: number
  deferred: number
  rejected: number
}

/** One recipient whose outcome differs from the recording. */
export interface OutcomeChange {
  source: string
  index: number
  recipient: string
  recorded: {code?: number; enhanced?: string; text?: string; outcome?: Outcome}
  now: {code: number; enhanced?: string; text: string; outcome: Outcome}
}

/** The result of a run (the --json output). */
export interface ReplaySummary {
  server: string
  mode: 'closed-loop' | 'open-loop' | 'original-timing'
  concurrency: number
  /** The --rate asked for (open loop). */
  targetRate?: number
  elapsedMs: number
  /** Messages by outcome: delivered (every recipient), deferred (some deferred, none rejected), rejected (any). */
  messages: OutcomeCounts
  recipients: OutcomeCounts
  /** Recipients by reply code, most frequent first; `no reply` when the connection was lost before a reply. */
  codes: {reply: string; count: number}[]
  throughput: {
    /** Messages started per second, from the start of the run to the last start (the achieved rate). */
    startedPerSec: number
    messagesPerSec: number
    recipientsPerSec: number
    /** Message octets sent per second. */
    bytesPerSec: number
  }
  bytes: number
  /** Milliseconds per phase. */
  latency: Record<Phase, LatencyStats>
  connections: {opened: number; lost: number; failedAttempts: number}
  input: {
    read: number
    skipped: number
    ignoredFiles: number
    problems: InputProblem[]
  }
  compare?: {
    compared: number
    unchanged: number
    changed: number
    /** Recipients without a recorded outcome, or whose envelope was overridden. */
    notComparable: number
    changes: OutcomeChange[]
  }
  violations: {count: number; first: string[]}
  /** Why the run stopped early, if it did. */
  aborted?: string
  interrupted?: boolean
  exitCode: ExitCode
}

const MAX_CHANGES = 1000

/** Why a run had to stop. */
class RunAbort extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
  ) {
    super(message)
  }
}

interface Session {
  client: LmtpClient
  caps: Capabilities
  probe: Probe
  sent: number
}

/** Times MAIL, RCPT and the replies after the body from the client's own events, to the microsecond. */
class Probe {
  commands: {verb: string; line: string; t: number}[] = []
  replies: number[] = []
  reset(): void {
    this.commands = []
    this.replies = []
  }
  readonly emit = (e: LmtpEvent): void => {
    if (e.type === 'command') this.commands.push({verb: e.verb, line: e.line, t: performance.now()})
    else if (e.type === 'reply') this.replies.push(performance.now())
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0) return Promise.resolve()
  return new Promise((resolve) => {
    const t = setTimeout(done, Math.max(1, Math.ceil(ms)))
    function done(): void {
      clearTimeout(t)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, {once: true})
  })
}

function isAscii(s: string): boolean {
  return !/[^\x00-\x7f]/.test(s)
}

/** Runs a replay and returns its summary. Never throws for server or input trouble: those are in the summary. */
export async function runReplay(o: ReplayOptions): Promise<ReplaySummary> {
  const latency = new LatencyRecorder()
  const recipients: OutcomeCounts = {total: 0, delivered: 0, deferred: 0, rejected: 0}
  const messages: OutcomeCounts = {total: 0, delivered: 0, deferred: 0, rejected: 0}
  const codes = new Map<string, number>()
  const violations: string[] = []
  let violationCount = 0
  const connections = {opened: 0, lost: 0, failedAttempts: 0}
  const compare = o.compare ? {compared: 0, unchanged: 0, changed: 0, notComparable: 0, changes: [] as OutcomeChange[]} : undefined
  let bytes = 0
  let skipped = 0
  let started = 0
  let lastStart = 0
  let abort: RunAbort | undefined
  let everConnected = false
  let downSince: number | undefined
  const reconnectFor = o.reconnectForMs ?? 30_000
  const server = formatTarget(o.target)

  const t0 = Date.now()
  const p0 = performance.now()
  const feed = new ItemFeed({
    open: o.input,
    count: o.count,
    loop: o.loop,
    // The feed stops handing out items at the deadline; messages in flight finish.
    deadline: o.durationMs === undefined ? undefined : t0 + o.durationMs,
    readAhead: Math.max(64, o.concurrency * 4),
  })
  const stopAll = (): void => feed.stop()
  o.signal?.addEventListener('abort', stopAll, {once: true})

  let report: WriteStream | undefined
  if (o.reportFile) {
    report = createWriteStream(o.reportFile, {flags: 'w', mode: 0o600})
    await new Promise<void>((resolve, reject) => {
      report!.once('open', () => resolve())
      report!.once('error', reject)
    })
  }
  let reportError: Error | undefined
  report?.on('error', (err) => {
    reportError = err
  })

  const progress = (final: boolean): void => {
    if (!o.onProgress) return
    const elapsedMs = Date.now() - t0
    const done = messages.total + skipped
    o.onProgress({
      done,
      total: feed.total === undefined ? undefined : feed.total,
      elapsedMs,
      rate: elapsedMs > 0 ? (messages.total * 1000) / elapsedMs : 0,
      delivered: recipients.delivered,
      deferred: recipients.deferred,
      rejected: recipients.rejected,
      skipped,
      final,
    })
  }
  const ticker = o.onProgress ? setInterval(() => progress(false), 200) : undefined
  ticker?.unref()

  // Due times.
  let firstAt: number | undefined
  const dueAt = (item: ReplayItem, seq: number): number => {
    if (o.rate) return p0 + (seq * 1000) / o.rate
    if (o.originalTiming && item.at !== undefined) {
      firstAt ??= item.at
      return p0 + (item.at - firstAt) / (o.speed ?? 1)
    }
    return performance.now()
  }

  const upgrade = (plain: Duplex): Promise<Duplex> =>
    new Promise((resolve, reject) => {
      const host = o.target.kind === 'tcp' ? o.target.host : 'localhost'
      const secure = tls.connect({
        socket: plain as net.Socket,
        ...(net.isIP(host) ? {} : {servername: host}),
        rejectUnauthorized: !o.tlsInsecure,
      })
      secure.once('secureConnect', () => resolve(secure))
      secure.once('error', reject)
    })

  const openSession = async (): Promise<Session> => {
    const start = performance.now()
    const socket = await connectTarget(o.target, o.timeouts?.greeting ?? 30_000)
    const probe = new Probe()
    const client = new LmtpClient(socket, {timeouts: o.timeouts, emit: probe.emit})
    try {
      await client.start()
      latency.record('connect', performance.now() - start)
      const l0 = performance.now()
      let caps = await client.lhlo(o.lhloName)
      latency.record('lhlo', performance.now() - l0)
      if (o.starttls) {
        if (!caps.startTls) throw new RunAbort(`${server} does not offer STARTTLS (drop --starttls, or enable TLS on the server)`, EXIT.unavailable)
        try {
          await client.startTls(upgrade)
        } catch (err) {
          if (err instanceof LmtpClientError) throw err
          throw new RunAbort(
            `TLS with ${server} failed: ${(err as Error).message}${o.tlsInsecure ? '' : ' (--tls-insecure skips certificate verification)'}`,
            EXIT.ioErr,
          )
        }
        caps = await client.lhlo(o.lhloName)
      }
      if (o.bdat && !caps.chunking) throw new RunAbort(`${server} does not offer CHUNKING, so --bdat cannot be used`, EXIT.unavailable)
      connections.opened++
      return {client, caps, probe, sent: 0}
    } catch (err) {
      client.close()
      throw err
    }
  }

  /** Connects, retrying with backoff while the server is away; throws RunAbort when it is time to give up. */
  const connect = async (): Promise<Session> => {
    for (let attempt = 0; ; attempt++) {
      if (abort) throw abort
      try {
        const s = await openSession()
        everConnected = true
        downSince = undefined
        return s
      } catch (err) {
        if (err instanceof RunAbort) throw err
        connections.failedAttempts++
        const why =
          err instanceof LmtpClientError ? `${server}: ${err.message}` : explainConnectError(o.target, err as NodeJS.ErrnoException)
        if (!everConnected) throw new RunAbort(why, EXIT.ioErr)
        downSince ??= Date.now()
        if (Date.now() - downSince >= reconnectFor) {
          throw new RunAbort(`${why}; gave up after ${Math.round(reconnectFor / 1000)}s of failed reconnects`, EXIT.ioErr)
        }
        await sleep(Math.min(2000, 50 * 2 ** Math.min(attempt, 6)), o.signal)
      }
    }
  }

  const recordResult = (item: ReplayItem, r: RecipientResult, overridden: boolean): void => {
    recipients.total++
    recipients[r.outcome]++
    const key = r.synthetic ? 'no reply (connection lost or timed out)' : `${r.code}${r.enhanced ? ` ${r.enhanced}` : ''}`
    codes.set(key, (codes.get(key) ?? 0) + 1)
    let change: OutcomeChange | undefined
    let recorded: RecordedRecipient | undefined
    if (compare && item.recorded) {
      recorded = overridden ? undefined : item.recorded[r.index]
      if (!recorded || recorded.code === undefined) compare.notComparable++
      else {
        compare.compared++
        const same =
          recorded.code === r.code && (recorded.enhanced === undefined || r.enhanced === undefined || recorded.enhanced === r.enhanced)
        if (same) compare.unchanged++
        else {
          compare.changed++
          change = {
            source: item.source,
            index: r.index,
            recipient: r.recipient,
            recorded: {code: recorded.code, enhanced: recorded.enhanced, text: recorded.text, outcome: recorded.outcome},
            now: {code: r.code, enhanced: r.enhanced, text: r.text, outcome: r.outcome},
          }
          if (compare.changes.length < MAX_CHANGES) compare.changes.push(change)
        }
      }
    }
    if (report && !reportError) {
      const line = {
        at: new Date().toISOString(),
        source: item.source,
        index: r.index,
        recipient: r.recipient,
        outcome: r.outcome,
        stage: r.stage,
        code: r.code,
        ...(r.enhanced ? {enhanced: r.enhanced} : {}),
        text: r.text,
        latencyMs: r.latencyMs,
        ...(r.synthetic ? {synthetic: true} : {}),
        ...(recorded ? {recorded: {code: recorded.code, enhanced: recorded.enhanced, outcome: recorded.outcome}, changed: change !== undefined} : {}),
      }
      report.write(`${JSON.stringify(line)}\n`)
    }
  }

  const recordTimings = (s: Session, result: TransactionResult, bodyEnd: number | undefined, bdat: boolean, verify: boolean): void => {
    const {commands, replies} = s.probe
    const mail = commands.findIndex((c) => c.verb === 'MAIL')
    if (mail < 0) return
    if (replies.length > 0 && result.mail.code > 0) latency.record('mail', replies[0]! - commands[mail]!.t)
    const rcpts = commands.filter((c) => c.verb === 'RCPT')
    rcpts.forEach((c, k) => {
      const r = result.recipients[k]
      if (r && !(r.stage === 'RCPT' && r.synthetic) && replies[1 + k] !== undefined) latency.record('rcpt', replies[1 + k]! - c.t)
    })
    const bodySent = bdat ? result.data === undefined : result.data?.code === 354
    if (!bodySent || result.violation) return
    const end = bdat ? [...commands].reverse().find((c) => c.verb === 'BDAT' && / LAST$/i.test(c.line))?.t : bodyEnd
    if (end === undefined) return
    const after = result.recipients.filter((r) => r.stage === 'DATA' && !r.synthetic).length
    const last = replies.length - (verify ? 1 : 0)
    for (let k = 0; k < after; k++) {
      const t = replies[last - after + k]
      if (t !== undefined && t >= end) latency.record('data', t - end)
    }
  }

  const sendOne = async (s: Session, item: ReplayItem, msg: OpenedMessage, due: number): Promise<void> => {
    const overridden = o.to !== undefined
    const to = o.to ?? msg.to
    const from = o.from ?? msg.from ?? ''
    const caps = s.caps
    const params: MailParams = {}
    const size = item.params?.size
    if (size !== undefined && caps.size !== undefined) params.size = size
    const wants8bit = item.kind === 'transcript' ? item.params?.body === '8BITMIME' : item.kind !== 'generated'
    if (wants8bit && caps.eightBitMime) params.body = '8BITMIME'
    if ((item.params?.smtputf8 || !isAscii(from) || !to.every(isAscii)) && caps.smtputf8) params.smtputf8 = true
    const bdat = o.bdat === true || (item.via === 'BDAT' && caps.chunking)
    const verify = s.sent === 0
    let bodyEnd: number | undefined
    // The client writes each pipelined group (MAIL, RCPTs, DATA) and a small body with its end mark in one write.
    async function* timed(): AsyncGenerator<Buffer> {
      for await (const b of msg.body) {
        bytes += b.length
        yield b
      }
      bodyEnd = performance.now()
    }
    s.probe.reset()
    let result: TransactionResult
    try {
      result = await s.client.send({
        from,
        to,
        params,
        body: timed(),
        bdat,
        pipelining: o.pipelining,
        pipelineData: true,
        verifyReplyCount: verify,
      })
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err)
      result = {
        mail: {code: 421, enhanced: '4.4.2', lines: [why]},
        recipients: to.map((recipient, index) => lostResult(index, recipient, 'RCPT', why)),
        bytes: 0,
        timings: {mailMs: 0, rcptMs: 0, dataMs: 0, deliveryMs: 0, totalMs: 0},
      }
      s.client.close()
    }
    s.sent++
    recordTimings(s, result, bodyEnd, bdat, verify)
    latency.record('message', performance.now() - due)
    if (result.violation) {
      violationCount++
      if (violations.length < 20) violations.push(`${item.source}: ${result.violation}`)
    }
    let outcome: Outcome = 'delivered'
    for (const r of result.recipients) {
      recordResult(item, r, overridden)
      if (r.outcome === 'rejected') outcome = 'rejected'
      else if (r.outcome === 'deferred' && outcome !== 'rejected') outcome = 'deferred'
    }
    messages.total++
    messages[outcome]++
    if (report && report.writableLength > 4 * 1024 * 1024) await new Promise<void>((r) => report!.once('drain', () => r()))
  }

  const worker = async (): Promise<void> => {
    let session: Session | undefined
    try {
      for (;;) {
        const ticket = await feed.take()
        if (!ticket) break
        const {item, seq} = ticket
        const due = dueAt(item, seq)
        // Timers may fire a little early: wait until the due time has really passed.
        for (let wait = due - performance.now(); wait > 0 && !o.signal?.aborted; wait = due - performance.now()) await sleep(wait, o.signal)
        if (o.signal?.aborted) break
        let msg: OpenedMessage
        try {
          msg = await item.open()
        } catch (err) {
          skipped++
          feed.problem(err instanceof InputError ? err.problem : {source: item.source, reason: String(err)})
          continue
        }
        try {
          const to = o.to ?? msg.to
          if (to.length === 0) {
            skipped++
            feed.problem({source: item.source, reason: 'no recipient: no Delivered-To, X-Original-To or To header (give --to)'})
            continue
          }
          if (!session || session.client.closed) {
            if (session) connections.lost++
            session = undefined
            try {
              session = await connect()
            } catch (err) {
              // This message cannot be sent: its recipients are deferred, and the run stops.
              abort ??= err instanceof RunAbort ? err : new RunAbort(String(err), EXIT.software)
              feed.stop()
              if (everConnected) {
                let first = true
                for (const [index, recipient] of to.entries()) {
                  recordResult(item, lostResult(index, recipient, 'RCPT', abort.message), o.to !== undefined)
                  if (first) {
                    messages.total++
                    messages.deferred++
                    first = false
                  }
                }
              }
              break
            }
          }
          started++
          lastStart = performance.now()
          await sendOne(session, item, msg, due)
          if (o.messagesPerConnection && session.sent >= o.messagesPerConnection && !session.client.closed) {
            await session.client.quit()
            session = undefined
          }
        } finally {
          await msg.close()
        }
      }
    } finally {
      if (session && !session.client.closed) await session.client.quit()
      else if (session) connections.lost++
    }
  }

  await Promise.all(Array.from({length: Math.max(1, o.concurrency)}, () => worker()))
  feed.stop()
  if (ticker) clearInterval(ticker)
  o.signal?.removeEventListener('abort', stopAll)
  if (report) await new Promise<void>((resolve) => report!.end(() => resolve()))
  const elapsedMs = Date.now() - t0
  progress(true)

  const secs = Math.max(elapsedMs, 1) / 1000
  const summary: ReplaySummary = {
    server,
    mode: o.rate ? 'open-loop' : o.originalTiming ? 'original-timing' : 'closed-loop',
    concurrency: o.concurrency,
    ...(o.rate ? {targetRate: o.rate} : {}),
    elapsedMs,
    messages,
    recipients,
    codes: [...codes.entries()].sort((a, b) => b[1] - a[1]).map(([reply, count]) => ({reply, count})),
    throughput: {
      // Over the span in which messages were started: the rate the server was actually offered.
      startedPerSec: started > 1 ? round(((started - 1) * 1000) / Math.max(lastStart - p0, 1)) : round(started / secs),
      messagesPerSec: round(messages.total / secs),
      recipientsPerSec: round(recipients.total / secs),
      bytesPerSec: Math.round(bytes / secs),
    },
    bytes,
    latency: latency.stats(),
    connections,
    input: {read: feed.read, skipped, ignoredFiles: feed.ignored, problems: feed.problems},
    ...(compare ? {compare} : {}),
    violations: {count: violationCount, first: violations},
    ...(abort ? {aborted: abort.message} : {}),
    ...(o.signal?.aborted ? {interrupted: true} : {}),
    exitCode: EXIT.ok,
  }
  // Problems found while reading are counted as skipped too.
  summary.input.skipped = feed.problemCount
  if (reportError) summary.aborted ??= `cannot write the report ${o.reportFile}: ${reportError.message}`
  summary.exitCode = abort ? abort.exitCode : reportError ? EXIT.ioErr : exitCodeOf(summary, o.generated === true)
  return summary
}

function round(n: number): number {
  return Math.round(n * 10) / 10
}

/**
 * The exit code of a run that was not abandoned (an abandoned run exits 74 when the server could not be
 * (re)connected, 69 when it lacks STARTTLS/CHUNKING that was asked for). Nothing to send: 66. With
 * --compare: 76 when any outcome changed or the server broke the protocol, else 0 (an unchanged 4xx/5xx is not
 * a failure of the check). Otherwise as for `send`: 76 protocol violation, 69 any rejected, 75 some deferred.
 */
export function exitCodeOf(s: ReplaySummary, generated: boolean): ExitCode {
  if (s.messages.total === 0 && !generated && !s.interrupted) return EXIT.noInput
  if (s.compare) return s.compare.changed > 0 || s.violations.count > 0 ? EXIT.protocol : EXIT.ok
  if (s.violations.count > 0) return EXIT.protocol
  if (s.recipients.rejected > 0) return EXIT.unavailable
  if (s.recipients.deferred > 0) return EXIT.tempFail
  return EXIT.ok
}
