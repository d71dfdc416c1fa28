/**
 * The connection flags every client command shares (send, probe, replay): where to connect, LHLO name, TLS,
 * AUTH and the timeout, defined once with oclif's builders, and the one function that turns their values into
 * openSession() options. Imported from oclif's narrow entry points so that send's start-up fast path does not
 * load the rest of oclif.
 */
import {readFile} from 'node:fs/promises'
import os from 'node:os'
import {boolean, string} from '@oclif/core/flags'
import type {AuthCredentials} from '../client/auth.js'
import {isLocalTarget} from '../client/session.js'
import {type Target, TargetError, parseTarget} from '../net/target.js'
import {CliError, EXIT} from './exit-codes.js'
import {durationFlag} from './flag-values.js'

/** The environment variable AUTH's password is read from when --auth-password-file is not given. */
export const AUTH_PASSWORD_ENV = 'LMTP_AUTH_PASSWORD'

/** `--server HOST:PORT|unix:/path` (default 127.0.0.1:24 or $LMTP_SERVER), for commands without a positional target. */
export const serverFlag = string({description: 'HOST:PORT or unix:/path (port 25 is refused)', env: 'LMTP_SERVER', default: '127.0.0.1:24'})

/** `--timeout DURATION`; `defaultWords` says what happens without it, e.g. `60s` or `RFC 5321's, 2-10 min`. */
export function timeoutFlag(defaultWords: string) {
  return string({
    description: `how long to wait for the connection and for each reply, e.g. 30s, 5m, 500ms; a bare number is seconds (default ${defaultWords})`,
    helpValue: 'DURATION',
  })
}

/** LHLO name, STARTTLS, certificate checks and AUTH. */
export const connectionFlags = {
  lhlo: string({description: "name to give in LHLO (default: this host's name)"}),
  starttls: boolean({description: 'require TLS: STARTTLS first, fail if the server does not offer it'}),
  'tls-insecure': boolean({description: "do not verify the server's certificate"}),
  'tls-ca': string({description: "verify the server's certificate with this CA file (PEM)", helpValue: 'FILE'}),
  auth: string({
    description: `LMTP AUTH (SASL PLAIN or LOGIN) as USER, over TLS or on loopback/unix; the password comes from --auth-password-file or $${AUTH_PASSWORD_ENV}, never from the command line`,
    helpValue: 'USER',
  }),
  'auth-password-file': string({description: 'read the AUTH password from the first line of FILE', helpValue: 'FILE', dependsOn: ['auth']}),
}

/** The values of the shared flags (as oclif gives them). */
export interface ConnectionFlagValues {
  lhlo?: string
  starttls?: boolean
  'tls-insecure'?: boolean
  'tls-ca'?: string
  auth?: string
  'auth-password-file'?: string
  timeout?: string
}

/** What the shared flags mean, ready for openSession() (timeouts are the caller's: see timeoutMs). */
export interface ConnectionSettings {
  lhloName: string
  starttls: boolean
  tlsInsecure: boolean
  tlsCa?: Buffer
  auth?: AuthCredentials
  /** --timeout in milliseconds; undefined when not given (the command's default applies). */
  timeoutMs?: number
}

/** This host's name when it can appear in LHLO and in an address; else `localhost`. */
export function localHostName(): string {
  const h = os.hostname()
  return /^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(h) ? h : 'localhost'
}

/** Parses `--server` (or a positional target); a bad value is a usage error naming `name`. */
export function targetFlag(name: string, value: string): Target {
  try {
    return parseTarget(value)
  } catch (err) {
    if (err instanceof TargetError) throw new CliError(`${name} ${err.message}`, EXIT.usage)
    throw err
  }
}

/**
 * Checks the shared flags and reads the files they name: a usage error (64) for a bad LHLO name or timeout,
 * AUTH without a password or in clear text to a remote server; 66 for an unreadable CA or password file.
 */
export async function connectionSettings(
  flags: ConnectionFlagValues,
  target: Target,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ConnectionSettings> {
  const lhloName = flags.lhlo ?? localHostName()
  if (!/^[^\s<>\x00-\x1f\x7f]+$/.test(lhloName)) {
    throw new CliError(`--lhlo ${JSON.stringify(lhloName)}: give one word, a host name or an address literal such as [192.0.2.1]`, EXIT.usage)
  }
  const settings: ConnectionSettings = {lhloName, starttls: flags.starttls === true, tlsInsecure: flags['tls-insecure'] === true}
  if (flags.timeout !== undefined) settings.timeoutMs = durationFlag('--timeout', flags.timeout)
  if (flags['tls-ca']) settings.tlsCa = await readInput(flags['tls-ca'], 'the CA file')
  if (flags.auth !== undefined) {
    const user = flags.auth
    if (user === '' || /[\x00-\x1f\x7f]/.test(user)) throw new CliError('--auth: give a user name', EXIT.usage)
    if (!settings.starttls && !isLocalTarget(target)) {
      throw new CliError(
        '--auth would send the password in clear text: add --starttls (AUTH without TLS is allowed only on loopback addresses and unix: sockets)',
        EXIT.usage,
      )
    }
    let password: string
    const file = flags['auth-password-file']
    if (file !== undefined) {
      password = (await readInput(file, 'the password file')).toString('utf8').split(/\r?\n/, 1)[0] ?? ''
    } else {
      const fromEnv = env[AUTH_PASSWORD_ENV]
      if (fromEnv === undefined) {
        throw new CliError(
          `--auth ${user}: no password: give --auth-password-file FILE or set ${AUTH_PASSWORD_ENV} (a password is never taken from the command line)`,
          EXIT.usage,
        )
      }
      password = fromEnv
    }
    if (password === '') throw new CliError(`--auth ${user}: the password is empty`, EXIT.usage)
    settings.auth = {user, password}
  }
  return settings
}

async function readInput(file: string, what: string): Promise<Buffer> {
  try {
    return await readFile(file)
  } catch (err) {
    throw new CliError(`cannot read ${what} ${file}: ${(err as Error).message}`, EXIT.noInput)
  }
}
