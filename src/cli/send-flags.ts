/**
 * The flags and argument of `lmtp send`, defined once with oclif's builders and used both by the oclif command
 * and by the start-up fast path (send-fast.ts), which parses them with oclif's own parser. Imported from
 * oclif's narrow entry points so that the fast path does not load the rest of oclif. The connection flags are
 * the shared ones (connection-flags.ts).
 */
import {string as stringArg} from '@oclif/core/args'
import {boolean, string} from '@oclif/core/flags'
import {connectionFlags, serverFlag, timeoutFlag} from './connection-flags.js'

/** The positional argument: the message file. */
export const sendArgs = {
  file: stringArg({description: 'message file, or - for stdin (default: a generated test message)', required: false}),
}

/** Every flag of `lmtp send` (`--json` comes from the command base). */
export const sendFlags = {
  to: string({description: 'recipient (repeatable, also comma-separated); order and duplicates are kept', multiple: true, required: true}),
  from: string({description: "envelope sender (default lmtp@<this host>; '' sends <>)"}),
  server: serverFlag,
  ...connectionFlags,
  'tls-insecure': {...connectionFlags['tls-insecure'], dependsOn: ['starttls']},
  'tls-ca': {...connectionFlags['tls-ca'], dependsOn: ['starttls']},
  bdat: boolean({description: 'send the body with BDAT (CHUNKING); fails if the server does not offer it'}),
  'chunk-size': string({description: 'BDAT chunk size, e.g. 64K (default 1M)', hidden: true}),
  pipelining: boolean({description: 'pipeline commands when the server offers PIPELINING', allowNo: true, default: true}),
  timeout: timeoutFlag("RFC 5321's, 2-10 min per wait"),
  transcript: boolean({description: 'show the dialogue: C:/S: lines with timings'}),
  size: string({description: 'pad the generated test message to this size, e.g. 100K (only without FILE)'}),
}
