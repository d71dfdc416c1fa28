/**
 * What `lmtp serve` re-reads on SIGHUP, and the same checks at startup: the users file (with its quotas) and the
 * TLS certificate and key. A reload never drops a session: the backend and the server swap their tables between
 * commands; a file that does not parse keeps the old configuration and the reason is logged.
 */
import type {MaildirBackend} from '../delivery/maildir-backend.js'
import {UsersFileError, type UserTable, loadUsersFile} from '../delivery/users.js'
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

/** Reads the users file; unreadable, malformed or without a single mailbox is a ConfigProblem naming the file. */
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
  return table
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
