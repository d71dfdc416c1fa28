import {stat} from 'node:fs/promises'
import {Args, Flags, type Interfaces} from '@oclif/core'
import {BaseCommand} from '../cli/base-command.js'
import {connectionFlags, connectionSettings, localHostName, serverFlag, targetFlag, timeoutFlag} from '../cli/connection-flags.js'
import {CliError, EXIT} from '../cli/exit-codes.js'
import {durationFlag, sizeFlag} from '../cli/flag-values.js'
import {uniformTimeouts} from '../protocol/client.js'
import {type ReplayOptions, runReplay} from '../replay/driver.js'
import {generateMessages} from '../replay/generate.js'
import {ProgressBar, renderSummary} from '../replay/render.js'
import {ResumeFileError, ResumeJournal} from '../replay/resume.js'
import {SOURCE_FORMATS, type SourceFormat, readSources} from '../replay/sources.js'
import type {ReplaySummary} from '../replay/summary.js'

/** `lmtp replay`: replay recorded sessions or a mail corpus into an LMTP server, or generate load. */
export default class Replay extends BaseCommand {
  static override summary = 'Replay recorded sessions or a mail corpus into an LMTP server, compare outcomes, or generate load'

  static override description = `SOURCE may be any mix of recorded transcripts (from \`lmtp serve --record DIR\`: the directory or single
.jsonl files), Maildirs (or a tree of them), mbox files (mboxrd), directories of .eml files and single messages.
The kind is detected (--format forces it). Sources are read as a stream: sending starts while they are scanned.
Without --to/--from, transcripts keep their recorded envelope and corpus messages are sent to Delivered-To, else
X-Original-To, else To, from Return-Path (else the mbox From_ sender, else From); those trace fields at the top
of a stored message are left out when it is sent (the server adds its own; --keep-trace-headers keeps them).
--generate SIZE sends generated messages of about SIZE instead (load mode; --count defaults to 1000).

Bad input never stops the run: an unreadable file, a broken mbox separator or a message without headers is
reported with its file (and line) and skipped (exit 65 at the end). A server that goes away mid-run: the
recipients in flight are deferred and the workers reconnect with backoff (for --reconnect-for, then the run stops
with exit 74). A server that allows one transaction per session (a 503 to the second MAIL): the message is sent
again on a fresh session, and from then on each message gets its own session. Ctrl-C stops starting messages;
those in flight finish (exit 130). --resume FILE records what was sent, so that a second run with the same FILE
sends only the rest.

Exit codes, first match: 66 nothing to send (no input, or every item was bad); 74 the connection failed (69 the
server lacks STARTTLS/CHUNKING/AUTH asked for, 78 AUTH refused or required: the run stops at once); 130 interrupted (Ctrl-C) before all input was
sent; 76 the server broke the protocol (or, with --compare, a recipient's outcome changed from the recording);
69 a recipient was rejected (not with --compare); 65 an input item was unreadable or corrupt and was not sent;
75 a recipient was deferred; 0 otherwise. 64 usage.`

  static override usage = ['<%= command.id %> SOURCE... [--server HOST:PORT] [FLAGS]', '<%= command.id %> --generate SIZE --to ADDR [--server HOST:PORT] [FLAGS]']

  static override examples = [
    {description: 'Record on one server (leave it running while mail arrives; Ctrl-C stops it)', command: '<%= config.bin %> serve --record ./rec --listen 127.0.0.1:2424'},
    {description: 'Replay the recording into another server and compare the outcomes', command: '<%= config.bin %> replay ./rec --server 127.0.0.1:2525 --compare'},
    {description: 'Push a Maildir tree into Dovecot, 8 sessions at once, to a test user', command: '<%= config.bin %> replay /srv/mail/old --server unix:/run/dovecot/lmtp --concurrency 8 --to test@example.com'},
    {description: 'A migration that can be interrupted and run again: what was sent is not sent twice', command: '<%= config.bin %> replay /srv/mail/old --server 127.0.0.1:2424 --resume migration.resume'},
    {description: 'Load: 1 KB messages, 16 sessions, 30 seconds', command: '<%= config.bin %> replay --generate 1K --to sink@example.com --concurrency 16 --duration 30s --server 127.0.0.1:2424'},
    {description: 'Open loop at 200 messages/s with a per-recipient report', command: '<%= config.bin %> replay archive.mbox --rate 200 --concurrency 32 --report results.ndjson --server 127.0.0.1:2424'},
  ]

  static override strict = false

  static override args = {
    source: Args.string({description: 'transcripts (a file or a directory), a Maildir or a tree of them, an mbox file, a directory of .eml files or a message file; several may be given'}),
  }

  static override flags = {
    server: serverFlag,
    ...connectionFlags,
    'tls-insecure': {...connectionFlags['tls-insecure'], dependsOn: ['starttls']},
    'tls-ca': {...connectionFlags['tls-ca'], dependsOn: ['starttls']},
    timeout: timeoutFlag('60s'),
    format: Flags.string({description: 'how to read every SOURCE', options: [...SOURCE_FORMATS], default: 'auto'}),
    generate: Flags.string({description: 'send generated messages of about this size (e.g. 1K) instead of SOURCEs', helpValue: 'SIZE'}),
    to: Flags.string({description: 'recipient for every message (repeatable, also comma-separated), replacing the source\'s', multiple: true}),
    from: Flags.string({description: "envelope sender for every message ('' sends <>), replacing the source's"}),
    concurrency: Flags.integer({description: 'parallel sessions', default: 1, min: 1, max: 10_000}),
    'messages-per-connection': Flags.integer({description: 'QUIT and reconnect after this many messages (default: one session per worker for the whole run)', min: 1}),
    rate: Flags.string({description: 'open loop: start this many messages per second, latency measured from each intended start'}),
    timing: Flags.string({description: 'original: replay transcripts with their recorded gaps (scaled by --speed)', options: ['original']}),
    speed: Flags.string({description: 'with --timing original: play this many times faster', default: '1'}),
    count: Flags.integer({description: 'send at most this many messages (with --loop: exactly this many)', min: 1}),
    duration: Flags.string({description: 'stop starting messages after this long, e.g. 30s, 5m'}),
    loop: Flags.boolean({description: 'repeat the sources until --count or --duration (or Ctrl-C)'}),
    bdat: Flags.boolean({description: 'send every body with BDAT (CHUNKING); transcripts recorded with BDAT use it anyway when offered'}),
    pipelining: Flags.boolean({description: 'pipeline MAIL and RCPTs when the server offers PIPELINING', allowNo: true, default: true}),
    compare: Flags.boolean({description: 'transcripts: report every recipient whose outcome differs from the recording (exit 76 if any)'}),
    report: Flags.string({description: 'write one JSON line per recipient result to FILE', helpValue: 'FILE'}),
    resume: Flags.string({
      description: 'record what was sent in FILE (appended as results come); a run with the same FILE skips what it lists: recipients delivered or rejected, not those deferred',
      helpValue: 'FILE',
    }),
    'reconnect-for': Flags.string({description: 'keep reconnecting to a server that went away for this long (0s: never reconnect)', default: '30s'}),
    'keep-trace-headers': Flags.boolean({
      description: 'corpus: keep the Return-Path / Delivered-To / X-Original-To fields at the top of each message (by default they are left out: the server adds its own)',
    }),
    progress: Flags.boolean({description: 'show a progress bar on stderr (default: when stderr is a terminal)', allowNo: true}),
  }

  async run(): Promise<ReplaySummary> {
    const {flags, argv} = await this.parse(Replay)
    const target = targetFlag('--server', flags.server)
    const plan = await planRun(flags, argv as string[])
    const connection = await connectionSettings(flags, target)
    const journal = flags.resume === undefined ? undefined : await openJournal(flags.resume)
    const bar = new ProgressBar()
    const showProgress = flags.progress ?? bar.enabled
    const controller = new AbortController()
    const onSigint = (): void => controller.abort()
    process.once('SIGINT', onSigint)
    let summary: ReplaySummary
    try {
      summary = await runReplay({
        ...plan,
        target,
        concurrency: flags.concurrency,
        messagesPerConnection: flags['messages-per-connection'],
        loop: flags.loop,
        bdat: flags.bdat,
        pipelining: flags.pipelining,
        starttls: connection.starttls,
        tlsInsecure: connection.tlsInsecure,
        tlsCa: connection.tlsCa,
        auth: connection.auth,
        compare: flags.compare,
        reportFile: flags.report,
        journal,
        lhloName: connection.lhloName,
        timeouts: uniformTimeouts(connection.timeoutMs ?? 60_000),
        onProgress: showProgress ? (p) => bar.update(p) : undefined,
        signal: controller.signal,
      })
    } catch (err) {
      const e = err as NodeJS.ErrnoException
      if (flags.report && e.path === flags.report) throw new CliError(`cannot write the report ${flags.report}: ${e.message}`, EXIT.ioErr)
      throw err
    } finally {
      process.off('SIGINT', onSigint)
      await journal?.close()
    }
    if (!this.jsonEnabled()) this.log(renderSummary(summary))
    if (summary.aborted) this.logToStderr(`lmtp: ${summary.aborted}`)
    // oclif prints the returned summary for --json; the exit code travels separately.
    process.exitCode = summary.exitCode
    return summary
  }
}

/** What to send and when, from the flags and SOURCEs; every usage error is found here, before anything is sent. */
async function planRun(
  flags: Interfaces.InferredFlags<typeof Replay.flags>,
  sources: string[],
): Promise<Pick<ReplayOptions, 'input' | 'generated' | 'from' | 'to' | 'rate' | 'originalTiming' | 'speed' | 'count' | 'durationMs' | 'reconnectForMs'>> {
  const to = flags.to?.flatMap((t) => t.split(',')).map((t) => t.trim()).filter((t) => t !== '')
  const generateSize = flags.generate === undefined ? undefined : sizeFlag('--generate', flags.generate)
  if (generateSize !== undefined) {
    if (sources.length > 0) throw new CliError('give either SOURCEs or --generate, not both', EXIT.usage)
    if (!to || to.length === 0) throw new CliError('--generate needs --to ADDR: who receives the generated messages', EXIT.usage)
    if (generateSize < 1) throw new CliError('--generate SIZE must be at least 1 byte', EXIT.usage)
  } else if (sources.length === 0) {
    throw new CliError('give at least one SOURCE (transcripts, Maildir, mbox, .eml files), or --generate SIZE for load', EXIT.usage)
  }
  if (flags.compare && flags.to) throw new CliError('--compare needs the recorded envelope: drop --to', EXIT.usage)
  if (flags.rate && flags.timing) throw new CliError('--rate and --timing original exclude each other', EXIT.usage)
  if (flags.resume && (generateSize !== undefined || flags.loop)) {
    throw new CliError('--resume keeps track of SOURCE messages sent once: it cannot be used with --generate or --loop', EXIT.usage)
  }
  const durationMs = flags.duration === undefined ? undefined : durationFlag('--duration', flags.duration)
  if (flags.loop && flags.count === undefined && durationMs === undefined) {
    throw new CliError('--loop needs --count N or --duration T to know when to stop', EXIT.usage)
  }
  const timing = {
    rate: flags.rate === undefined ? undefined : positive('--rate', flags.rate),
    originalTiming: flags.timing === 'original',
    speed: positive('--speed', flags.speed),
    durationMs,
    reconnectForMs: durationFlag('--reconnect-for', flags['reconnect-for'], {allowZero: true}),
  }
  const envelope = {to: to && to.length > 0 ? to : undefined}
  if (generateSize !== undefined) {
    const from = flags.from ?? `lmtp-replay@${localHostName()}`
    return {
      ...timing,
      ...envelope,
      from,
      generated: true,
      input: () => generateMessages({size: generateSize, from, to: to!}),
      count: flags.count ?? (durationMs === undefined ? 1000 : undefined),
    }
  }
  for (const s of sources) {
    try {
      await stat(s)
    } catch (err) {
      throw new CliError(`cannot read SOURCE ${s}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (err as Error).message}`, EXIT.noInput)
    }
  }
  const format = flags.format as SourceFormat
  return {...timing, ...envelope, from: flags.from, input: () => readSources(sources, {format, keepTrace: flags['keep-trace-headers']}), count: flags.count}
}

async function openJournal(file: string): Promise<ResumeJournal> {
  try {
    return await ResumeJournal.open(file)
  } catch (err) {
    if (!(err instanceof ResumeFileError)) throw err
    throw new CliError(`--resume: ${err.message}`, err.kind === 'not-resume' ? EXIT.usage : err.kind === 'unreadable' ? EXIT.noInput : EXIT.ioErr)
  }
}

function positive(flag: string, text: string): number {
  const n = Number(text)
  if (!Number.isFinite(n) || n <= 0) throw new CliError(`${flag} ${JSON.stringify(text)}: give a number greater than 0`, EXIT.usage)
  return n
}
