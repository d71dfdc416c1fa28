/**
 * How a replay looks on a terminal: the final summary as aligned text, and a one-line progress bar (stderr,
 * TTY only) that redraws in place.
 */
import {formatSize} from '../util/units.js'
import {groupHeading} from './compare.js'
import {PHASES} from './latency.js'
import type {ChangeGroup, CompareSummary, ReplayProgress, ReplaySummary} from './summary.js'

/** Groups of changes shown by default, and recipients (or domains) shown per group. */
const MAX_GROUPS = 20
const MAX_NAMES = 5

function pad(s: string | number, n: number): string {
  return String(s).padStart(n)
}

function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(2)} s` : `${(ms / 1000).toFixed(1)} s`
}

/** The summary as text (what `lmtp replay` prints without --json). */
export function renderSummary(s: ReplaySummary, options: {maxProblems?: number; maxGroups?: number} = {}): string {
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
  out.push(
    `connections ${c.opened} opened, ${c.closed} closed by replay, ${c.lost} lost${c.dropped ? `, ${c.dropped} dropped (protocol violation)` : ''}, ${c.failedAttempts} failed attempts`,
  )
  if (s.oneTransactionPerSession) out.push(`            ${s.oneTransactionPerSession}`)
  const notMail = s.input.notMail ? ` (${s.input.notMail} without mail to send)` : ''
  out.push(`input       ${s.input.read} read, ${s.input.skipped} skipped${notMail}${s.input.ignoredFiles ? `, ${s.input.ignoredFiles} files ignored` : ''}`)
  for (const p of s.input.problems.slice(0, options.maxProblems ?? 20)) {
    out.push(`  skipped   ${p.source}${p.line === undefined ? '' : `:${p.line}`}: ${p.reason}`)
  }
  if (s.input.skipped > (options.maxProblems ?? 20) && s.input.problems.length > 0) out.push(`  ... (${s.input.skipped} in all; --report and --json list more)`)
  if (s.compare) out.push(...renderCompare(s.compare, options.maxGroups ?? MAX_GROUPS))
  if (s.violations.count > 0) {
    out.push(`violations  ${s.violations.count}`)
    for (const v of s.violations.first) out.push(`  ${v}`)
  }
  if (s.resume) {
    const r = s.resume
    out.push(`resume      ${r.file}: ${r.alreadyDone} messages and ${r.recipientsAlreadyDone} recipients already done in earlier runs, not sent again`)
  }
  if (s.interrupted) out.push('interrupted: stopped starting new messages; the rest of the input was not sent (--resume FILE goes on where a run stopped)')
  if (s.aborted) out.push(`stopped     ${s.aborted}`)
  return out.join('\n')
}

/** The --compare lines: totals, then one line per group of identical changes, and what was left out. */
export function renderCompare(k: CompareSummary, maxGroups: number): string[] {
  const out = [`compare     ${k.compared} compared, ${k.unchanged} unchanged, ${k.changed} changed${k.notComparable ? `, ${k.notComparable} not comparable` : ''}`]
  const shown = k.groups.slice(0, maxGroups)
  for (const g of shown) {
    const text = g.now.text ? ` "${g.now.text}"` : ''
    out.push(`  changed   ${groupHeading(g)}${text}: ${g.count} change${g.count === 1 ? '' : 's'}, ${g.recipientCount} recipient${g.recipientCount === 1 ? '' : 's'} (first in ${g.firstSource})`)
    out.push(`              ${whoChanged(g)}`)
  }
  const hidden = k.groups.slice(maxGroups)
  if (hidden.length > 0) {
    const n = hidden.reduce((sum, g) => sum + g.count, 0)
    out.push(`  ... ${hidden.length} more group${hidden.length === 1 ? '' : 's'} (${n} change${n === 1 ? '' : 's'}) not shown: --json lists every group, --report FILE every change`)
  }
  return out
}

/** The recipients of a group (the most frequent first), or their domains when there are many. */
function whoChanged(g: ChangeGroup): string {
  let names = g.recipients.map((r) => ({name: r.recipient, count: r.count}))
  let total = g.recipientCount
  let unit = 'recipient'
  let note = ''
  if (g.recipientCount > MAX_NAMES) {
    const domains = new Map<string, number>()
    for (const r of g.recipients) {
      const d = `@${r.recipient.slice(r.recipient.lastIndexOf('@') + 1)}`
      domains.set(d, (domains.get(d) ?? 0) + r.count)
    }
    names = [...domains.entries()].sort((a, b) => b[1] - a[1]).map(([name, count]) => ({name, count}))
    total = names.length
    unit = 'domain'
    if (g.recipients.length < g.recipientCount) note = ` (domains of the first ${g.recipients.length} recipients)`
  }
  const listed = names.slice(0, MAX_NAMES).map((n) => `${n.name} x${n.count}`)
  const more = total - listed.length
  return `${listed.join(', ')}${more > 0 ? `, and ${more} more ${unit}${more === 1 ? '' : 's'}` : ''}${note}`
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
