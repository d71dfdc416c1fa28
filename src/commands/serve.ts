import cluster from 'node:cluster'
import os from 'node:os'
import {Flags, type Interfaces} from '@oclif/core'
import {BaseCommand} from '../cli/base-command.js'
import {CliError, EXIT} from '../cli/exit-codes.js'
import {runServer, type ServeOptions, type ServeSummary} from '../server/run-server.js'
import {chooseDefaultEventsPath} from '../server/event-feed.js'
import {type Target, TargetError, parseTarget} from '../net/target.js'
import {CidrList} from '../net/proxy-protocol.js'
import {DEFAULT_PROXY_TRUSTED} from '../server/proxy-accept.js'
import {runWorkers, type WorkerMessage, WorkersError} from '../server/workers.js'
import {createLogger} from '../server/logger.js'
import {drawLiveOnTerminal} from '../cli/terminal.js'
import {sizeFlag} from '../cli/flag-values.js'
import {
  type FlagShape,
  configFileArgument,
  flagsOnCommandLine,
  formatEffectiveConfig,
  locateConfigError,
  locateConfigMessage,
  readServeConfig,
} from '../cli/serve-config.js'
import {checkServeConfig} from '../server/check-config.js'

/** What `lmtp serve --check-config` returns (its --json output). */
export interface ConfigCheckResult {
  ok: boolean
  /** The effective configuration as TOML lines, flags that differ from their default (like `postconf -n`). */
  effective: string[]
  warnings: string[]
  /** Each problem, `FILE:LINE: ` first when it comes from the config file. */
  problems: string[]
}

/** The parsed flags of serve. */
type ServeFlags = Interfaces.InferredFlags<typeof Serve.flags>

/** Where serve listens when neither --listen nor systemd says. */
const DEFAULT_LISTEN = '127.0.0.1:24'

/** `lmtp serve`: an LMTP server delivering durably into Maildir. */
export default class Serve extends BaseCommand {
  static override summary = 'Run an LMTP server that delivers into Maildir, durably, with per-recipient replies'

  static override description = `Listens on every --listen target (TCP HOST:PORT or unix:/path) and delivers each accepted recipient into
DIR/<domain>/<local-part>/ (a standard Maildir: tmp, new, cur). A recipient gets its 250 only after its file and
directory are on disk (fsync). One recipient can fail (over quota, disk full) while the others are delivered.
Stops gracefully on SIGTERM/SIGINT: transactions in flight finish, idle sessions get 421 4.3.2.`

  static override examples = [
    {description: 'Quick start: deliver into ./Maildir on a high port', command: '<%= config.bin %> serve --maildir ./Maildir --listen 127.0.0.1:2424'},
    {
      description: 'Behind Postfix on a Unix socket, with a users file and a default quota',
      command: '<%= config.bin %> serve --maildir /var/mail/lmtp --listen unix:/run/lmtp/lmtp.sock --users /etc/lmtp/users --quota 500M',
    },
    {description: 'TCP with STARTTLS and JSON logs', command: '<%= config.bin %> serve --maildir ./Maildir --listen 0.0.0.0:24 --tls-cert cert.pem --tls-key key.pem --log-format json'},
  ]

  static override flags = {
    config: Flags.string({
      description: 'read flags from this TOML file (keys are the flag names: maildir = "/var/mail/vmail"); command-line flags win',
      helpValue: 'FILE',
    }),
    'check-config': Flags.boolean({
      description: 'check the configuration (files, certificate, users, Maildir permissions), print it as effective, and exit 0 or 78',
    }),
    maildir: Flags.string({description: 'Maildir root: mailboxes are DIR/<domain>/<local-part>/', default: './Maildir'}),
    listen: Flags.string({
      description: 'where to listen: HOST:PORT or unix:/path (repeatable; port 25 is refused) [default: 127.0.0.1:24, none when systemd passes sockets]',
      multiple: true,
    }),
    'proxy-listen': Flags.string({
      description: 'also listen here for connections that start with a PROXY protocol v1/v2 header (HAProxy send-proxy-v2): HOST:PORT or unix:/path (repeatable)',
      multiple: true,
      helpValue: 'TARGET',
    }),
    'proxy-protocol-from': Flags.string({
      description: 'networks trusted to send PROXY headers on --proxy-listen (comma-separated; others are refused)',
      default: DEFAULT_PROXY_TRUSTED.join(','),
      helpValue: 'CIDR,...',
    }),
    'socket-mode': Flags.string({description: 'permissions of Unix sockets (octal)', default: '0660'}),
    'socket-owner': Flags.string({description: 'owner of Unix sockets, e.g. postfix or postfix:postfix (needs root)', helpValue: 'USER[:GROUP]'}),
    user: Flags.string({description: 'when started as root: bind the listeners, then run as this user (e.g. vmail)', helpValue: 'NAME'}),
    group: Flags.string({description: 'with --user: run with this group (default: the user\'s primary group)', helpValue: 'NAME', dependsOn: ['user']}),
    hostname: Flags.string({description: 'name used in the greeting and Received headers (default: this machine\'s name)'}),
    users: Flags.string({description: 'accept only the recipients listed in this file (ADDRESS [quota=SIZE] per line)'}),
    quota: Flags.string({description: 'default per-mailbox quota, e.g. 500M (default: none)'}),
    'over-quota': Flags.string({
      description: 'reply when a mailbox is over quota after the body',
      options: ['temporary', 'permanent'],
      default: 'temporary',
    }),
    'check-quota-at-rcpt': Flags.boolean({description: 'also refuse at RCPT time when the mailbox is already full'}),
    'max-size': Flags.string({description: 'message size limit, advertised as SIZE', default: '50M'}),
    'max-recipients': Flags.integer({description: 'recipients per transaction (452 4.5.3 beyond it; at least 100)', default: 1000, min: 100}),
    'max-connections': Flags.integer({description: 'connections at once (421 4.7.0 beyond it)', default: 256, min: 1}),
    'idle-timeout': Flags.integer({description: 'seconds of silence before 421 4.4.2 and close', default: 300, min: 1}),
    'tls-cert': Flags.string({description: 'PEM certificate: enables STARTTLS on TCP listeners', dependsOn: ['tls-key']}),
    'tls-key': Flags.string({description: 'PEM private key for --tls-cert', dependsOn: ['tls-cert']}),
    'log-format': Flags.string({description: 'log lines as readable text or one JSON object per line', options: ['text', 'json'], default: 'text'}),
    record: Flags.string({
      description: 'record every session into DIR for `lmtp replay` (transcripts + bodies; keeps message contents, files 0600)',
      helpValue: 'DIR',
    }),
    events: Flags.string({
      description: 'publish live events for `lmtp watch` on this Unix socket (default: a per-user path, see lmtp watch)',
      helpValue: 'PATH',
    }),
    'no-events': Flags.boolean({description: 'do not publish the event feed', exclusive: ['events']}),
    tui: Flags.boolean({description: 'show the live dashboard (as lmtp watch) in this terminal; log lines go to its footer'}),
    workers: Flags.integer({
      description: 'worker processes sharing the listeners (cluster); they agree on quotas through a lock per mailbox',
      default: 1,
      min: 1,
      max: 256,
    }),
    metrics: Flags.string({
      description: 'serve Prometheus metrics (/metrics) and a health check (/healthz) over HTTP on HOST:PORT',
      helpValue: 'HOST:PORT',
    }),
    'shutdown-grace': Flags.integer({description: 'seconds to let transactions finish on SIGTERM/SIGINT', default: 30, min: 0}),
  }

  async run(): Promise<ServeSummary | ConfigCheckResult> {
    const onCommandLine = flagsOnCommandLine(this.argv)
    const configFile = configFileArgument(this.argv)
    const shapes = Serve.flags as unknown as Record<string, FlagShape>
    const fromFile = configFile ? await readServeConfig(configFile, shapes, onCommandLine) : {argv: [], origins: new Map<string, string>()}
    let flags: ServeFlags
    try {
      ;({flags} = await this.parse(Serve, [...fromFile.argv, ...this.argv]))
    } catch (err) {
      if (configFile && fromFile.argv.length > 0 && err instanceof Error) err.message += ` (some flags came from ${configFile})`
      throw err
    }
    let options: ServeOptions
    try {
      options = this.buildOptions(flags)
    } catch (err) {
      throw locateConfigError(err, fromFile.origins, onCommandLine)
    }
    if (flags['check-config']) {
      const report = await checkServeConfig(options)
      const result: ConfigCheckResult = {
        ok: report.problems.length === 0,
        effective: formatEffectiveConfig(flags, shapes),
        warnings: report.warnings,
        problems: report.problems.map((m) => locateConfigMessage(m, fromFile.origins, onCommandLine)),
      }
      if (!this.jsonEnabled()) {
        for (const line of result.effective) this.log(line)
        for (const w of result.warnings) this.logToStderr(`warning: ${w}`)
      }
      if (!result.ok) throw new CliError(result.problems.join('\n'), EXIT.config)
      if (!this.jsonEnabled()) this.logToStderr('lmtp serve: configuration OK')
      return result
    }
    return this.serve(flags, options)
  }

  private buildOptions(flags: ServeFlags): ServeOptions {
    const proxyListen = (flags['proxy-listen'] ?? []).map((t) => target('--proxy-listen', t))
    return {
      maildir: flags.maildir,
      listen: (flags.listen ?? (process.env.LISTEN_FDS || proxyListen.length > 0 ? [] : [DEFAULT_LISTEN])).map((t) => target('--listen', t)),
      proxy: proxyListen.length > 0 ? {listen: proxyListen, trusted: trustedNetworks(flags['proxy-protocol-from'])} : undefined,
      socketMode: parseMode(flags['socket-mode']),
      socketOwner: flags['socket-owner'],
      user: flags.user,
      group: flags.group,
      hostname: flags.hostname ?? os.hostname(),
      usersFile: flags.users,
      quota: flags.quota === undefined ? undefined : sizeFlag('--quota', flags.quota),
      overQuota: flags['over-quota'] as 'temporary' | 'permanent',
      checkQuotaAtRcpt: flags['check-quota-at-rcpt'],
      maxSize: sizeFlag('--max-size', flags['max-size']),
      maxRecipients: flags['max-recipients'],
      maxConnections: flags['max-connections'],
      idleTimeoutMs: flags['idle-timeout'] * 1000,
      tlsFiles: flags['tls-cert'] && flags['tls-key'] ? {cert: flags['tls-cert'], key: flags['tls-key']} : undefined,
      logFormat: flags['log-format'] as 'text' | 'json',
      shutdownGraceMs: flags['shutdown-grace'] * 1000,
      record: flags.record,
      metrics: flags.metrics === undefined ? undefined : parseMetricsTarget(flags.metrics),
      // With --json the final summary owns stdout; log lines go to stderr.
      log: this.jsonEnabled() ? (line) => process.stderr.write(`${line}\n`) : (line) => process.stdout.write(`${line}\n`),
    }
  }

  private async serve(flags: ServeFlags, options: ServeOptions): Promise<ServeSummary> {
    if (flags.workers > 1 && cluster.isPrimary) return this.superviseWorkers(flags, options)
    if (cluster.isWorker) {
      // One of `serve --workers N`: an ordinary serve on the primary's shared listeners, without a feed of its own.
      options.worker = {send: (m) => process.send?.(m)}
      const summary = await runServer(options)
      process.send?.({type: 'lmtp-serve-summary', summary} satisfies WorkerMessage)
      cluster.worker?.disconnect()
      return summary
    }
    if (!flags['no-events'] && !cluster.isWorker) {
      options.events = flags.events ? {path: flags.events, isDefault: false} : {path: chooseDefaultEventsPath(), isDefault: true}
    }
    if (flags.tui) {
      if (process.stdout.isTTY !== true) throw new CliError('--tui needs a terminal: run it in one, or use lmtp watch from another', EXIT.usage)
      // Ink and React load only here, so a plain `serve` starts fast.
      drawLiveOnTerminal()
      const {startServeTui} = await import('../ui/serve-tui.js')
      const tui = startServeTui({hostname: options.hostname})
      const before = options.onReady
      options.log = tui.log
      options.until = tui.until
      options.onReady = (server, bus, control) => {
        before?.(server, bus, control)
        tui.onReady(server, bus)
      }
    }
    return runServer(options)
  }

  /** The primary of `serve --workers N` (see src/server/workers.ts): forks, supervises, stops, sums up. */
  private async superviseWorkers(flags: ServeFlags, options: ServeOptions): Promise<ServeSummary> {
    // --metrics: each worker would bind the same port, and the primary has no metrics of its own yet.
    for (const f of ['tui', 'record', 'events', 'user', 'check-config', 'metrics'] as const) {
      if (flags[f]) throw new CliError(`--${f} cannot be combined with --workers ${flags.workers} yet: leave one of them out`, EXIT.usage)
    }
    if (process.env.LISTEN_FDS) throw new CliError('--workers cannot share sockets passed by systemd: use --listen, or --workers 1', EXIT.usage)
    const logger = createLogger(options.logFormat, options.log)
    try {
      return await runWorkers({
        workers: flags.workers,
        maildir: options.maildir,
        targets: [...options.listen, ...(options.proxy?.listen ?? [])],
        args: [this.id ?? 'serve', ...this.argv.filter((a) => a !== '--json')],
        workerStdout: this.jsonEnabled() ? 2 : 1,
        shutdownGraceMs: options.shutdownGraceMs,
        log: (level, message, fields = {}) => logger.say(level, message, fields),
      })
    } catch (err) {
      if (err instanceof WorkersError) throw new CliError(err.message, EXIT.unavailable)
      throw err
    }
  }
}

function target(flag: string, text: string): Target {
  try {
    return parseTarget(text)
  } catch (err) {
    if (err instanceof TargetError) throw new CliError(`${flag} ${err.message}`, EXIT.usage)
    throw err
  }
}

function trustedNetworks(text: string): CidrList {
  try {
    return new CidrList(text.split(',').filter((x) => x.trim() !== ''))
  } catch (err) {
    throw new CliError(`--proxy-protocol-from: ${(err as Error).message}`, EXIT.usage)
  }
}

function parseMetricsTarget(text: string): {host: string; port: number} {
  const t = target('--metrics', text)
  if (t.kind === 'tcp') return {host: t.host, port: t.port}
  throw new CliError(`--metrics ${text}: metrics are served over HTTP on TCP: write HOST:PORT, e.g. 127.0.0.1:9124`, EXIT.usage)
}

function parseMode(text: string): number {
  if (!/^0?[0-7]{3}$/.test(text)) throw new CliError(`--socket-mode ${text}: write an octal mode such as 0660`, EXIT.usage)
  return Number.parseInt(text, 8)
}
