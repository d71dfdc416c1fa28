/**
 * Exit codes (defined in src/util/exit-codes.ts, below every layer, and re-exported here) and the CLI's error
 * type, which carries one of them.
 */
import type {ExitCode} from '../util/exit-codes.js'

export {EXIT, type ExitCode} from '../util/exit-codes.js'

/** A command-line failure: the message says what went wrong and what to do next; the code is the exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
  ) {
    super(message)
    this.name = 'CliError'
  }
}
