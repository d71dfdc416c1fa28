/**
 * The base of every lmtp command: `--json` support, and errors mapped to the documented exit codes (usage
 * errors exit 64, not oclif's 2; a CliError exits with its own code and message).
 */
import {Command, Errors} from '@oclif/core'
import {CliError, EXIT} from './exit-codes.js'

/** Base command: maps failures to exit codes. */
export abstract class BaseCommand extends Command {
  static override enableJsonFlag = true

  protected override async catch(err: Error & {exitCode?: number; oclif?: {exit?: number}}): Promise<unknown> {
    if (err instanceof CliError) {
      if (this.jsonEnabled()) {
        this.logJson({error: {message: err.message, exitCode: err.exitCode}})
        this.exit(err.exitCode)
      }
      this.logToStderr(`lmtp: ${err.message}`)
      this.exit(err.exitCode)
    }
    // oclif's own parse errors (unknown flag, missing argument) are usage errors.
    if (err instanceof Errors.CLIError && err.oclif?.exit === 2) {
      this.logToStderr(`lmtp: ${err.message}\nSee: lmtp ${this.id ?? ''} --help`)
      this.exit(EXIT.usage)
    }
    return super.catch(err)
  }
}
