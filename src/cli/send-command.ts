/**
 * What `lmtp send` does once its flags are parsed: checks them, sends the message, prints the result (a table,
 * or nothing for --json: the caller prints the returned report) and sets the exit code. Kept free of oclif's
 * framework so that the start-up fast path in bin/run.js (send-fast.ts) can run it without loading oclif.
 */
import {addressProblem} from '../client/preflight.js'
import {type MessageSource, MessageSourceError, fileSource, generatedSource, stdinSource} from '../client/message-source.js'
import {formatTranscriptLine, notes, renderPlain, renderTable, summaryLine} from '../client/render.js'
import {type SendReport, SendError, type TranscriptLine, sendMessage} from '../client/send-message.js'
import {type ConnectionFlagValues, connectionSettings, localHostName, targetFlag} from './connection-flags.js'
import {CliError, EXIT} from './exit-codes.js'
import {sizeFlag} from './flag-values.js'

/** The parsed flags of `lmtp send` (as oclif gives them; defaults already applied). */
export interface SendFlags extends ConnectionFlagValues {
  to: string[]
  from?: string
  server: string
  bdat?: boolean
  'chunk-size'?: string
  pipelining: boolean
  transcript?: boolean
  size?: string
}

/** Runs `lmtp send` with parsed flags; throws CliError for usage and input errors (with their exit codes). */
export async function runSend(flags: SendFlags, file: string | undefined, json: boolean): Promise<SendReport> {
  const args = {file}
    const target = targetFlag('--server', flags.server)
    const to = flags.to.flatMap((t) => t.split(',')).map((t) => t.trim()).filter((t) => t !== '')
    if (to.length === 0) throw new CliError('--to: give at least one recipient address', EXIT.usage)
    // A host name that cannot appear in LHLO or an address (rare, but possible) falls back to localhost.
    const hostname = localHostName()
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
    const connection = await connectionSettings(flags, target)
    const chunkSize = flags['chunk-size'] === undefined ? undefined : sizeFlag('--chunk-size', flags['chunk-size'])
    if (chunkSize === 0) throw new CliError('--chunk-size must be at least 1 octet', EXIT.usage)

    let source: MessageSource
    try {
      if (args.file === undefined) {
        source = generatedSource({
          from: from || `lmtp@${hostname}`,
          to,
          hostname,
          size: flags.size === undefined ? undefined : sizeFlag('--size', flags.size),
        })
      } else if (args.file === '-') {
        // On a terminal, reading stdin looks like a hang: say what is going on and how to end it.
        if (process.stdin.isTTY) process.stderr.write('lmtp send: reading the message from standard input (end it with Ctrl-D on a line of its own)\n')
        source = await stdinSource(process.stdin)
      }
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

    // Ctrl-C after the end of the message was sent: the server may already have delivered, so say that each
    // recipient's outcome is unknown instead of vanishing silently.
    let bodySent = false
    const onInterrupt = (): void => {
      spinner?.stop()
      process.stderr.write(`${interruptedMessage(to, bodySent)}\n`)
      process.exit(EXIT.interrupted)
    }
    process.once('SIGINT', onInterrupt)
    let report: SendReport
    try {
      report = await sendMessage({
        target,
        from,
        to,
        source,
        lhlo: connection.lhloName,
        starttls: connection.starttls,
        tlsInsecure: connection.tlsInsecure,
        tlsCa: connection.tlsCa,
        auth: connection.auth,
        bdat: flags.bdat,
        chunkSize,
        pipelining: flags.pipelining,
        timeoutMs: connection.timeoutMs,
        trace,
        onProgress: spinner ? (text) => (spinner.text = text) : undefined,
        onBodySent: () => {
          bodySent = true
        },
      })
    } catch (err) {
      if (err instanceof SendError) throw new CliError(err.message, err.exitCode)
      throw err
    } finally {
      process.off('SIGINT', onInterrupt)
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

/** What to say on Ctrl-C: before the end of the message nothing was delivered; after it, every outcome is unknown. */
export function interruptedMessage(to: readonly string[], bodySent: boolean): string {
  if (!bodySent) return 'lmtp send: interrupted before the end of the message was sent: nothing was delivered (exit 130)'
  return [
    'lmtp send: interrupted after the message was sent, before every per-recipient reply came: the server may have delivered.',
    ...to.map((r, i) => `  ${i + 1}  ${r}  outcome unknown`),
    'Check the mailboxes or the server log before sending again (exit 130).',
  ].join('\n')
}
