/**
 * The one-line summary of a probe for cron and monitoring (`lmtp probe --summary`): the Nagios plugin
 * convention, a status word, a short text and performance data after `|`, with the plugin exit codes, so
 * Nagios, Icinga, Zabbix and a cron job's `|| mail` all read it without a wrapper.
 */
import type {ProbeReport} from './types.js'

/** Exit codes of --summary (Nagios plugin API): 0 OK, 1 WARNING, 2 CRITICAL. Usage errors stay 64. */
export const SUMMARY_EXIT = {ok: 0, warning: 1, critical: 2} as const

/** The status word and exit code of a report: CRITICAL for a failed check or an unreachable server. */
export function summaryStatus(report: Pick<ProbeReport, 'reachable' | 'summary'>): {word: 'OK' | 'WARNING' | 'CRITICAL'; exitCode: 0 | 1 | 2} {
  if (!report.reachable || report.summary.fail > 0) return {word: 'CRITICAL', exitCode: SUMMARY_EXIT.critical}
  if (report.summary.warn > 0) return {word: 'WARNING', exitCode: SUMMARY_EXIT.warning}
  return {word: 'OK', exitCode: SUMMARY_EXIT.ok}
}

/**
 * One line, e.g. `LMTP CRITICAL - 127.0.0.1:24: 3 fail (smuggling-lf-dot-lf, ...), 1 warn (mail-before-lhlo)
 * | time=0.412s pass=18 warn=1 fail=3 skip=2`.
 */
export function summaryLine(report: ProbeReport): string {
  const {word} = summaryStatus(report)
  const seconds = (report.durationMs / 1000).toFixed(3)
  if (!report.reachable) return `LMTP ${word} - ${report.target} unreachable: ${report.error ?? 'unknown error'} | time=${seconds}s`
  const s = report.summary
  const ids = (status: 'fail' | 'warn'): string[] => report.checks.filter((c) => c.status === status).map((c) => c.id)
  const parts: string[] = []
  if (s.fail > 0) parts.push(`${s.fail} fail (${ids('fail').join(', ')})`)
  if (s.warn > 0) parts.push(`${s.warn} warn (${ids('warn').join(', ')})`)
  if (report.speaks === 'smtp') parts.unshift('an SMTP server, not LMTP')
  const text = parts.length > 0 ? parts.join(', ') : `${s.pass} checks pass`
  return `LMTP ${word} - ${report.target}: ${text} | time=${seconds}s pass=${s.pass} warn=${s.warn} fail=${s.fail} skip=${s.skip}`
}
