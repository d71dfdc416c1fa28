/**
 * The probe report for a person: the session facts, the capabilities explained, TLS, latency, and the
 * checklist, as tables. Colour only when asked (the command decides from the TTY and NO_COLOR).
 */
import {Chalk, type ChalkInstance} from 'chalk'
import Table from 'cli-table3'
import type {CheckStatus, ProbeReport} from './types.js'

/** How to render. */
export interface RenderOptions {
  /** Use ANSI colours. */
  color: boolean
  /** Terminal width in columns (default 100). */
  width?: number
}

const MARK: Record<CheckStatus, string> = {pass: 'pass', warn: 'WARN', fail: 'FAIL', skip: 'skip'}

function paint(c: ChalkInstance, s: CheckStatus): (t: string) => string {
  switch (s) {
    case 'pass':
      return c.green
    case 'warn':
      return c.yellow
    case 'fail':
      return c.red.bold
    case 'skip':
      return c.dim
  }
}

/** Row separators only where cells wrap over several lines (the checklist); the others stay compact. */
const COMPACT = {mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': ''}

function table(head: string[], colWidths: number[], c: ChalkInstance, compact = true): Table.Table {
  return new Table({
    ...(compact ? {chars: COMPACT} : {}),
    head: head.map((h) => c.bold(h)),
    colWidths,
    wordWrap: true,
    wrapOnWordBoundary: true,
    style: {head: [], border: [], 'padding-left': 1, 'padding-right': 1},
  })
}

const ms = (n: number | undefined): string => (n === undefined ? '-' : `${n} ms`)

/** The lines above the tables: target, connection, greeting, LHLO; or why it is unreachable. */
function headLines(report: ProbeReport, c: ChalkInstance): string[] {
  const out = [c.bold(`lmtp probe ${report.target}`)]
  if (!report.reachable) {
    out.push(c.red(`unreachable: ${report.error ?? 'unknown error'}`))
    if (report.greeting) out.push(`greeting: ${report.greeting.code} ${report.greeting.text}`)
    out.push(`exit ${report.exitCode}`)
    return out
  }
  const g = report.greeting!
  out.push(`connected in ${ms(report.connectMs)}; greeting ${g.code} in ${ms(g.ms)}: ${g.text}`)
  if (report.lhlo) out.push(`LHLO ${report.lhlo.name}: ${report.lhlo.serverName} answered in ${ms(report.lhlo.ms)}`)
  for (const t of report.lhlo?.freeText ?? []) out.push(`LHLO free text (not a capability): ${t}`)
  if (report.auth?.user) out.push(`authenticated as ${report.auth.user}`)
  return out
}

/** The TLS facts, one per line. */
function tlsLines(report: ProbeReport, c: ChalkInstance): string[] {
  const t = report.tls
  if (!t) return []
  if (!t.offered) return ['TLS: STARTTLS not offered']
  if (!t.established) return [c.red(`TLS: STARTTLS offered, upgrade failed: ${t.error ?? 'unknown error'}`)]
  const v = t.verified ? c.green('yes') : c.yellow(`no (${t.verifyError ?? 'unknown'})`)
  const rows: [string, string][] = [
    ['protocol', `${t.protocol ?? '?'}, ${t.cipher ?? '?'} (handshake ${ms(t.handshakeMs)})`],
    ['subject', t.subject ?? '-'],
    ['issuer', t.issuer ?? '-'],
    ['names', t.altNames && t.altNames.length > 0 ? t.altNames.join(', ') : '-'],
    ['expires', t.validTo ? `${t.validTo.slice(0, 10)} (in ${t.daysToExpiry} days)` : '-'],
    ['verifies', v],
  ]
  return rows.map(([k, val]) => `TLS ${k.padEnd(9)} ${val}`)
}

/** The last line: counts, time and what the exit code means. */
function totalsLine(report: ProbeReport, c: ChalkInstance): string {
  const s = report.summary
  const verdictLine =
    report.exitCode === 0
      ? c.green(`no conformance failure (exit 0)`)
      : c.red.bold(`${s.fail} conformance failure${s.fail === 1 ? '' : 's'} (exit ${report.exitCode})`)
  return `${s.pass} pass, ${s.warn} warn, ${s.fail} fail, ${s.skip} skip in ${report.durationMs} ms: ${verdictLine}`
}

/** Renders the whole report as text for a terminal (several tables and a summary line). */
export function renderReport(report: ProbeReport, options: RenderOptions): string {
  const c = new Chalk({level: options.color ? 1 : 0})
  const width = Math.max(72, Math.min(options.width ?? 100, 160))
  const out = headLines(report, c)
  if (!report.reachable) return `${out.join('\n')}\n`
  if (report.lhlo) {
    const caps = table(['capability', 'meaning'], [24, width - 27], c)
    for (const cap of report.lhlo.capabilities) caps.push([cap.params ? `${cap.keyword} ${cap.params}` : cap.keyword, cap.meaning])
    out.push('', caps.toString())
  }
  const tls = tlsLines(report, c)
  if (tls.length > 0) out.push('', ...tls)
  if (report.latency.length > 0) {
    const lat = table(['command', 'reply', 'time'], [34, width - 50, 12], c)
    for (const l of report.latency) lat.push([l.command, l.reply, ms(l.ms)])
    out.push('', lat.toString())
  }
  const checks = table(['', 'check', 'RFC', 'what was seen'], [6, 30, 16, width - 57], c, false)
  for (const ch of report.checks) {
    const p = paint(c, ch.status)
    checks.push([p(MARK[ch.status]), ch.title, ch.rfc, ch.detail])
  }
  out.push('', checks.toString(), totalsLine(report, c))
  return `${out.join('\n')}\n`
}

/**
 * Renders the report as plain lines for pipes, logs and CI: no borders, no colour, one line per capability,
 * per command and per check (`FAIL  helo-refused  HELO not accepted (RFC 2033 §4.1): ...`), so grep and awk
 * work on it.
 */
export function renderPlain(report: ProbeReport): string {
  const c = new Chalk({level: 0})
  const out = headLines(report, c)
  if (!report.reachable) return `${out.join('\n')}\n`
  for (const cap of report.lhlo?.capabilities ?? []) out.push(`capability ${cap.params ? `${cap.keyword} ${cap.params}` : cap.keyword}: ${cap.meaning}`)
  out.push(...tlsLines(report, c))
  for (const l of report.latency) out.push(`latency ${l.command}${l.reply ? ` -> ${l.reply}` : ''} (${ms(l.ms)})`)
  const idWidth = Math.max(0, ...report.checks.map((ch) => ch.id.length))
  for (const ch of report.checks) out.push(`${MARK[ch.status]}  ${ch.id.padEnd(idWidth)}  ${ch.title} (${ch.rfc}): ${ch.detail}`)
  out.push(totalsLine(report, c))
  return `${out.join('\n')}\n`
}
