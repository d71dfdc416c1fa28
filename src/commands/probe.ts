import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base-command.js'
import {connectionFlags, connectionSettings, timeoutFlag} from '../cli/connection-flags.js'
import {CliError, EXIT} from '../cli/exit-codes.js'
import {type Target, TargetError} from '../net/target.js'
import {renderPlain, renderReport} from '../probe/render.js'
import {CHECK_IDS, DEFAULT_PROBE_TIMEOUT_MS, runProbe} from '../probe/runner.js'
import {summaryLine, summaryStatus} from '../probe/summary.js'
import {parseProbeTarget} from '../probe/target.js'
import type {ProbeReport} from '../probe/types.js'

/** `lmtp probe`: diagnose an LMTP server and check it against RFC 2033 and friends. */
export default class Probe extends BaseCommand {
  static override summary = 'Diagnose an LMTP server: capabilities, TLS, AUTH, latency and an RFC conformance checklist'

  static override description = `Connects to TARGET (HOST:PORT or unix:/path) and reports the connect time, the greeting, every LHLO
capability explained, TLS (protocol, cipher, certificate, expiry, whether it verifies), AUTH and the latency of
each command; then runs a conformance checklist, each check marked pass, warn (a SHOULD, or a common deviation)
or fail (a MUST), with the RFC section and what was seen. On a terminal the report is tables; piped, it is plain
lines (one per check: STATUS  ID  title (RFC): what was seen).

Non-destructive by default: no message body is sent; envelope checks use MAIL FROM:<> and RCPT TO:<postmaster>
(or the first --deliver-to) and end with RSET. With --deliver-to (real mailboxes) it also sends test messages:
one reply per recipient with a duplicate, dot-stuffing, BDAT, and SMTP smuggling; a vulnerable server really
delivers the forged message (its Subject says so).

A server that requires LMTP AUTH is named by the "auth" check; with --auth USER every session authenticates.
Port 25 is refused (LMTP must never run there); --allow-port-25 probes it anyway and reports it as a failure.

Check ids for --only and --skip: ${CHECK_IDS.join(', ')}.

Exit codes: 0 no failure; 76 at least one conformance failure; 69 unreachable (connection failed, or the
greeting was not 220); 64 usage. With --summary, the Nagios plugin codes instead: 0 OK, 1 WARNING (a warn, no
fail), 2 CRITICAL (a fail, or unreachable); usage errors stay 64.`

  static override examples = [
    {description: 'Check a local Dovecot LMTP listener', command: '<%= config.bin %> probe 127.0.0.1:24'},
    {description: 'Also deliver test messages to a real mailbox', command: '<%= config.bin %> probe unix:/run/dovecot/lmtp --deliver-to postmaster@example.com'},
    {description: 'Only the smuggling checks, one line for cron or Nagios', command: '<%= config.bin %> probe 127.0.0.1:24 --deliver-to postmaster@example.com --only smuggling-lf-dot-lf,smuggling-crlf-dot-lf,smuggling-lf-dot-crlf --summary'},
    {description: 'A server that requires AUTH (Cyrus lmtpd without -a)', command: 'LMTP_AUTH_PASSWORD=secret <%= config.bin %> probe 127.0.0.1:2003 --auth lmtpuser'},
    {description: 'Inspect TLS and run the checks over it, as JSON', command: '<%= config.bin %> probe mx.internal:24 --starttls --json'},
  ]

  static override args = {
    target: Args.string({description: 'HOST:PORT (default port 24) or unix:/path', required: true}),
  }

  static override flags = {
    help: Flags.help({char: 'h'}),
    ...connectionFlags,
    'tls-insecure': Flags.boolean({description: 'accept a certificate that does not verify (a warning instead of a failure)'}),
    timeout: timeoutFlag(`${DEFAULT_PROBE_TIMEOUT_MS / 1000}s`),
    'deliver-to': Flags.string({description: 'a real mailbox for the checks that deliver test messages (repeatable, also comma-separated)', multiple: true}),
    only: Flags.string({description: 'run only these checks (ids, repeatable, also comma-separated)', multiple: true, helpValue: 'ID'}),
    skip: Flags.string({description: 'leave out these checks (ids, repeatable, also comma-separated)', multiple: true, helpValue: 'ID'}),
    summary: Flags.boolean({description: 'print one line (LMTP OK|WARNING|CRITICAL - ...) and exit 0/1/2 as a Nagios plugin'}),
    'allow-port-25': Flags.boolean({description: 'probe a server on port 25 anyway (to diagnose it; reported as a failure)'}),
  }

  async run(): Promise<ProbeReport> {
    const {args, flags} = await this.parse(Probe)
    let target: Target
    try {
      target = parseProbeTarget(args.target, flags['allow-port-25'])
    } catch (err) {
      if (err instanceof TargetError) {
        const hint = /port 25/.test(err.message) ? ' (to diagnose a server wrongly listening there, add --allow-port-25)' : ''
        throw new CliError(`${err.message}${hint}`, EXIT.usage)
      }
      throw err
    }
    const deliverTo = list(flags['deliver-to'])
    for (const a of deliverTo) {
      if (/[<>\s]/.test(a) || !a.includes('@')) throw new CliError(`--deliver-to ${JSON.stringify(a)}: give a mailbox address such as alice@example.com, without <>`, EXIT.usage)
    }
    const checks = selectChecks(list(flags.only), list(flags.skip))
    const settings = await connectionSettings(flags, target)

    const json = this.jsonEnabled()
    if (json && flags.summary) throw new CliError('--summary and --json cannot be used together: --summary prints one line, --json the whole report', EXIT.usage)
    const progress = !json && !flags.summary && process.stderr.isTTY
    const report = await runProbe({
      target,
      starttls: settings.starttls,
      tlsInsecure: settings.tlsInsecure,
      tlsCa: settings.tlsCa,
      auth: settings.auth,
      deliverTo,
      timeoutMs: settings.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS,
      lhloName: settings.lhloName,
      checks,
      onCheck: progress ? (c) => process.stderr.write(`\r\x1b[K${c.status} ${c.id}`) : undefined,
    })
    if (progress) process.stderr.write('\r\x1b[K')
    // oclif prints the returned report for --json; the exit code travels separately.
    process.exitCode = report.exitCode
    if (flags.summary) {
      process.exitCode = summaryStatus(report).exitCode
      process.stdout.write(`${summaryLine(report)}\n`)
    } else if (!json) {
      const out = process.stdout
      const color = (process.env.NO_COLOR ?? '') === '' && process.env.TERM !== 'dumb'
      out.write(out.isTTY ? renderReport(report, {color, width: out.columns ?? 100}) : renderPlain(report))
    }
    return report
  }
}

/** Repeatable, comma-separated flag values as one list. */
function list(values: string[] | undefined): string[] {
  return (values ?? []).flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '')
}

/** The check ids to run from --only and --skip; an unknown id is a usage error that lists the ids. */
export function selectChecks(only: string[], skip: string[]): string[] | undefined {
  const unknown = [...only, ...skip].filter((id) => !CHECK_IDS.includes(id))
  if (unknown.length > 0) {
    throw new CliError(`unknown check id${unknown.length > 1 ? 's' : ''} ${unknown.map((id) => JSON.stringify(id)).join(', ')}: the ids are ${CHECK_IDS.join(', ')}`, EXIT.usage)
  }
  if (only.length === 0 && skip.length === 0) return undefined
  const base = only.length > 0 ? CHECK_IDS.filter((id) => only.includes(id)) : CHECK_IDS
  return base.filter((id) => !skip.includes(id))
}
