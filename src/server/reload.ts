/**
 * What `lmtp serve` re-reads on SIGHUP, and the same checks at startup: the users file (with its quotas) and the
 * TLS certificate and key. A reload never drops a session: the backend and the server swap their tables between
 * commands; a file that does not parse keeps the old configuration and the reason is logged.
 */
import type {MaildirBackend} from '../delivery/maildir-backend.js'
import {UsersFileError, type UserTable, loadUsersFile} from '../delivery/users.js'
import {existsSync} from 'node:fs'
import {IdentityError, type Identity, lookupGroup, lookupUser} from './identity.js'
import type {LmtpServer} from './server.js'
import type {SystemdNotifier} from './systemd.js'
import {TlsFileError, expiryWarning, loadTlsFiles, type TlsFiles} from './tls-files.js'

/** A configuration file that cannot be used; `exit` is the sysexits code for startup (66 unreadable, 78 bad). */
export class ConfigProblem extends Error {
  constructor(
    message: string,
    readonly exit: 66 | 78,
  ) {
    super(message)
    this.name = 'ConfigProblem'
  }
}

/**
 * Reads the users file; unreadable, malformed or without a single mailbox is a ConfigProblem naming the file. The
 * `uid=` / `gid=` names are resolved here (through getent, like --user): an unknown one is FILE:LINE, exit 78.
 */
export async function loadUsers(file: string): Promise<UserTable> {
  let table: UserTable
  try {
    table = await loadUsersFile(file)
  } catch (err) {
    if (err instanceof UsersFileError) throw new ConfigProblem(err.message, 78)
    throw new ConfigProblem((err as Error).message, 66)
  }
  if (table.size === 0) {
    throw new ConfigProblem(`${file}: no mailbox in it, so every recipient would be refused: add one line per mailbox (ADDRESS [quota=SIZE])`, 78)
  }
  for (const e of table.entries) {
    if (e.uid === undefined && e.gid === undefined) continue
    try {
      // uid= alone: that user's primary group (when the user is known); gid= alone: the owner stays the process's.
      const user = e.uid === undefined ? undefined : lookupUser(e.uid, 'uid')
      const gid = e.gid === undefined ? (user?.name === undefined ? -1 : user.gid) : lookupGroup(e.gid, 'gid')
      e.owner = {uid: user?.uid ?? -1, gid}
    } catch (err) {
      if (err instanceof IdentityError) throw new ConfigProblem(`${file}:${e.line}: ${err.message}`, 78)
      throw err
    }
  }
  return table
}

/**
 * Refuses (exit 78) a users file with `uid=` / `gid=` that this process could not honour: giving files away
 * needs root (CAP_CHOWN), so not with `--user` (`dropTo`, which gives root up after binding) and not when serve
 * is not root; pinned directories also need /proc (Linux). The message names FILE:LINE and the alternatives.
 */
export function checkOwnersAllowed(table: UserTable, file: string, dropTo?: Identity): void {
  const first = table.entries.find((e) => e.uid !== undefined || e.gid !== undefined)
  if (!first) return
  const where = `${file}:${first.line}: uid=/gid= (per-mailbox owners)`
  if (dropTo) {
    throw new ConfigProblem(
      `${where} need root to give each mailbox's files to its owner, but --user drops root after binding: either leave out --user (serve keeps root and gives every file it creates to the mailbox's owner) or remove uid=/gid= and let one mail user own the whole Maildir (--user vmail)`,
      78,
    )
  }
  if (process.geteuid?.() !== 0) {
    throw new ConfigProblem(
      `${where} need root to give each mailbox's files to its owner, but serve runs as uid ${process.geteuid?.() ?? '?'}: start serve as root (without --user), or remove uid=/gid= from the users file`,
      78,
    )
  }
  if (!existsSync('/proc/self/fd')) {
    throw new ConfigProblem(`${where} need /proc (Linux) to create files without a symlink race: mount /proc, or remove uid=/gid=`, 78)
  }
}

/** Reads and checks the certificate and key; a ConfigProblem naming the file at fault. */
export async function loadTls(certFile: string, keyFile: string): Promise<TlsFiles> {
  try {
    return await loadTlsFiles(certFile, keyFile)
  } catch (err) {
    if (err instanceof TlsFileError) throw new ConfigProblem(err.message, err.kind === 'unreadable' ? 66 : 78)
    throw err
  }
}

/** What a reload re-reads, and where it goes. */
export interface ReloadTargets {
  usersFile?: string
  tlsFiles?: {cert: string; key: string}
  /** The default quota to keep (the flag's; the users file carries per-mailbox ones). */
  defaultQuota?: number
  backend: MaildirBackend
  server: LmtpServer
  notifier?: SystemdNotifier
  log: (level: 'info' | 'warn', message: string) => void
}

/** The outcome of one reload (for the log line and tests). */
export interface ReloadResult {
  /** What was replaced. */
  reloaded: string[]
  /** What was kept because its new version could not be used, with why. */
  kept: string[]
}

/**
 * Re-reads the users file and the certificate; each part that loads replaces the old one, each that fails is
 * kept and logged. Reloads run one at a time (a second SIGHUP during one waits for it).
 */
export class Reloader {
  private running: Promise<ReloadResult> = Promise.resolve({reloaded: [], kept: []})

  constructor(private readonly t: ReloadTargets) {}

  /** Runs a reload after any reload in progress. */
  reload(): Promise<ReloadResult> {
    this.running = this.running.then(() => this.reloadOnce())
    return this.running
  }

  private async reloadOnce(): Promise<ReloadResult> {
    const t = this.t
    await t.notifier?.reloading()
    const result: ReloadResult = {reloaded: [], kept: []}
    if (t.usersFile) {
      try {
        const users = await loadUsers(t.usersFile)
        checkOwnersAllowed(users, t.usersFile)
        t.backend.reconfigure({users, defaultQuota: t.defaultQuota})
        result.reloaded.push(`users file ${t.usersFile} (${users.size} mailboxes)`)
      } catch (err) {
        result.kept.push(`users file: ${(err as Error).message}; keeping the previous one`)
      }
    }
    if (t.tlsFiles) {
      try {
        const files = await loadTls(t.tlsFiles.cert, t.tlsFiles.key)
        t.server.setTls(files)
        result.reloaded.push(`TLS certificate ${t.tlsFiles.cert} (until ${files.notAfter.toISOString()})`)
        const warning = expiryWarning(files, t.tlsFiles.cert)
        if (warning) t.log('warn', warning)
      } catch (err) {
        result.kept.push(`TLS certificate: ${(err as Error).message}; keeping the previous one`)
      }
    }
    for (const k of result.kept) t.log('warn', `reload: ${k}`)
    t.log('info', `reloaded: ${result.reloaded.join(', ') || 'nothing to reload'}${result.kept.length ? ` (${result.kept.length} kept, see above)` : ''}`)
    await t.notifier?.reloaded(result.kept.length ? 'reloaded with errors (see the log)' : 'reloaded')
    return result
  }
}
