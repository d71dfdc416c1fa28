import {BaseCommand} from '../cli/base-command.js'
import {runSend} from '../cli/send-command.js'
import {sendArgs, sendFlags} from '../cli/send-flags.js'
import type {SendReport} from '../client/send-message.js'

/** `lmtp send`: deliver one message over LMTP and show each recipient's outcome, in RCPT order. */
export default class Send extends BaseCommand {
  static override summary = 'Send a message over LMTP and show every recipient\'s outcome'

  static override description = [
    'Delivers FILE (or - for stdin; without FILE, a generated test message) to every --to recipient in one LMTP transaction and reports one result per recipient, in RCPT order, duplicates kept: delivered (2xx), deferred (4xx) or rejected (5xx), with the stage (RCPT or DATA), the reply codes, the text and the latency.',
    'Before sending it checks what the server can take (8BITMIME, SMTPUTF8, SIZE), so nothing is ever half-sent.',
    'Exit codes: 0 all delivered; 75 some deferred, none rejected; 69 any rejected; 76 the server broke the protocol (e.g. too few replies after the body); 74 connection failed; 65 the message cannot be sent as it is; 66 FILE cannot be read; 64 usage.',
  ].join('\n\n')

  static override examples = [
    {description: 'A generated test message to two recipients', command: '<%= config.bin %> send --to alice@example.com,bob@example.com --server 127.0.0.1:2424'},
    {description: 'A message file over a Unix socket, with the dialogue', command: '<%= config.bin %> send message.eml --to alice@example.com --server unix:/run/dovecot/lmtp --transcript'},
    {description: 'From stdin, with STARTTLS and BDAT, as JSON', command: 'cat message.eml | <%= config.bin %> send - --to alice@example.com --starttls --tls-ca ca.pem --bdat --json'},
  ]

  static override args = sendArgs

  static override flags = sendFlags

  async run(): Promise<SendReport> {
    const {args, flags} = await this.parse(Send)
    const json = this.jsonEnabled()
    return runSend(flags, args.file, json)
  }
}
