/**
 * Flag values that need more than oclif's types: sizes with K/M/G suffixes, durations (`30s`, `5m`). A bad value is a usage error (64)
 * whose message names the flag and the accepted forms.
 */
import {UnitSyntaxError, parseDuration, parseSize} from '../util/units.js'
import {CliError, EXIT} from './exit-codes.js'

/** Parses a size flag (`--max-size 50M`); throws CliError(64) naming the flag when it is not a size. */
export function sizeFlag(name: string, value: string): number {
  try {
    return parseSize(value)
  } catch (err) {
    if (err instanceof UnitSyntaxError) throw new CliError(`${name} ${JSON.stringify(value)}: ${err.message}`, EXIT.usage)
    throw err
  }
}

/**
 * Parses a duration flag (`--timeout 30s`, `5m`, `500ms`, a bare number of seconds) into milliseconds; the one
 * form every command's `--timeout` takes. Throws CliError(64) naming the flag when it is not a positive duration.
 */
export function durationFlag(name: string, value: string, options: {allowZero?: boolean} = {}): number {
  let ms: number
  try {
    ms = parseDuration(value)
  } catch (err) {
    if (err instanceof UnitSyntaxError) throw new CliError(`${name} ${JSON.stringify(value)}: ${err.message}`, EXIT.usage)
    throw err
  }
  if (options.allowZero && ms === 0) return 0
  if (!(ms > 0)) throw new CliError(`${name} ${JSON.stringify(value)}: give a duration greater than 0, e.g. 30s, 5m or 500ms`, EXIT.usage)
  return Math.round(ms)
}
