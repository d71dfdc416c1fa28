/**
 * The result sink of a replay run: every finished message comes here once, with its recipients' results, and
 * is counted (messages, recipients, reply codes, violations), compared with its recording (--compare), written
 * to the per-recipient report (--report) and to the resume file (--resume). Phase latencies are recorded here
 * too. A fact is counted once, here; the summary and the progress line read it.
 */
import {createWriteStream, type WriteStream} from 'node:fs'
import type {RecipientResult} from '../protocol/client.js'
import type {Outcome} from '../protocol/events.js'
import {Comparison} from './compare.js'
import type {ReplayItem} from './item.js'
import {LatencyRecorder} from './latency.js'
import type {ResumeJournal} from './resume.js'
import type {CompareSummary, OutcomeCounts} from './summary.js'

/** What the sink writes to besides its counters. */
export interface SinkOptions {
  compare?: boolean
  /** NDJSON, one line per recipient result. */
  reportFile?: string
  journal?: ResumeJournal
}

/** One finished message as the sink takes it. */
export interface FinishedMessage {
  item: ReplayItem
  /** One result per recipient sent to, in RCPT order; `index` is the recipient's position in the source's envelope. */
  results: RecipientResult[]
  /** True when --to replaced the source's recipients (then nothing is compared). */
  overridden: boolean
  /** The server broke the protocol during this message. */
  violation?: string
  /** The --resume key, when --resume is on. */
  key?: string
}

const MAX_VIOLATIONS = 20

function emptyCounts(): OutcomeCounts {
  return {total: 0, delivered: 0, deferred: 0, rejected: 0}
}

/** Counts, compares and writes the results of one run. */
export class ResultSink {
  readonly latency = new LatencyRecorder()
  readonly messages = emptyCounts()
  readonly recipients = emptyCounts()
  /** Message octets sent. */
  bytes = 0
  /** Messages started, and when the last one was (performance.now()). */
  started = 0
  lastStart = 0
  private readonly codes = new Map<string, number>()
  private readonly violations: string[] = []
  private violationCount = 0
  private readonly comparison: Comparison | undefined
  private reportError: Error | undefined

  private constructor(
    private readonly report: WriteStream | undefined,
    private readonly o: SinkOptions,
  ) {
    this.comparison = o.compare ? new Comparison() : undefined
    report?.on('error', (err) => {
      this.reportError ??= err
    })
  }

  /** Opens the report file (when asked); rejects when it cannot be created. */
  static async open(o: SinkOptions): Promise<ResultSink> {
    let report: WriteStream | undefined
    if (o.reportFile) {
      const stream = createWriteStream(o.reportFile, {flags: 'w', mode: 0o600})
      await new Promise<void>((resolve, reject) => {
        stream.once('open', () => resolve())
        stream.once('error', reject)
      })
      report = stream
    }
    return new ResultSink(report, o)
  }

  /** Counts one finished message; waits when the report file is far behind. */
  async message(m: FinishedMessage): Promise<void> {
    if (m.violation) {
      this.violationCount++
      if (this.violations.length < MAX_VIOLATIONS) this.violations.push(`${m.item.source}: ${m.violation}`)
    }
    let outcome: Outcome = 'delivered'
    for (const r of m.results) {
      this.recipient(m, r)
      if (r.outcome === 'rejected') outcome = 'rejected'
      else if (r.outcome === 'deferred' && outcome !== 'rejected') outcome = 'deferred'
    }
    if (m.results.length > 0) {
      this.messages.total++
      this.messages[outcome]++
    }
    if (m.key !== undefined) {
      // Final answers only: a deferred or unanswered recipient is sent again by the next run.
      const done = m.results.filter((r) => !r.synthetic && r.outcome !== 'deferred').map((r) => r.index)
      this.o.journal?.record(m.key, m.item.source, done)
    }
    const report = this.report
    if (report && report.writableLength > 4 * 1024 * 1024) await new Promise<void>((r) => report.once('drain', () => r()))
  }

  private recipient(m: FinishedMessage, r: RecipientResult): void {
    this.recipients.total++
    this.recipients[r.outcome]++
    const key = r.synthetic ? 'no reply (connection lost or timed out)' : `${r.code}${r.enhanced ? ` ${r.enhanced}` : ''}`
    this.codes.set(key, (this.codes.get(key) ?? 0) + 1)
    const compared = this.comparison?.record(m.item, r, m.overridden)
    if (!this.report || this.reportError) return
    const line = {
      at: new Date().toISOString(),
      source: m.item.source,
      index: r.index,
      recipient: r.recipient,
      outcome: r.outcome,
      stage: r.stage,
      code: r.code,
      ...(r.enhanced ? {enhanced: r.enhanced} : {}),
      text: r.text,
      latencyMs: r.latencyMs,
      ...(r.synthetic ? {synthetic: true} : {}),
      ...(compared?.recorded
        ? {recorded: {code: compared.recorded.code, enhanced: compared.recorded.enhanced, outcome: compared.recorded.outcome}, changed: compared.changed}
        : {}),
    }
    this.report.write(`${JSON.stringify(line)}\n`)
  }

  /** Reply codes, most frequent first. */
  codeCounts(): {reply: string; count: number}[] {
    return [...this.codes.entries()].sort((a, b) => b[1] - a[1]).map(([reply, count]) => ({reply, count}))
  }

  /** The protocol violations seen: their count and the first ones. */
  violationSummary(): {count: number; first: string[]} {
    return {count: this.violationCount, first: this.violations}
  }

  /** The --compare result, when comparing. */
  compareSummary(): CompareSummary | undefined {
    return this.comparison?.summary()
  }

  /** Why the report or the resume file could not be written, if so. */
  writeError(): string | undefined {
    if (this.reportError) return `cannot write the report ${this.o.reportFile}: ${this.reportError.message}`
    const j = this.o.journal
    if (j?.error) return `cannot write the resume file ${j.file}: ${j.error.message}`
    return undefined
  }

  /** Flushes and closes the report and the resume file. */
  async close(): Promise<void> {
    const report = this.report
    if (report) await new Promise<void>((resolve) => report.end(() => resolve()))
    await this.o.journal?.close()
  }
}
