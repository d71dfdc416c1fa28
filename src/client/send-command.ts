/**
 * What `lmtp send` does once its flags are parsed: checks them, sends the message, prints the result (a table,
 * or nothing for --json: the caller prints the returned report) and sets the exit code. Kept free of oclif so
 * that the start-up fast path in bin/run.js (src/client/send-fast.ts) can run it without loading oclif.
 */
import {readFile} from 'node:fs/promises'
import os from 'node:os'
import {CliError, EXIT} from '../cli/exit-codes.js'
import {type Target, TargetError, parseTarget} from '../net/target.js'
import {type MessageSource, MessageSourceError, fileSource, generatedSource, stdinSource} from './message-source.js'
import {addressProblem} from './preflight.js'
import {formatTranscriptLine, notes, renderPlain, renderTable, summaryLine} from './render.js'
import {type SendReport, type TranscriptLine, sendMessage} from './send-message.js'
import {sizeFlag} from '../cli/flag-values.js'

/** The parsed flags of `lmtp send` (as oclif gives them; defaults already applied). */
export interface SendFlags {
  to: string[]
  from?: string
  server: string
  lhlo?: string
  starttls?: boolean
  'tls-insecure'?: boolean
  'tls-ca'?: string
  bdat?: boolean
  'chunk-size'?: string
  pipelining: boolean
  timeout?: string
  transcript?: boolean
  size?: string
}

/** Runs `lmtp send` with parsed flags; throws CliError for usage and input errors (with their exit codes). */
export async function runSend(flags: SendFlags, file: string | undefined, json: boolean): Promise<SendReport> {
  const args = {file}
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

function secondsFlag(name: string, value: string): number {
  const n = Number(value)
  if (!/^\d+(\.\d+)?$/.test(value.trim()) || !(n > 0)) {
    throw new CliError(`${name} ${JSON.stringify(value)}: give a number of seconds greater than 0, e.g. 30 or 2.5`, EXIT.usage)
  }
  return Math.round(n * 1000)
}
