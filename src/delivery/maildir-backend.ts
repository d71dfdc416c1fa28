/**
 * The Maildir Backend of `lmtp serve --maildir DIR`: recipients map to `DIR/<domain>/<local>/` (see mailbox.ts),
 * the body is spooled once under `DIR/.lmtp-spool/`, then written into each recipient's Maildir durably, with
 * Maildir++ quota accounting, loop detection and per-recipient results reported as soon as each is decided.
 */
import * as fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import type {Path} from '../protocol/address.js'
import type {
  AcceptedRecipient,
  Backend,
  DeliveryResult,
  Envelope,
  RecipientCheck,
  SessionInfo,
  Spool,
} from '../protocol/backend.js'
import {causeOf} from '../protocol/backend.js'
import {perRecipient, R} from '../protocol/replies.js'
import {isInside, type ResolvedMailbox, resolveMailbox, SPOOL_DIR, POSTMASTER_DIR} from './mailbox.js'
import {
  buildTraceHeaders,
  encodeHostForMaildir,
  isDiskFullError,
  type MailboxOwner,
  type MaildirFs,
  type MaildirWrite,
  parseUniqueName,
  processSpace,
  realFs,
  storedSizes,
  writeMaildirMessage,
} from './maildir.js'
import {KeyedMutex, MAILDIRSIZE, peekUsage, QuotaCommitter, QuotaRefusal, readUsage, withQuotaLock} from './quota.js'
import {FileSpool, normaliseAddressForLoop} from './spool.js'
import type {UserTable} from './users.js'

/** How to answer a recipient who is over quota after the body: 452 4.2.2 (default) or 552 5.2.2. */
export type OverQuotaMode = 'temporary' | 'permanent'

/** Configuration of the Maildir backend. */
export interface MaildirBackendOptions {
  /** The Maildir root (`--maildir`). Created on first use. */
  root: string
  /** Accepted recipients and their quotas (`--users`); without it any safely mappable address is accepted. */
  users?: UserTable
  /** Default quota in bytes (`--quota`); undefined or 0 means none. */
  defaultQuota?: number
  /** Reply to over-quota after the body (`--over-quota`). Default 'temporary'. */
  overQuota?: OverQuotaMode
  /** Also refuse at RCPT when the mailbox is already full (`--check-quota-at-rcpt`). */
  checkQuotaAtRcpt?: boolean
  /** Our host name, for Received headers (`--hostname`). */
  hostname: string
  /** Host written into unique file names; default os.hostname(). cleanTmp only removes files of this host. */
  uniqueHost?: string
  /** Recipients written in parallel. Default 4. */
  concurrency?: number
  /** File system seam for the message writer (tests inject ENOSPC etc.). */
  fs?: MaildirFs
  /** Called for problems that do not change a reply (quota bookkeeping); default: ignored. */
  onWarning?: (message: string, error?: unknown) => void
}

/** What cleanTmp did. */
export interface CleanTmpReport {
  /** Files removed. */
  removed: number
  /** Files left in place (young, or written by a live process or another host). */
  kept: number
  /** Directories or files that could not be read or removed. */
  errors: number
}

/** Options of cleanTmp. */
export interface CleanTmpOptions {
  /** Files older than this are removed whoever wrote them. Default 36 hours (Maildir rule). */
  maxAgeMs?: number
  /** Current time (tests). */
  now?: number
  /** Whether a pid is alive on this host (tests). Default: signal 0. */
  isAlive?: (pid: number) => boolean
}

/** The Maildir Backend (see the module comment). */
export class MaildirBackend implements Backend {
  /** Absolute Maildir root. */
  readonly root: string
  private readonly options: MaildirBackendOptions
  private readonly locks = new KeyedMutex()
  private readonly committer: QuotaCommitter
  private readonly host: string
  /** The root with its own symlinks resolved (an operator may point the root anywhere), for checkNoLinks. */
  private realRoot: Promise<string> | undefined

  constructor(options: MaildirBackendOptions) {
    this.options = {...options}
    this.root = path.resolve(options.root)
    this.host = options.uniqueHost ?? os.hostname()
    this.committer = new QuotaCommitter(this.locks, {host: this.host, onWarning: options.onWarning})
  }

  /**
   * Replaces the users file and the default quota (SIGHUP): the next RCPT and the next delivery see them;
   * recipients already accepted keep their answer.
   */
  reconfigure(change: Pick<MaildirBackendOptions, 'users' | 'defaultQuota'>): void {
    this.options.users = change.users
    this.options.defaultQuota = change.defaultQuota
  }

  /** The directory holding spool files. */
  get spoolDir(): string {
    return path.join(this.root, SPOOL_DIR)
  }

  /** The mailbox a recipient maps to, or why it cannot be mapped (for logs and tests). */
  resolve(p: Path): ReturnType<typeof resolveMailbox> {
    return resolveMailbox(this.root, p)
  }

  /** Quota in bytes for a recipient: the users file entry, else the default; undefined for none. */
  quotaFor(p: Path): number | undefined {
    const entry = this.options.users?.lookup(p)
    if (entry && entry.quota !== undefined) return entry.quota ?? undefined
    const q = this.options.defaultQuota
    return q === undefined || q <= 0 ? undefined : q
  }

  /** The owner of what is created for a recipient's mailbox (users file `uid=` / `gid=`); undefined: the process's. */
  ownerFor(p: Path): MailboxOwner | undefined {
    return this.options.users?.lookup(p)?.owner
  }

  /** Unknown user 550 5.1.1, unsafe name 550 5.1.3, and (when enabled) a mailbox already full at RCPT. */
  async checkRecipient(p: Path, _session: SessionInfo): Promise<RecipientCheck> {
    const res = this.resolve(p)
    if (!res.ok) return {ok: false, reply: R.unsafeMailbox}
    const mailbox = res.mailbox
    if (this.options.users && !mailbox.postmaster && !this.options.users.lookup(p)) {
      return {ok: false, reply: R.unknownUser}
    }
    const quota = this.quotaFor(p)
    if (this.options.checkQuotaAtRcpt && quota !== undefined) {
      try {
        const owner = this.ownerFor(p)
        const usage = await withQuotaLock(this.locks, mailbox.dir, () => readUsage(mailbox.dir, quota, this.host, undefined, owner), {owner})
        if (usage.bytes >= quota) {
          return {
            ok: false,
            reply: this.options.overQuota === 'permanent' ? R.mailboxFullAtRcptPerm : R.mailboxFullAtRcpt,
            mailbox: mailbox.name,
          }
        }
      } catch (err) {
        // Bookkeeping trouble is not the sender's problem: accept, the check after the body decides. A mailbox
        // that does not exist yet (no directory for its lock) is simply empty.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.options.onWarning?.(`cannot read quota of ${mailbox.name}`, err)
      }
    }
    return {ok: true, mailbox: mailbox.name}
  }

  /** A file spool under `ROOT/.lmtp-spool/`. */
  async openSpool(_envelope: Envelope, _session: SessionInfo): Promise<Spool> {
    return FileSpool.open({dir: this.spoolDir, host: this.host, lazy: true})
  }

  /** Writes the spooled message into every recipient's Maildir; see Backend.deliver. */
  async deliver(
    envelope: Envelope,
    spool: Spool,
    session: SessionInfo,
    onResult: (index: number, result: DeliveryResult) => void,
  ): Promise<void> {
    const queue = [...envelope.recipients]
    const limit = Math.max(1, this.options.concurrency ?? 4)
    const date = new Date()
    const worker = async () => {
      for (let r = queue.shift(); r !== undefined; r = queue.shift()) {
        const result = await this.deliverOne(envelope, spool, session, r, date)
        onResult(r.index, result)
      }
    }
    await Promise.all(Array.from({length: Math.min(limit, queue.length)}, worker))
  }

  /** Delivers to one recipient; never throws: every failure becomes that recipient's reply. */
  private async deliverOne(
    envelope: Envelope,
    spool: Spool,
    session: SessionInfo,
    r: AcceptedRecipient,
    date: Date,
  ): Promise<DeliveryResult> {
    const rcpt = r.path.address
    if (!(spool instanceof FileSpool) || !spool.finished) {
      return {reply: perRecipient.localError(rcpt, 'message spool unavailable')}
    }
    const res = this.resolve(r.path)
    if (!res.ok || !isInside(this.root, res.mailbox.dir)) {
      return {reply: perRecipient.localError(rcpt, 'recipient has no mailbox')}
    }
    const mailbox = res.mailbox
    if (spool.deliveredTo.has(normaliseAddressForLoop(rcpt))) return {reply: perRecipient.loop(rcpt)}

    const headers = buildTraceHeaders({
      sender: envelope.from.address,
      recipient: rcpt,
      lhlo: session.lhlo,
      peer: session.peer,
      hostname: this.options.hostname,
      transactionId: envelope.transactionId,
      smtputf8: envelope.params.smtputf8 === true,
      tls: session.tls,
      date,
    })
    const quota = this.quotaFor(r.path)
    const owner = this.ownerFor(r.path)
    try {
      if (quota === undefined) return await this.write(rcpt, envelope.transactionId, mailbox, headers, spool, {owner})
      return await this.writeWithinQuota(rcpt, envelope.transactionId, mailbox, headers, spool, quota, owner)
    } catch (err) {
      if (err instanceof QuotaRefusal) return {reply: this.quotaReply(rcpt, err.verdict), mailbox: mailbox.name}
      // No warning line: the recipient's own log line carries the cause.
      return {
        reply: isDiskFullError(err) ? perRecipient.diskFull(rcpt) : perRecipient.localError(rcpt),
        mailbox: mailbox.name,
        cause: causeOf(err),
      }
    }
  }

  private quotaReply(rcpt: string, verdict: 'over' | 'tooBig'): DeliveryResult['reply'] {
    if (verdict === 'tooBig') return perRecipient.tooBigForMailbox(rcpt)
    return this.options.overQuota === 'permanent' ? perRecipient.overQuotaPerm(rcpt) : perRecipient.overQuotaTemp(rcpt)
  }

  /**
   * Delivery into a quota'd mailbox. The file is written and fsync'd outside any lock (deliveries to one mailbox
   * overlap, and their directory fsyncs group); only the decision, the maildirsize line and the rename into new/
   * run under the mailbox's cross-process quota lock (see QuotaCommitter). A message that clearly does not fit
   * by a lock-free reading is refused before it is written.
   */
  private async writeWithinQuota(
    rcpt: string,
    id: string,
    mailbox: ResolvedMailbox,
    headers: string,
    spool: FileSpool,
    quota: number,
    owner: MailboxOwner | undefined,
  ): Promise<DeliveryResult> {
    const expected = storedSizes(headers, spool).size
    if (expected > quota) throw new QuotaRefusal('tooBig')
    const peek = await peekUsage(mailbox.dir, quota)
    if (peek && peek.bytes + expected > quota) throw new QuotaRefusal('over')
    return this.write(rcpt, id, mailbox, headers, spool, {
      owner,
      commit: (size, rename) => this.committer.reserveAndCommit(mailbox.dir, quota, size, rename, owner),
      uncommit: (size, unlink) => this.committer.releaseAndRemove(mailbox.dir, size, unlink, owner),
    })
  }

  private async write(
    rcpt: string,
    id: string,
    mailbox: ResolvedMailbox,
    headers: string,
    spool: FileSpool,
    hooks: Pick<MaildirWrite, 'commit' | 'uncommit' | 'owner'> = {},
  ): Promise<DeliveryResult> {
    await this.checkNoLinks(mailbox)
    const written = await writeMaildirMessage({
      dir: mailbox.dir,
      headers,
      source: spool.path,
      body: spool.body,
      stats: spool,
      host: this.host,
      fs: this.options.fs ?? realFs,
      ...hooks,
    })
    return {reply: perRecipient.delivered(rcpt, id), mailbox: mailbox.name, bytes: written.size, fsyncMs: written.fsyncMs}
  }

  /**
   * Refuses a mailbox reached through a symlink or a non-directory below the root: a user who can write in
   * their own Maildir (an IMAP server running as them) must not be able to point deliveries outside the root by
   * replacing tmp/, new/, cur/, the mailbox or the domain directory with a link. Checks each existing component
   * with lstat, from the domain down; missing ones are created later by the writer as real directories. The
   * error (ELOOP or ENOTDIR) becomes a 4xx for this recipient only.
   */
  private async checkNoLinks(mailbox: ResolvedMailbox): Promise<void> {
    // Fast path for an existing Maildir: three realpath calls at once (each one thread-pool job in which libc
    // walks every component) instead of five lstat round trips one after the other. When each of tmp/, new/
    // and cur/ resolves to exactly the path it has under the (resolved) root, no component below the root is
    // a symlink. Anything else (missing directories, a link) takes the component-by-component walk below,
    // which also gives the precise error.
    try {
      this.realRoot ??= fsp.realpath(this.root)
      const realRoot = await this.realRoot
      const rel = path.relative(this.root, mailbox.dir)
      const subs = ['tmp', 'new', 'cur']
      const real = await Promise.all(subs.map((sub) => fsp.realpath(path.join(mailbox.dir, sub))))
      if (real.every((r, i) => r === path.join(realRoot, rel, subs[i]!))) return
    } catch {
      // Fall through to the walk.
    }
    this.realRoot = undefined
    const check = async (p: string): Promise<boolean> => {
      let st: import('node:fs').Stats
      try {
        st = await fsp.lstat(p)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
        throw err
      }
      if (st.isDirectory()) return true
      const link = st.isSymbolicLink()
      const err: NodeJS.ErrnoException = new Error(
        `${p} is ${link ? 'a symbolic link' : 'not a directory'}: refusing to deliver through it (fix the Maildir by hand)`,
      )
      err.code = link ? 'ELOOP' : 'ENOTDIR'
      throw err
    }
    let dir = this.root
    for (const part of path.relative(this.root, mailbox.dir).split(path.sep)) {
      dir = path.join(dir, part)
      if (!(await check(dir))) return
    }
    for (const sub of ['tmp', 'new', 'cur']) await check(path.join(dir, sub))
  }

  /**
   * Startup clean-up of `tmp/` folders: files whose unique name carries this host, this boot and pid namespace
   * (see processSpace) and the pid of a process that is no longer alive are removed at once; any other file older than 36 hours is removed (a Maildir may be
   * shared over NFS, so another host's young files are left alone). A mailbox whose tmp/ had a file removed
   * also loses its maildirsize, which is rebuilt from the messages on the next reading. Walks only
   * `ROOT/<domain>/<local>/tmp`, `ROOT/postmaster/tmp` and the spool directory, never deeper.
   */
  async cleanTmp(options: CleanTmpOptions = {}): Promise<CleanTmpReport> {
    const report: CleanTmpReport = {removed: 0, kept: 0, errors: 0}
    const now = options.now ?? Date.now()
    const maxAge = options.maxAgeMs ?? 36 * 3600 * 1000
    const alive = options.isAlive ?? pidAlive
    const ourHost = encodeHostForMaildir(this.host)
    const ourSpace = processSpace() || undefined

    // Returns whether it removed a file: in a mailbox's tmp/ that means a delivery died between writing its
    // quota tally and its rename, so the caller drops that mailbox's maildirsize (rebuilt on the next read).
    const cleanDir = async (dir: string): Promise<boolean> => {
      let removedHere = false
      for (const entry of await listDir(dir, report)) {
        if (entry.isDirectory()) continue
        const file = path.join(dir, entry.name)
        const parts = parseUniqueName(entry.name)
        // A pid proves a death only in our own boot and pid namespace (same host name is not enough: two
        // containers with host networking share it); anything else waits for the 36-hour rule.
        let remove =
          parts !== undefined && parts.host === ourHost && parts.space === ourSpace && parts.pid !== process.pid && !alive(parts.pid)
        if (!remove) {
          try {
            const st = await fsp.lstat(file)
            remove = now - st.mtimeMs > maxAge
          } catch {
            continue
          }
        }
        if (!remove) {
          report.kept++
          continue
        }
        try {
          await fsp.unlink(file)
          report.removed++
          removedHere = true
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') report.errors++
        }
      }
      return removedHere
    }
    const cleanMailboxTmp = async (maildir: string) => {
      if (await cleanDir(path.join(maildir, 'tmp'))) {
        await fsp.unlink(path.join(maildir, MAILDIRSIZE)).catch(() => undefined)
      }
    }

    for (const top of await listDir(this.root, report)) {
      if (!top.isDirectory()) continue
      const topDir = path.join(this.root, top.name)
      if (top.name === SPOOL_DIR) await cleanDir(topDir)
      else if (top.name === POSTMASTER_DIR) await cleanMailboxTmp(topDir)
      else if (!top.name.startsWith('.')) {
        for (const local of await listDir(topDir, report)) {
          if (local.isDirectory()) await cleanMailboxTmp(path.join(topDir, local.name))
        }
      }
    }
    return report
  }
}

/** Directory entries (not following symlinks: Dirent types come from lstat semantics); [] when missing. */
async function listDir(dir: string, report: CleanTmpReport): Promise<import('node:fs').Dirent[]> {
  try {
    return await fsp.readdir(dir, {withFileTypes: true})
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code !== 'ENOENT' && code !== 'ENOTDIR') report.errors++
    return []
  }
}

/** True when a process with this pid exists on this host (EPERM means it exists but is not ours). */
export function pidAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

