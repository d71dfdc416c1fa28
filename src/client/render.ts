/**
 * How `lmtp send` shows its report: a table on a terminal (colour unless NO_COLOR), plain aligned text
 * otherwise (pipes, logs, CI), a one-line summary, and transcript lines. Pure functions from a report to
 * text, so tests read exactly what a person sees. cli-table3 and chalk are imported lazily: only the terminal
 * table needs them.
 */
import type {RecipientResult} from '../protocol/client.js'
import {formatSize} from '../util/units.js'
import type {SendReport, TranscriptLine} from './send-message.js'

/** The columns, in order: one row per recipient, in RCPT order. */
export const COLUMNS = ['#', 'recipient', 'outcome', 'stage', 'code', 'enhanced', 'text', 'ms'] as const

/** A recipient result as table cells (strings), in COLUMNS order. A result the server never sent shows no code. */
export function rowCells(r: RecipientResult): string[] {
  return [
    String(r.index + 1),
    r.recipient,
    r.outcome,
    r.stage,
    r.synthetic ? '-' : String(r.code),
    r.synthetic ? '-' : (r.enhanced ?? ''),
    r.synthetic ? `no reply: ${r.text}` : r.text,
    String(r.latencyMs),
  ]
}

/** The rows as plain text: a header, then columns padded to line up (no colour, no borders). */
export function renderPlain(report: SendReport): string {
  const rows = [COLUMNS.map((c) => c.toUpperCase()), ...report.recipients.map(rowCells)]
  const widths = COLUMNS.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  const right = new Set([0, 4, 7])
  return rows
    .map((cells) =>
      cells
        .map((c, i) => {
          if (i === cells.length - 1) return right.has(i) ? c.padStart(widths[i]!) : c
          return right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)
        })
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
}

/** Options of the terminal table. */
export interface TableOptions {
  /** Use colour (false when NO_COLOR is set or the output is not a terminal). */
  color: boolean
  /** Terminal width in columns. */
  width: number
}

/** The rows as a bordered table for a terminal; outcome and code coloured when `color`. */
export async function renderTable(report: SendReport, options: TableOptions): Promise<string> {
  const [{default: Table}, {Chalk}] = await Promise.all([import('cli-table3'), import('chalk')])
  const chalk = new Chalk({level: options.color ? 1 : 0})
  const paint = (outcome: RecipientResult['outcome'], text: string): string =>
    outcome === 'delivered' ? chalk.green(text) : outcome === 'deferred' ? chalk.yellow(text) : chalk.red(text)
  const cells = report.recipients.map(rowCells)
  // Fixed columns get what they need; recipient and text share the rest (each cell adds 2 padding + 1 border).
  const need = (i: number): number => Math.max(COLUMNS[i]!.length, ...cells.map((c) => c[i]!.length)) + 2
  const fixed = [0, 2, 3, 4, 5, 7].reduce((sum, i) => sum + need(i), 0) + COLUMNS.length + 1
  const room = Math.max(28, options.width - fixed)
  const recipientWidth = Math.min(need(1), Math.max(14, Math.floor(room * 0.45)))
  const textWidth = Math.max(14, Math.min(need(6), room - recipientWidth))
  const table = new Table({
    head: COLUMNS.map((c) => chalk.bold(c)),
    colWidths: [need(0), recipientWidth, need(2), need(3), need(4), need(5), textWidth, need(7)],
    colAligns: ['right', 'left', 'left', 'left', 'right', 'left', 'left', 'right'],
    wordWrap: true,
    style: {head: [], border: [], compact: true},
  })
  report.recipients.forEach((r, k) => {
    const c = cells[k]!
    // Wrap rather than truncate: a recipient or a reply must never be cut short with an ellipsis.
    table.push([
      c[0],
      {content: c[1], wrapOnWordBoundary: false},
      paint(r.outcome, c[2]!),
      c[3],
      paint(r.outcome, c[4]!),
      c[5],
      breakLongWords(c[6]!, textWidth - 2),
      c[7],
    ])
  })
  return table.toString()
}

/** Splits words longer than `width` so that word wrapping can break them instead of truncating them. */
function breakLongWords(text: string, width: number): string {
  if (width < 1) return text
  return text
    .split(' ')
    .map((w) => (w.length <= width ? w : (w.match(new RegExp(`.{1,${width}}`, 'gu')) ?? [w]).join(' ')))
    .join(' ')
}

/** The one-line summary: counts, server, method, size, time, exit code. */
export function summaryLine(report: SendReport): string {
  const s = report.summary
  const parts = [`${s.delivered} delivered`]
  if (s.deferred > 0) parts.push(`${s.deferred} deferred`)
  if (s.rejected > 0) parts.push(`${s.rejected} rejected`)
  const how = [report.method, report.pipelined ? 'pipelined' : 'not pipelined']
  if (report.tls) how.push(`${report.tls.protocol}${report.tls.verified ? '' : ' unverified'}`)
  return `${s.total} recipient${s.total === 1 ? '' : 's'}: ${parts.join(', ')} — ${report.server} (${how.join(', ')}), ${formatSize(report.message.size)} in ${report.timings.totalMs} ms, exit ${report.exitCode}`
}

/** Lines to show above the summary when something needs explaining (a protocol violation, a refused sender). */
export function notes(report: SendReport): string[] {
  const out: string[] = []
  if (report.violation) out.push(`protocol violation by the server: ${report.violation}`)
  if (report.mail.code !== 250 && report.mail.code !== 0) {
    out.push(`the server refused the sender: ${report.mail.code} ${report.mail.enhanced ?? ''} ${report.mail.text}`.replace(/ +/g, ' '))
  }
  if (report.authRequired) out.push(report.authRequired)
  if (report.recipients.some((r) => r.synthetic)) {
    out.push('recipients marked "no reply" got no answer from the server: they count as deferred (try again later)')
  }
  return out
}

/** A transcript line: elapsed time, direction, text (e.g. `   12 ms  C: MAIL FROM:<a@example.com> SIZE=312`). */
export function formatTranscriptLine(line: TranscriptLine): string {
  const dir = line.direction === '*' ? '--' : `${line.direction}:`
  return `${String(line.ms).padStart(6)} ms  ${dir} ${line.text}`
}
