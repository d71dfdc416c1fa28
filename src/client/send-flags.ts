/**
 * The flags and argument of `lmtp send`, defined once with oclif's builders and used both by the oclif command
 * and by the start-up fast path (send-fast.ts), which parses them with oclif's own parser. Imported from
 * oclif's narrow entry points so that the fast path does not load the rest of oclif.
 */
import {string as stringArg} from '@oclif/core/args'
import {boolean, string} from '@oclif/core/flags'

/** The positional argument: the message file. */
export const sendArgs = {
  file: stringArg({description: 'message file, or - for stdin (default: a generated test message)', required: false}),
}

/** Every flag of `lmtp send` (`--json` comes from the command base). */
export const sendFlags = {
  to: string({description: 'recipient (repeatable, also comma-separated); order and duplicates are kept', multiple: true, required: true}),
  from: string({description: "envelope sender (default lmtp@<this host>; '' sends <>)"}),
  server: string({description: 'HOST:PORT or unix:/path (port 25 is refused)', env: 'LMTP_SERVER', default: '127.0.0.1:24'}),
  lhlo: string({description: "name to give in LHLO (default: this host's name)"}),
  starttls: boolean({description: 'require TLS: STARTTLS before sending, fail if the server does not offer it'}),
  'tls-insecure': boolean({description: "do not verify the server's certificate", dependsOn: ['starttls']}),
  'tls-ca': string({description: "verify the server's certificate with this CA file (PEM)", dependsOn: ['starttls']}),
  bdat: boolean({description: 'send the body with BDAT (CHUNKING); fails if the server does not offer it'}),
  'chunk-size': string({description: 'BDAT chunk size, e.g. 64K (default 1M)', hidden: true}),
  pipelining: boolean({description: 'pipeline commands when the server offers PIPELINING', allowNo: true, default: true}),
  timeout: string({description: "seconds to wait for the connection and for each reply (default: RFC 5321's, 2-10 min)"}),
  transcript: boolean({description: 'show the dialogue: C:/S: lines with timings'}),
  size: string({description: 'pad the generated test message to this size, e.g. 100K (only without FILE)'}),
}
