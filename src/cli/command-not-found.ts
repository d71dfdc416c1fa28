/**
 * oclif's `command_not_found` hook: an unknown command is a usage error (exit 64, one of the documented exit
 * codes, not oclif's 2), with the next step: `lmtp --help` lists the commands.
 */
import type {Hook} from '@oclif/core'
import {EXIT} from './exit-codes.js'

/** Says the command does not exist, lists the commands, and exits 64. */
const hook: Hook<'command_not_found'> = async function (options) {
  const known = options.config.commandIDs.filter((id) => !id.includes(':')).sort()
  process.stderr.write(`lmtp: there is no command "${options.id}" (commands: ${known.join(', ')}); see lmtp --help\n`)
  this.exit(EXIT.usage)
}

export default hook
