/**
 * The users file of `lmtp serve --users FILE`: which recipients exist, and their quotas.
 *
 * Format: one mailbox per line, `ADDRESS [quota=SIZE] [uid=USER] [gid=GROUP]`; the address may be written bare or
 * in angle brackets;
 * `#` starts a comment (whole line or after the fields); blank lines are ignored. `quota=none` (or `quota=0`)
 * means no quota for this user whatever `--quota` says. `uid=` / `gid=` (names or numbers) give the owner of the
 * files and directories created for that mailbox; names are resolved by the caller (server/reload.ts), which
 * sets `owner`. Addresses are matched case-insensitively (and after
 * Unicode NFC normalisation). A malformed line is an error that names the file, the line and the problem, so
 * that `lmtp serve` stops at startup instead of bouncing mail later.
 */
import {readFile} from 'node:fs/promises'
import type {Path} from '../protocol/address.js'
import {parseSize, SIZE_SYNTAX, UnitSyntaxError} from '../util/units.js'
import {addressKey, pathKey} from './mailbox.js'
import type {MailboxOwner} from './maildir.js'

/** One user of the users file. */
export interface UserEntry {
  /** The address as written in the file. */
  address: string
  /** Normalised lookup key (see mailbox.ts `addressKey`). */
  key: string
  /** Quota in bytes; `null` for an explicit "no quota"; absent when the default applies. */
  quota?: number | null
  /** 1-based line number in the file (for messages). */
  line: number
  /** `uid=` as written (a user name or number), when given. */
  uid?: string
  /** `gid=` as written (a group name or number), when given. */
  gid?: string
  /** The resolved owner of what is created for this mailbox (set once `uid`/`gid` are resolved). */
  owner?: MailboxOwner
}

/** A malformed users file line. The message reads `FILE:LINE: problem`. */
export class UsersFileError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly problem: string,
  ) {
    super(`${file}:${line}: ${problem}`)
    this.name = 'UsersFileError'
  }
}

/** The parsed users file: lookup by recipient. */
export class UserTable {
  private readonly byKey: Map<string, UserEntry>

  constructor(readonly entries: readonly UserEntry[]) {
    this.byKey = new Map(entries.map((e) => [e.key, e]))
  }

  /** True when some mailbox has `uid=` or `gid=` (delivery then needs the right to chown). */
  get hasOwners(): boolean {
    return this.entries.some((e) => e.uid !== undefined || e.gid !== undefined)
  }

  /** Number of users. */
  get size(): number {
    return this.byKey.size
  }

  /** Finds the entry for a recipient path (case-insensitive); undefined when not listed or not mappable. */
  lookup(p: Path): UserEntry | undefined {
    const k = pathKey(p)
    return k.ok ? this.byKey.get(k.key) : undefined
  }

  /** Finds the entry for an address string such as `Alice@Example.com`. */
  lookupAddress(address: string): UserEntry | undefined {
    const k = addressKey(address)
    return k.ok ? this.byKey.get(k.key) : undefined
  }
}

/** Parses users file text. `file` is used in error messages only. Throws UsersFileError on the first bad line. */
export function parseUsersFile(text: string, file = 'users file'): UserTable {
  const entries: UserEntry[] = []
  const seen = new Map<string, number>()
  const lines = text.split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1
    const raw = lines[i]!
    const hash = raw.indexOf('#')
    const content = (hash >= 0 ? raw.slice(0, hash) : raw).trim()
    if (content === '') continue
    if (/[\x00-\x08\x0b-\x1f\x7f]/.test(content)) {
      throw new UsersFileError(file, lineNo, 'control characters are not allowed')
    }
    const [addressField, ...options] = content.split(/[ \t]+/)
    let address = addressField!
    if (address.startsWith('<') || address.endsWith('>')) {
      if (!(address.startsWith('<') && address.endsWith('>'))) {
        throw new UsersFileError(file, lineNo, `unbalanced angle brackets in ${JSON.stringify(address)}`)
      }
      address = address.slice(1, -1)
    }
    const key = addressKey(address)
    if (!key.ok) {
      throw new UsersFileError(file, lineNo, `address ${JSON.stringify(address)} cannot be used: ${key.reason}`)
    }
    const entry: UserEntry = {address, key: key.key, line: lineNo}
    for (const opt of options) {
      const eq = opt.indexOf('=')
      const name = eq >= 0 ? opt.slice(0, eq).toLowerCase() : opt
      const value = eq >= 0 ? opt.slice(eq + 1) : ''
      if (!['quota', 'uid', 'gid'].includes(name) || eq < 0) {
        throw new UsersFileError(file, lineNo, `unknown option ${JSON.stringify(opt)}: the options are quota=SIZE, uid=USER and gid=GROUP`)
      }
      if (name === 'uid' || name === 'gid') {
        if (name in entry) throw new UsersFileError(file, lineNo, `${name} given twice`)
        if (!/^[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?$/.test(value)) {
          throw new UsersFileError(file, lineNo, `invalid ${name} ${JSON.stringify(value)}: expected a ${name === 'uid' ? 'user' : 'group'} name or number`)
        }
        entry[name] = value
        continue
      }
      if ('quota' in entry) throw new UsersFileError(file, lineNo, 'quota given twice')
      if (value.toLowerCase() === 'none') {
        entry.quota = null
        continue
      }
      try {
        const bytes = parseSize(value)
        entry.quota = bytes === 0 ? null : bytes
      } catch (err) {
        if (!(err instanceof UnitSyntaxError)) throw err
        throw new UsersFileError(file, lineNo, `invalid quota ${JSON.stringify(value)}: expected ${SIZE_SYNTAX}, or none`)
      }
    }
    const earlier = seen.get(key.key)
    if (earlier !== undefined) {
      throw new UsersFileError(file, lineNo, `${JSON.stringify(address)} is already listed on line ${earlier}`)
    }
    seen.set(key.key, lineNo)
    entries.push(entry)
  }
  return new UserTable(entries)
}

/** Reads and parses a users file. File system errors are rethrown with the file name in the message. */
export async function loadUsersFile(file: string): Promise<UserTable> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error'
    throw new Error(`cannot read users file ${file} (${code}): check the path given to --users`, {cause: err})
  }
  return parseUsersFile(text, file)
}

/**
 * The users as a Postfix lookup table (`virtual_mailbox_maps`): one `ADDRESS OK` line per mailbox, so Postfix
 * refuses unknown recipients at SMTP time instead of accepting and bouncing them later. Feed it to `postmap`.
 */
export function formatPostmap(table: UserTable): string {
  // `postmaster` without a domain (any domain) has no single key: Postfix needs postmaster@DOMAIN lines.
  return table.entries.map((e) => (e.key.includes('@') ? `${e.key}\tOK\n` : `# ${e.address}: add postmaster@DOMAIN for each domain\n`)).join('')
}
