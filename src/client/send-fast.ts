/**
 * The start-up fast path of `lmtp send` (used by bin/run.js): loading oclif (its parser alone pulls in its
 * error, help and logging modules) and its configuration costs more than the whole delivery, and makes a
 * one-shot `lmtp send` several times slower than swaks. For the plain, common command lines this reads the
 * flags itself and runs the same code as the oclif command (runSend), with the same output, JSON and exit codes.
 * Anything it does not fully understand (--help, an unknown or repeated flag, a value that looks like a flag,
 * TLS options, a FILE right after --to values, ...) is left to oclif: it returns false before doing anything.
 */
import {CliError} from '../cli/exit-codes.js'
import {type SendFlags, runSend} from './send-command.js'

/** Flags that take a value (--to may repeat). */
const VALUE_FLAGS = new Set(['to', 'from', 'server', 'lhlo', 'timeout', 'size'])
/** Boolean flags handled here (no `--no-` form except --no-pipelining). */
const BOOLEAN_FLAGS = new Set(['transcript', 'bdat', 'json'])

/** What the fast path understood of a command line, or undefined when oclif must handle it. */
export interface FastSendArgs {
  flags: SendFlags
  file: string | undefined
  json: boolean
}

/** Reads `lmtp send` arguments (after the word `send`) the way oclif would, or returns undefined. */
export function parseSendArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): FastSendArgs | undefined {
  const to: string[] = []
  const values = new Map<string, string>()
  const booleans = new Set<string>()
  let pipelining: boolean | undefined
  let file: string | undefined
  // oclif gives a repeatable flag every following word until the next flag: such a word is left to oclif.
  let afterTo = false
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === '-' || !a.startsWith('-')) {
      if (afterTo || file !== undefined) return undefined
      file = a
      continue
    }
    afterTo = false
    if (!a.startsWith('--') || a === '--') return undefined
    let name = a.slice(2)
    let value: string | undefined
    const eq = name.indexOf('=')
    if (eq >= 0) {
      value = name.slice(eq + 1)
      name = name.slice(0, eq)
      if (value === '') return undefined
    }
    if (VALUE_FLAGS.has(name)) {
      if (value === undefined) {
        value = argv[++i]
        if (value === undefined || value.startsWith('-')) return undefined
      }
      if (name === 'to') {
        to.push(value)
        afterTo = true
      } else {
        if (values.has(name)) return undefined
        values.set(name, value)
      }
    } else if (BOOLEAN_FLAGS.has(name) && value === undefined) {
      if (booleans.has(name)) return undefined
      booleans.add(name)
    } else if ((name === 'pipelining' || name === 'no-pipelining') && value === undefined) {
      if (pipelining !== undefined) return undefined
      pipelining = name === 'pipelining'
    } else return undefined
  }
  if (to.length === 0) return undefined
  const flags: SendFlags = {
    to,
    server: values.get('server') ?? (env.LMTP_SERVER ? env.LMTP_SERVER : '127.0.0.1:24'),
    pipelining: pipelining ?? true,
    bdat: booleans.has('bdat'),
    transcript: booleans.has('transcript'),
    starttls: false,
    'tls-insecure': false,
  }
  for (const name of ['from', 'lhlo', 'timeout', 'size'] as const) {
    const v = values.get(name)
    if (v !== undefined) flags[name] = v
  }
  return {flags, file, json: booleans.has('json')}
}

/**
 * Runs `lmtp send` without oclif when the command line is a plain one; returns false (having done nothing) when
 * oclif must handle it. Output and exit codes are those of the oclif command (BaseCommand's error handling).
 */
export async function sendFast(argv: string[]): Promise<boolean> {
  const parsed = parseSendArgs(argv)
  if (!parsed) return false
  const {flags, file, json} = parsed
  try {
    const report = await runSend(flags, file, json)
    if (json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`)
  } catch (err) {
    if (!(err instanceof CliError)) throw err
    if (json) process.stdout.write(`${JSON.stringify({error: {message: err.message, exitCode: err.exitCode}}, null, 2)}\n`)
    else process.stderr.write(`lmtp: ${err.message}\n`)
    process.exitCode = err.exitCode
  }
  return true
}
