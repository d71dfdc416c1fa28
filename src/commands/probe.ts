import os from 'node:os'
import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base-command.js'
import {CliError, EXIT} from '../cli/exit-codes.js'
import {type Target, TargetError} from '../net/target.js'
import {renderReport} from '../probe/render.js'
import {DEFAULT_PROBE_TIMEOUT_MS, runProbe} from '../probe/runner.js'
import {parseProbeTarget} from '../probe/target.js'
import type {ProbeReport} from '../probe/types.js'

/** `lmtp probe`: diagnose an LMTP server and check it against RFC 2033 and friends. */
export default class Probe extends BaseCommand {
  static override summary = 'Diagnose an LMTP server: capabilities, TLS, latency and an RFC conformance checklist'

  static override description = `Connects to TARGET (HOST:PORT or unix:/path) and reports the connect time, the greeting, every LHLO
capability explained, TLS (protocol, cipher, certificate, expiry, whether it verifies) and the latency of each
command; then runs a conformance checklist, each check marked pass, warn (a SHOULD, or a common deviation) or
fail (a MUST), with the RFC section and what was seen.

Non-destructive by default: no message body is sent; envelope checks use MAIL FROM:<> and RCPT TO:<postmaster>
(or the first --deliver-to) and end with RSET. With --deliver-to (real mailboxes) it also sends test messages:
one reply per recipient with a duplicate, dot-stuffing, BDAT, and SMTP smuggling; a vulnerable server really
delivers the forged message (its Subject says so).

Port 25 is refused (LMTP must never run there); --allow-port-25 probes it anyway and reports it as a failure.

Exit codes: 0 no failure; 76 at least one conformance failure; 69 unreachable (connection failed, or the
greeting was not 220); 64 usage.`

  static override examples = [
    {description: 'Check a local Dovecot LMTP listener', command: '<%= config.bin %> probe 127.0.0.1:24'},
    {description: 'Also deliver test messages to a real mailbox', command: '<%= config.bin %> probe unix:/run/dovecot/lmtp --deliver-to postmaster@example.com'},
    {description: 'Inspect TLS and run the checks over it, as JSON', command: '<%= config.bin %> probe mx.internal:24 --starttls --json'},
  ]

  static override args = {
    target: Args.string({description: 'HOST:PORT (default port 24) or unix:/path', required: true}),
  }

  static override flags = {
    starttls: Flags.boolean({description: 'require TLS: upgrade with STARTTLS and run the checks over it'}),
    'tls-insecure': Flags.boolean({description: 'accept a certificate that does not verify (a warning instead of a failure)'}),
    'deliver-to': Flags.string({description: 'a real mailbox for the checks that deliver test messages (repeatable, also comma-separated)', multiple: true}),
    timeout: Flags.string({description: `seconds to wait for the connection and each reply (default ${DEFAULT_PROBE_TIMEOUT_MS / 1000})`}),
    lhlo: Flags.string({description: "name to give in LHLO (default: this host's name)"}),
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
    const deliverTo = (flags['deliver-to'] ?? []).flatMap((a) => a.split(',')).map((a) => a.trim()).filter((a) => a !== '')
    for (const a of deliverTo) {
      if (/[<>\s]/.test(a) || !a.includes('@')) throw new CliError(`--deliver-to ${JSON.stringify(a)}: give a mailbox address such as alice@example.com, without <>`, EXIT.usage)
    }
    const timeoutMs = flags.timeout === undefined ? DEFAULT_PROBE_TIMEOUT_MS : secondsFlag('--timeout', flags.timeout)
    const lhloName = flags.lhlo ?? os.hostname()
    if (!/^[^\s<>]+$/.test(lhloName)) throw new CliError(`--lhlo ${JSON.stringify(lhloName)}: give one word, a domain name or an address literal`, EXIT.usage)

    const json = this.jsonEnabled()
    const progress = !json && process.stderr.isTTY
    const report = await runProbe({
      target,
      starttls: flags.starttls,
      tlsInsecure: flags['tls-insecure'],
      deliverTo,
      timeoutMs,
      lhloName,
      onCheck: progress ? (c) => process.stderr.write(`\r\x1b[K${c.status} ${c.id}`) : undefined,
    })
    if (progress) process.stderr.write('\r\x1b[K')
    // oclif prints the returned report for --json; the exit code travels separately.
    process.exitCode = report.exitCode
    if (!json) {
      const color = process.stdout.isTTY === true && (process.env.NO_COLOR ?? '') === '' && process.env.TERM !== 'dumb'
      process.stdout.write(renderReport(report, {color, width: process.stdout.columns ?? 100}))
    }
    return report
  }
}

function secondsFlag(name: string, value: string): number {
  const n = Number(value)
  if (!/^\d+(\.\d+)?$/.test(value.trim()) || !(n > 0)) {
    throw new CliError(`${name} ${JSON.stringify(value)}: give a number of seconds greater than 0, e.g. 10 or 2.5`, EXIT.usage)
  }
  return Math.round(n * 1000)
}
