/**
 * The configuration file of `lmtp serve --config FILE` (TOML): one top-level key per serve flag, spelled as the
 * flag (`maildir = "/var/mail/vmail"`, `listen = ["unix:/run/lmtp/lmtp.sock"]`, `check-quota-at-rcpt = true`).
 * The file is turned into flag tokens placed BEFORE the command line's, and a flag given on the command line drops
 * the file's value, so the command line wins. Every problem names the file and the line.
 */
import {readFile} from 'node:fs/promises'
import {TomlError, parse} from 'smol-toml'
import {CliError, EXIT} from './exit-codes.js'

/** The part of an oclif flag definition the reader needs. */
export interface FlagShape {
  type: 'boolean' | 'option'
  multiple?: boolean
  options?: readonly string[]
  default?: unknown
  /** Lower bound of an integer flag. */
  min?: number
}

/** Where a config value came from, to point at it: `FILE:LINE`. */
export type ConfigOrigins = Map<string, string>

/** A config file turned into flag tokens. */
export interface ConfigTokens {
  /** Tokens such as `--maildir /var/mail/vmail`, in file order. */
  argv: string[]
  /** Flag name -> `FILE:LINE` of its key. */
  origins: ConfigOrigins
}

/** Flags that only make sense on the command line. */
const NOT_IN_FILE = new Set(['config', 'check-config', 'json', 'help'])

/** The 1-based line of the top-level `key =` in the text (keys are plain: no tables, no dotted keys). */
function lineOf(text: string, key: string): number {
  const lines = text.split('\n')
  const re = new RegExp(`^\\s*(?:${key.replace(/[-]/g, '\\-')}|"${key}"|'${key}')\\s*=`)
  const i = lines.findIndex((l) => re.test(l))
  return i + 1
}

/** The value of `--config FILE` / `--config=FILE` on the command line, if any. */
export function configFileArgument(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!
    if (token === '--') break
    if (token === '--config') return argv[i + 1]
    if (token.startsWith('--config=')) return token.slice('--config='.length)
  }
  return undefined
}

/** The flag names written on the command line (`--name`, `--name=value`, `--no-name`). */
export function flagsOnCommandLine(argv: readonly string[]): Set<string> {
  const names = new Set<string>()
  for (const token of argv) {
    if (token === '--') break
    const m = /^--([a-z][a-z0-9-]*)(?:=|$)/.exec(token)
    if (m) names.add(m[1]!)
  }
  return names
}

/**
 * Reads FILE and returns the tokens for every key not already on the command line. Unknown keys, tables,
 * values of the wrong type and TOML syntax errors are CliErrors (exit 78) reading `FILE:LINE: problem`.
 */
export async function readServeConfig(file: string, flags: Record<string, FlagShape>, onCommandLine: Set<string>): Promise<ConfigTokens> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error'
    throw new CliError(`cannot read the config file ${file} (${code}): check the path given to --config`, EXIT.noInput)
  }
  let doc: Record<string, unknown>
  try {
    doc = parse(text) as Record<string, unknown>
  } catch (err) {
    if (err instanceof TomlError) {
      throw new CliError(`${file}:${err.line}: ${err.message.split('\n')[0]} (TOML: key = "value", one per line)`, EXIT.config)
    }
    throw err
  }
  const argv: string[] = []
  const origins: ConfigOrigins = new Map()
  for (const [key, value] of Object.entries(doc)) {
    const where = `${file}:${lineOf(text, key)}`
    const def = flags[key]
    if (!def || NOT_IN_FILE.has(key)) {
      const hint = def ? 'it is for the command line only' : 'keys are the serve flags without "--" (see lmtp serve --help)'
      throw new CliError(`${where}: unknown key ${JSON.stringify(key)}: ${hint}`, EXIT.config)
    }
    origins.set(key, where)
    if (onCommandLine.has(key) || (def.type === 'boolean' && onCommandLine.has(`no-${key}`))) continue
    argv.push(...tokensFor(key, value, def, where))
  }
  return {argv, origins}
}

function tokensFor(key: string, value: unknown, def: FlagShape, where: string): string[] {
  const wrong = (expected: string): CliError =>
    new CliError(`${where}: ${key} = ${JSON.stringify(value)}: expected ${expected}`, EXIT.config)
  if (def.type === 'boolean') {
    if (typeof value !== 'boolean') throw wrong('true or false')
    if (value) return [`--${key}`]
    // `key = false` turns off a flag whose default is on (as --no-KEY would); otherwise it is the default.
    return []
  }
  if (typeof def.default === 'number') {
    // An integer flag (oclif's parser would report it without the file and line).
    if (typeof value !== 'number' || !Number.isInteger(value)) throw wrong('a whole number')
    if (def.min !== undefined && value < def.min) throw wrong(`a whole number of at least ${def.min}`)
    return [`--${key}`, String(value)]
  }
  const one = (v: unknown): string => {
    if (typeof v === 'string') return v
    if (typeof v === 'number' && Number.isInteger(v)) return String(v)
    throw wrong(def.multiple ? 'a string or a list of strings' : 'a string or a whole number')
  }
  const values = Array.isArray(value) ? (def.multiple ? value.map(one) : [one(undefined)]) : [one(value)]
  if (def.options) {
    const bad = values.find((v) => !def.options!.includes(v))
    if (bad !== undefined) throw wrong(`one of ${def.options.map((o) => JSON.stringify(o)).join(', ')}`)
  }
  return values.flatMap((v) => [`--${key}`, v])
}

/**
 * Puts `FILE:LINE: ` in front of a message about a flag whose value came from the config file (it starts with
 * `--flag`), so the operator sees where to fix it.
 */
export function locateConfigMessage(message: string, origins: ConfigOrigins, onCommandLine: Set<string>): string {
  const m = /^--([a-z][a-z0-9-]*)/.exec(message)
  const where = m ? origins.get(m[1]!) : undefined
  return where && !onCommandLine.has(m![1]!) ? `${where}: ${message}` : message
}

/** locateConfigMessage for a thrown CliError (a usage error in the file becomes a configuration error, 78). */
export function locateConfigError(err: unknown, origins: ConfigOrigins, onCommandLine: Set<string>): unknown {
  if (!(err instanceof CliError)) return err
  const message = locateConfigMessage(err.message, origins, onCommandLine)
  if (message === err.message) return err
  return new CliError(message, err.exitCode === EXIT.usage ? EXIT.config : err.exitCode)
}

/** The effective configuration as TOML lines (like `postconf -n`): every flag whose value is not its default. */
export function formatEffectiveConfig(values: Record<string, unknown>, flags: Record<string, FlagShape>): string[] {
  const lines: string[] = []
  for (const [key, def] of Object.entries(flags)) {
    if (NOT_IN_FILE.has(key)) continue
    const v = values[key]
    if (v === undefined || v === false) continue
    if (JSON.stringify(v) === JSON.stringify(def.default)) continue
    lines.push(`${key} = ${Array.isArray(v) ? `[${v.map((x) => JSON.stringify(x)).join(', ')}]` : JSON.stringify(v)}`)
  }
  return lines
}
