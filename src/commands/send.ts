import os from 'node:os'
import {readFile} from 'node:fs/promises'
import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base-command.js'
import {CliError, EXIT} from '../cli/exit-codes.js'
import {type MessageSource, MessageSourceError, fileSource, generatedSource, stdinSource} from '../client/message-source.js'
import {addressProblem} from '../client/preflight.js'
import {formatTranscriptLine, notes, renderPlain, renderTable, summaryLine} from '../client/render.js'
import {type SendReport, type TranscriptLine, sendMessage} from '../client/send-message.js'
import {type Target, TargetError, parseTarget} from '../net/target.js'
import {UnitSyntaxError, parseSize} from '../util/units.js'

/** `lmtp send`: deliver one message over LMTP and show each recipient's outcome, in RCPT order. */
export default class Send extends BaseCommand {
  static override summary = 'Send a message over LMTP and show every recipient\'s outcome'

  static override description = [
    'Delivers FILE (or - for stdin; without FILE, a generated test message) to every --to recipient in one LMTP transaction and reports one result per recipient, in RCPT order, duplicates kept: delivered (2xx), deferred (4xx) or rejected (5xx), with the stage (RCPT or DATA), the reply codes, the text and the latency.',
    'Before sending it checks what the server can take (8BITMIME, SMTPUTF8, SIZE), so nothing is ever half-sent.',
    'Exit codes: 0 all delivered; 75 some deferred, none rejected; 69 any rejected; 76 the server broke the protocol (e.g. too few replies after the body); 74 connection failed; 65 the message cannot be sent as it is; 66 FILE cannot be read; 64 usage.',
  ].join('\n\n')

  static override examples = [
    {description: 'A generated test message to two recipients', command: '<%= config.bin %> send --to alice@example.com,bob@example.com --server 127.0.0.1:2424'},
    {description: 'A message file over a Unix socket, with the dialogue', command: '<%= config.bin %> send message.eml --to alice@example.com --server unix:/run/dovecot/lmtp --transcript'},
    {description: 'From stdin, with STARTTLS and BDAT, as JSON', command: 'cat message.eml | <%= config.bin %> send - --to alice@example.com --starttls --tls-ca ca.pem --bdat --json'},
  ]

  static override args = {
    file: Args.string({description: 'message file, or - for stdin (default: a generated test message)', required: false}),
  }

  static override flags = {
    to: Flags.string({description: 'recipient (repeatable, also comma-separated); order and duplicates are kept', multiple: true, required: true}),
    from: Flags.string({description: "envelope sender (default lmtp@<this host>; '' sends <>)"}),
    server: Flags.string({description: 'HOST:PORT or unix:/path (port 25 is refused)', env: 'LMTP_SERVER', default: '127.0.0.1:24'}),
    lhlo: Flags.string({description: 'name to give in LHLO (default: this host\'s name)'}),
    starttls: Flags.boolean({description: 'require TLS: STARTTLS before sending, fail if the server does not offer it'}),
    'tls-insecure': Flags.boolean({description: 'do not verify the server\'s certificate', dependsOn: ['starttls']}),
    'tls-ca': Flags.string({description: 'verify the server\'s certificate with this CA file (PEM)', dependsOn: ['starttls']}),
    bdat: Flags.boolean({description: 'send the body with BDAT (CHUNKING); fails if the server does not offer it'}),
    'chunk-size': Flags.string({description: 'BDAT chunk size, e.g. 64K (default 1M)', hidden: true}),
    pipelining: Flags.boolean({description: 'pipeline commands when the server offers PIPELINING', allowNo: true, default: true}),
    timeout: Flags.string({description: 'seconds to wait for the connection and for each reply (default: RFC 5321\'s, 2-10 min)'}),
    transcript: Flags.boolean({description: 'show the dialogue: C:/S: lines with timings'}),
    size: Flags.string({description: 'pad the generated test message to this size, e.g. 100K (only without FILE)'}),
  }

  async run(): Promise<SendReport> {
    const {args, flags} = await this.parse(Send)
    const json = this.jsonEnabled()
    let target: Target
    try {
      target = parseTarget(flags.server)
    } catch (err) {
      if (err instanceof TargetError) throw new CliError(`--server ${err.message}`, EXIT.usage)
      throw err
    }
    const to = flags.to.flatMap((t) => t.split(',')).map((t) => t.trim()).filter((t) => t !== '')
    if (to.length === 0) throw new CliError('--to: give at least one recipient address', EXIT.usage)
    // A host name that cannot appear in LHLO or an address (rare, but possible) falls back to localhost.
    const hostname = /^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(os.hostname()) ? os.hostname() : 'localhost'
    const from = flags.from ?? `lmtp@${hostname}`
    const fromProblem = addressProblem(from, 'sender')
    if (fromProblem) throw new CliError(`--from: ${fromProblem}`, EXIT.usage)
    for (const t of to) {
      const problem = addressProblem(t, 'recipient')
      if (problem) throw new CliError(`--to: ${problem}`, EXIT.usage)
    }
    if (flags.size !== undefined && args.file !== undefined) {
      throw new CliError('--size pads the generated test message: use it without FILE', EXIT.usage)
    }
    const lhlo = flags.lhlo ?? hostname
    if (!/^[^\s<>\x00-\x1f\x7f]+$/.test(lhlo)) {
      throw new CliError(`--lhlo ${JSON.stringify(lhlo)}: give one word, a host name or an address literal such as [192.0.2.1]`, EXIT.usage)
    }
    const timeoutMs = flags.timeout === undefined ? undefined : secondsFlag('--timeout', flags.timeout)
    const chunkSize = flags['chunk-size'] === undefined ? undefined : sizeFlag('--chunk-size', flags['chunk-size'])
    if (chunkSize === 0) throw new CliError('--chunk-size must be at least 1 octet', EXIT.usage)
    let tlsCa: Buffer | undefined
    if (flags['tls-ca']) {
      try {
        tlsCa = await readFile(flags['tls-ca'])
      } catch (err) {
        throw new CliError(`cannot read the CA file ${flags['tls-ca']}: ${(err as Error).message}`, EXIT.noInput)
      }
    }

    let source: MessageSource
    try {
      if (args.file === undefined) {
        source = generatedSource({
          from: from || `lmtp@${hostname}`,
          to,
          hostname,
          size: flags.size === undefined ? undefined : sizeFlag('--size', flags.size),
        })
      } else if (args.file === '-') source = await stdinSource(process.stdin)
      else source = await fileSource(args.file)
    } catch (err) {
      if (err instanceof MessageSourceError) throw new CliError(err.message, EXIT.noInput)
      throw err
    }

    // Transcript: on stdout for a person, on stderr when stdout carries JSON.
    const transcriptOut = json ? process.stderr : process.stdout
    const trace = flags.transcript
      ? (line: TranscriptLine): void => {
          transcriptOut.write(`${formatTranscriptLine(line)}\n`)
        }
      : undefined
    const noColor = (process.env.NO_COLOR ?? '') !== ''
    const spinner =
      !json && !flags.transcript && process.stderr.isTTY
        ? (await import('ora')).default({stream: process.stderr, discardStdin: false, color: noColor ? false : 'cyan'})
        : undefined
    spinner?.start('starting')

    let report: SendReport
    try {
      report = await sendMessage({
        target,
        from,
        to,
        source,
        lhlo,
        starttls: flags.starttls,
        tlsInsecure: flags['tls-insecure'],
        tlsCa,
        bdat: flags.bdat,
        chunkSize,
        pipelining: flags.pipelining,
        timeoutMs,
        trace,
        onProgress: spinner ? (text) => (spinner.text = text) : undefined,
      })
    } finally {
      spinner?.stop()
      await source.dispose()
    }

    // oclif prints the returned report for --json; the exit code travels separately.
    process.exitCode = report.exitCode
    if (!json) {
      const out = process.stdout
      if (flags.transcript) out.write('\n')
      const body = out.isTTY
        ? await renderTable(report, {color: !noColor, width: out.columns ?? 100})
        : renderPlain(report)
      out.write(`${body}\n`)
      for (const n of notes(report)) out.write(`${n}\n`)
      out.write(`${summaryLine(report)}\n`)
    }
    return report
  }
}

function sizeFlag(name: string, value: string): number {
  try {
    return parseSize(value)
  } catch (err) {
    if (err instanceof UnitSyntaxError) throw new CliError(`${name} ${JSON.stringify(value)}: ${err.message}`, EXIT.usage)
    throw err
  }
}

function secondsFlag(name: string, value: string): number {
  const n = Number(value)
  if (!/^\d+(\.\d+)?$/.test(value.trim()) || !(n > 0)) {
    throw new CliError(`${name} ${JSON.stringify(value)}: give a number of seconds greater than 0, e.g. 30 or 2.5`, EXIT.usage)
  }
  return Math.round(n * 1000)
}
