import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base-command.js'
import {CliError} from '../cli/exit-codes.js'
import {formatPostmap} from '../delivery/users.js'
import {ConfigProblem, loadUsers} from '../server/reload.js'

/** What `lmtp users` returns (its --json output). */
export interface UsersResult {
  file: string
  users: {address: string; quota?: number | null; line: number}[]
}

/** `lmtp users FILE`: check a users file of `lmtp serve --users`, list it, or print it as a Postfix map. */
export default class Users extends BaseCommand {
  static override summary = 'Check and list the users file of lmtp serve, or print it as a Postfix virtual_mailbox_maps table'

  static override description = `Reads FILE as lmtp serve --users does (same checks: exit 78 with FILE:LINE on a bad line or an
empty file). With --postmap it prints one "ADDRESS OK" line per mailbox for Postfix's virtual_mailbox_maps, so
Postfix refuses unknown recipients at SMTP time; keep it in step with the users file:
  lmtp users --postmap /etc/lmtp/users > /etc/postfix/vmailbox && postmap /etc/postfix/vmailbox`

  static override examples = [
    {description: 'Check and list', command: '<%= config.bin %> users /etc/lmtp/users'},
    {description: 'Postfix map', command: '<%= config.bin %> users --postmap /etc/lmtp/users > /etc/postfix/vmailbox && postmap /etc/postfix/vmailbox'},
  ]

  static override args = {
    file: Args.string({description: 'the users file (ADDRESS [quota=SIZE] per line)', required: true}),
  }

  static override flags = {
    postmap: Flags.boolean({description: 'print the users as a Postfix lookup table (ADDRESS OK per line)'}),
  }

  async run(): Promise<UsersResult> {
    const {args, flags} = await this.parse(Users)
    let table: Awaited<ReturnType<typeof loadUsers>>
    try {
      table = await loadUsers(args.file)
    } catch (err) {
      if (err instanceof ConfigProblem) throw new CliError(err.message, err.exit)
      throw err
    }
    if (!this.jsonEnabled()) {
      if (flags.postmap) process.stdout.write(formatPostmap(table))
      else for (const e of table.entries) this.log(`${e.address}${e.quota === undefined ? '' : ` quota=${e.quota ?? 'none'}`}`)
    }
    return {file: args.file, users: table.entries.map((e) => ({address: e.address, quota: e.quota, line: e.line}))}
  }
}
