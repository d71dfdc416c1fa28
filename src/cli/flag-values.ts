/**
 * Flag values that need more than oclif's types: sizes with K/M/G suffixes. A bad value is a usage error (64)
 * whose message names the flag and the accepted forms.
 */
import {UnitSyntaxError, parseSize} from '../util/units.js'
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
