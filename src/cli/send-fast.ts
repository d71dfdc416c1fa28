/**
 * The start-up fast path of `lmtp send` (used by bin/run.js). Loading oclif's whole command framework (config,
 * plugins, help, logging) costs more than a delivery, and `lmtp send` is often run once per message from scripts.
 * This path parses the command line with oclif's own parser and the command's own flag definitions
 * (send-flags.ts), then runs the same code as the oclif command (runSend), with the same output, JSON and exit
 * codes. Help, version requests and any command line the parser refuses are left to the full oclif route, which
 * parses again and reports usage errors in its usual way: this path returns false before doing anything.
 */
import {boolean} from '@oclif/core/flags'
import {parse} from '@oclif/core/parser'
import {CliError} from './exit-codes.js'
import {runSend} from './send-command.js'
import {sendArgs, sendFlags} from './send-flags.js'

const fastFlags = {...sendFlags, json: boolean({description: 'format output as json'})}

/** True when the command line asks for something only the full CLI does (help, version). */
function wantsFullCli(argv: string[]): boolean {
  return argv.some((a) => a === '--help' || a === '-h' || a === '--version' || a === '--')
}

/** What the fast path parsed: the flags, the file argument, and --json. */
export interface FastSendArgs {
  flags: Parameters<typeof runSend>[0]
  file: string | undefined
  json: boolean
}

/**
 * Parses `lmtp send` arguments (after the word `send`) with oclif's parser and the command's flags, or returns
 * undefined when the full CLI must handle them (help, version, or anything the parser refuses).
 */
export async function parseFast(argv: string[]): Promise<FastSendArgs | undefined> {
  if (wantsFullCli(argv)) return undefined
  try {
    const parsed = await parse(argv, {flags: fastFlags, args: sendArgs, strict: true})
    const {json, ...flags} = parsed.flags
    return {flags, file: parsed.args.file, json: json === true}
  } catch {
    return undefined
  }
}

/**
 * Runs `lmtp send` without loading the rest of oclif; returns false (having done nothing) when the full oclif
 * route must handle the command line.
 */
export async function sendFast(argv: string[]): Promise<boolean> {
  const parsed = await parseFast(argv)
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
