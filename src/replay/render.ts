/**
 * How a replay looks on a terminal: the final summary as aligned text, and a one-line progress bar (stderr,
 * TTY only) that redraws in place.
 */
import {formatSize} from '../util/units.js'
import type {ReplayProgress, ReplaySummary} from './driver.js'
import {PHASES} from './latency.js'

function pad(s: string | number, n: number): string {
  return String(s).padStart(n)
}

function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(2)} s` : `${(ms / 1000).toFixed(1)} s`
}

/** The summary as text (what `lmtp replay` prints without --json). */
export function renderSummary(s: ReplaySummary, options: {maxProblems?: number; maxChanges?: number} = {}): string {
  const out: string[] = []
  const mode = s.mode === 'open-loop' ? `open loop at ${s.targetRate}/s` : s.mode === 'original-timing' ? 'original timing' : 'closed loop'
  out.push(`lmtp replay -> ${s.server}: ${mode}, ${s.concurrency} session${s.concurrency === 1 ? '' : 's'}, ${s.messages.total} messages in ${seconds(s.elapsedMs)}`)
  const counts = (c: ReplaySummary['messages']): string =>
    `${pad(c.total, 8)}   delivered ${c.delivered}   deferred ${c.deferred}   rejected ${c.rejected}`
  out.push(`messages    ${counts(s.messages)}`)
  out.push(`recipients  ${counts(s.recipients)}`)
  if (s.codes.length > 0) out.push(`replies     ${s.codes.map((c) => `${c.reply} x${c.count}`).join(', ')}`)
  const t = s.throughput
  out.push(
    `throughput  ${t.messagesPerSec} msg/s, ${t.recipientsPerSec} rcpt/s, ${formatSize(t.bytesPerSec)}/s` +
      (s.targetRate ? ` (started ${t.startedPerSec}/s of ${s.targetRate}/s asked)` : ''),
  )
  out.push(`latency ms  ${['count', 'p50', 'p90', 'p99', 'p99.9', 'max'].map((h, i) => pad(h, i === 0 ? 8 : 9)).join('')}`)
  for (const p of PHASES) {
    const l = s.latency[p]
    if (l.count === 0) continue
    const name = p === 'data' ? 'data/rcpt' : p
    out.push(`  ${name.padEnd(10)}${pad(l.count, 8)}${[l.p50, l.p90, l.p99, l.p999, l.max].map((v) => pad(v.toFixed(3), 9)).join('')}`)
  }
  const c = s.connections
  out.push(`connections ${c.opened} opened, ${c.lost} lost, ${c.failedAttempts} failed attempts`)
  out.push(`input       ${s.input.read} read, ${s.input.skipped} skipped${s.input.ignoredFiles ? `, ${s.input.ignoredFiles} files ignored` : ''}`)
  for (const p of s.input.problems.slice(0, options.maxProblems ?? 20)) {
    out.push(`  skipped   ${p.source}${p.line === undefined ? '' : `:${p.line}`}: ${p.reason}`)
  }
  if (s.input.skipped > (options.maxProblems ?? 20) && s.input.problems.length > 0) out.push(`  ... (${s.input.skipped} in all; --report and --json list more)`)
  if (s.compare) {
    const k = s.compare
    out.push(`compare     ${k.compared} compared, ${k.unchanged} unchanged, ${k.changed} changed${k.notComparable ? `, ${k.notComparable} not comparable` : ''}`)
    // The same change for the same recipient is shown once, with a count and its first source.
    const groups = new Map<string, {line: string; source: string; n: number}>()
    for (const ch of k.changes) {
      const was = ch.recorded.code === undefined ? 'no outcome' : `${ch.recorded.code}${ch.recorded.enhanced ? ` ${ch.recorded.enhanced}` : ''}`
      const line = `${ch.recipient}: recorded ${was}, now ${ch.now.code}${ch.now.enhanced ? ` ${ch.now.enhanced}` : ''} ${ch.now.text}`
      const g = groups.get(line)
      if (g) g.n++
      else groups.set(line, {line, source: ch.source, n: 1})
    }
    for (const g of [...groups.values()].slice(0, options.maxChanges ?? 50)) {
      out.push(`  changed   ${g.line}${g.n > 1 ? ` (x${g.n}, first in ${g.source})` : ` (${g.source})`}`)
    }
    if (k.changed > k.changes.length) out.push(`  ... (${k.changed} changes in all; --report lists every one)`)
  }
  if (s.violations.count > 0) {
    out.push(`violations  ${s.violations.count}`)
    for (const v of s.violations.first) out.push(`  ${v}`)
  }
  if (s.interrupted) out.push('interrupted: stopped starting new messages')
  if (s.aborted) out.push(`stopped     ${s.aborted}`)
  return out.join('\n')
}

/** One progress line: `[#####-----] 512/1000 51% 830 msg/s ETA 0:01  ok 500 4xx 10 5xx 2 skipped 0`. */
export function progressLine(p: ReplayProgress, width = 24): string {
  const total = p.total
  const frac = total ? Math.min(1, p.done / total) : undefined
  const bar = frac === undefined ? '' : `[${'#'.repeat(Math.round(frac * width)).padEnd(width, '-')}] `
  const count = total ? `${p.done}/${total} ${Math.floor((frac ?? 0) * 100)}%` : `${p.done}`
  const eta = total && p.rate > 0 ? ` ETA ${clock(((total - p.done) / p.rate) * 1000)}` : ''
  return `${bar}${count} ${Math.round(p.rate)} msg/s${eta}  ok ${p.delivered} 4xx ${p.deferred} 5xx ${p.rejected}${p.skipped ? ` skipped ${p.skipped}` : ''}`
}

function clock(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const sec = String(s % 60).padStart(2, '0')
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`
}

/** A progress bar on a TTY stream (stderr); does nothing elsewhere. */
export class ProgressBar {
  private drawn = false

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {}

  /** True when the stream is a terminal. */
  get enabled(): boolean {
    return this.stream.isTTY === true
  }

  /** Draws (or clears, on the final snapshot). */
  update(p: ReplayProgress): void {
    if (!this.enabled) return
    if (p.final) {
      if (this.drawn) this.stream.write('\r\x1b[2K')
      this.drawn = false
      return
    }
    const cols = this.stream.columns ?? 100
    this.stream.write(`\r\x1b[2K${progressLine(p).slice(0, cols - 1)}`)
    this.drawn = true
  }
}
