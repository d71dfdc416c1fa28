/**
 * Maildir++ quota accounting: the `maildirsize` file in each Maildir, which Dovecot and Courier read too, so the
 * operator's IMAP server and this delivery agent agree on how full a mailbox is.
 *
 * File format: first line the limit (`<bytes>S`, `<bytes>S,<count>C` or `<count>C`), then one `<bytes> <count>`
 * line per change (negative for removals). Usage is the sum of those lines. The file is rebuilt from the
 * messages in new/ and cur/ (sizes from `,S=` in the names, else stat) when it is missing, malformed, larger
 * than 5120 bytes, carries a different limit than the one configured, or says "over quota" but is older than
 * 15 minutes (the Maildir++ rules); the rebuilt file replaces the old one atomically (tmp + rename).
 * Changes are appended with O_APPEND in one write.
 *
 * Several processes (`serve --workers`, several instances, several hosts over NFS) may deliver into one Maildir:
 * every read-decide-append and every rebuild runs under {@link withQuotaLock} (a per-process KeyedMutex in front
 * of the cross-process `maildirsize.lock` dotlock), so no rebuild can rename over a line another process
 * appended, and no two processes can both decide that the last free bytes are theirs.
 */
import {constants} from 'node:fs'
import * as fsp from 'node:fs/promises'
import path from 'node:path'
import {acquireDotlock, type DotlockOptions} from './dotlock.js'
import {chownFile, CREATE_EXCLUSIVE, FILE_MODE, type MailboxOwner, pinDirectory, uniqueName, writeAll} from './maildir.js'

/** Name of the Maildir++ quota file inside a Maildir. */
export const MAILDIRSIZE = 'maildirsize'
/** The cross-process lock of a Maildir's quota accounting (the name Dovecot uses for its recalculation). */
export const MAILDIRSIZE_LOCK = 'maildirsize.lock'
/** A maildirsize larger than this is rebuilt (Maildir++). */
export const MAILDIRSIZE_MAX_BYTES = 5120
/** An over-quota maildirsize older than this is rebuilt before refusing (Maildir++: 15 minutes). */
export const STALE_OVER_QUOTA_MS = 15 * 60 * 1000

/** The contents of a maildirsize file. */
export interface MaildirSize {
  /** Byte limit from the first line, when it has one. */
  limitBytes?: number
  /** Message-count limit from the first line, when it has one. */
  limitCount?: number
  /** Sum of the size column. */
  bytes: number
  /** Sum of the count column. */
  count: number
}

/** Current usage of a mailbox. */
export interface Usage {
  bytes: number
  count: number
}

/** Parses maildirsize text; undefined when malformed (the caller then recalculates). */
export function parseMaildirSize(text: string): MaildirSize | undefined {
  const lines = text.split('\n')
  if (lines[lines.length - 1] === '') lines.pop()
  const head = lines.shift()
  if (head === undefined) return undefined
  const out: MaildirSize = {bytes: 0, count: 0}
  if (head.trim() !== '') {
    for (const part of head.trim().split(',')) {
      const m = /^(\d+)([SC])$/.exec(part.trim())
      if (!m) return undefined
      if (m[2] === 'S') out.limitBytes = Number(m[1])
      else out.limitCount = Number(m[1])
    }
  }
  for (const line of lines) {
    const m = /^\s*(-?\d+)\s+(-?\d+)\s*$/.exec(line)
    if (!m) return undefined
    out.bytes += Number(m[1])
    out.count += Number(m[2])
  }
  if (!Number.isSafeInteger(out.bytes) || !Number.isSafeInteger(out.count)) return undefined
  return out
}

/** The first line of a maildirsize for a byte limit (and optional count limit), without the newline. */
export function formatLimitLine(limitBytes: number | undefined, limitCount?: number): string {
  const parts: string[] = []
  if (limitBytes !== undefined) parts.push(`${limitBytes}S`)
  if (limitCount !== undefined) parts.push(`${limitCount}C`)
  return parts.join(',')
}

/** Formats a whole maildirsize file: limit line and one usage line. */
export function formatMaildirSize(limitBytes: number | undefined, usage: Usage, limitCount?: number): string {
  return `${formatLimitLine(limitBytes, limitCount)}\n${usage.bytes} ${usage.count}\n`
}

/** Size of a message file from its `,S=` name field, else from lstat; undefined when it vanished. */
async function messageSize(dir: string, name: string): Promise<number | undefined> {
  const m = /,S=(\d+)/.exec(name.split(':')[0]!)
  if (m) return Number(m[1])
  try {
    const st = await fsp.lstat(path.join(dir, name))
    return st.isFile() ? st.size : undefined
  } catch {
    return undefined
  }
}

/** Sums the messages in new/ and cur/ of a Maildir (missing folders count as empty). */
export async function scanUsage(maildir: string): Promise<Usage> {
  const usage: Usage = {bytes: 0, count: 0}
  for (const sub of ['new', 'cur']) {
    const dir = path.join(maildir, sub)
    let handle: Awaited<ReturnType<typeof fsp.opendir>>
    try {
      handle = await fsp.opendir(dir)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue
      throw err
    }
    for await (const entry of handle) {
      if (entry.name.startsWith('.') || entry.isDirectory()) continue
      const size = await messageSize(dir, entry.name)
      if (size === undefined) continue
      usage.bytes += size
      usage.count++
    }
  }
  return usage
}

/**
 * Rebuilds maildirsize from the messages and replaces the file atomically; returns the usage found. With an
 * owner (users file `uid=` / `gid=`) the temp file is created in the pinned tmp/ (see pinDirectory) and given to
 * it through its descriptor before the rename.
 */
export async function recalculate(maildir: string, limitBytes: number | undefined, host?: string, owner?: MailboxOwner): Promise<Usage> {
  const usage = await scanUsage(maildir)
  const tmpDir = path.join(maildir, 'tmp')
  await fsp.mkdir(tmpDir, {recursive: true, mode: 0o700})
  const pinned = owner ? await pinDirectory(tmpDir) : undefined
  const tmp = path.join(pinned?.path ?? tmpDir, uniqueName(host))
  try {
    const h = await fsp.open(tmp, CREATE_EXCLUSIVE, FILE_MODE)
    try {
      try {
        if (owner) await chownFile(h, owner, tmp)
        await writeAll(h, Buffer.from(formatMaildirSize(limitBytes, usage)))
      } finally {
        await h.close()
      }
      await fsp.rename(tmp, path.join(maildir, MAILDIRSIZE))
    } catch (err) {
      await fsp.unlink(tmp).catch(() => undefined)
      throw err
    }
  } finally {
    await pinned?.close()
  }
  return usage
}

/** Reads the maildirsize file: text, size and age; undefined when missing. */
async function readMaildirSizeFile(maildir: string): Promise<{text: string; bytes: number; mtimeMs: number} | undefined> {
  let h: fsp.FileHandle
  try {
    h = await fsp.open(path.join(maildir, MAILDIRSIZE), constants.O_RDONLY | constants.O_NOFOLLOW)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  try {
    const st = await h.stat()
    // Never read a huge file whole: beyond the limit it is rebuilt anyway.
    if (st.size > MAILDIRSIZE_MAX_BYTES) return {text: '', bytes: st.size, mtimeMs: st.mtimeMs}
    const buf = Buffer.alloc(st.size)
    let got = 0
    while (got < st.size) {
      const {bytesRead} = await h.read(buf, got, st.size - got, got)
      if (bytesRead === 0) break
      got += bytesRead
    }
    return {text: buf.subarray(0, got).toString('latin1'), bytes: st.size, mtimeMs: st.mtimeMs}
  } finally {
    await h.close()
  }
}

/** Usage of a mailbox plus whether it was just recalculated. */
export interface UsageReading extends Usage {
  recalculated: boolean
  /** Age of the maildirsize file in milliseconds (0 right after a recalculation). */
  ageMs: number
}

/**
 * Current usage of a Maildir under a byte limit, from maildirsize, recalculating when Maildir++ says so
 * (missing, malformed, too large, or a different limit). Call under the mailbox's lock.
 */
export async function readUsage(
  maildir: string,
  limitBytes: number,
  host?: string,
  now = Date.now(),
  owner?: MailboxOwner,
): Promise<UsageReading> {
  const file = await readMaildirSizeFile(maildir)
  const parsed = file && file.bytes <= MAILDIRSIZE_MAX_BYTES ? parseMaildirSize(file.text) : undefined
  if (!file || !parsed || parsed.limitBytes !== limitBytes) {
    const usage = await recalculate(maildir, limitBytes, host, owner)
    return {...usage, recalculated: true, ageMs: 0}
  }
  return {bytes: parsed.bytes, count: parsed.count, recalculated: false, ageMs: Math.max(0, now - file.mtimeMs)}
}

/**
 * Decides whether a message of `size` octets fits: `tooBig` when it exceeds the whole quota, `over` when
 * usage + size exceeds it (after one recalculation if the file is stale), else `ok` with the usage.
 * Call under the mailbox's lock.
 */
export async function checkQuota(
  maildir: string,
  limitBytes: number,
  size: number,
  host?: string,
): Promise<{verdict: 'ok' | 'over' | 'tooBig'; usage: Usage}> {
  if (size > limitBytes) return {verdict: 'tooBig', usage: {bytes: 0, count: 0}}
  let usage = await readUsage(maildir, limitBytes, host)
  if (usage.bytes + size > limitBytes && !usage.recalculated && usage.ageMs > STALE_OVER_QUOTA_MS) {
    usage = {...(await recalculate(maildir, limitBytes, host)), recalculated: true, ageMs: 0}
  }
  return {verdict: usage.bytes + size > limitBytes ? 'over' : 'ok', usage}
}

/**
 * Appends one `<bytes> <count>` line to maildirsize with O_APPEND in a single write. When the file does not exist
 * nothing is written (the next reading rebuilds it from the messages, which then include this one). Returns
 * whether a line was appended.
 */
export async function appendUsage(maildir: string, bytes: number, count: number): Promise<boolean> {
  return appendUsageLines(maildir, [{bytes, count}])
}

/** Appends several usage lines in one O_APPEND write (see {@link appendUsage}); true when written. */
export async function appendUsageLines(maildir: string, lines: Usage[]): Promise<boolean> {
  if (lines.length === 0) return true
  let h: fsp.FileHandle
  try {
    h = await fsp.open(path.join(maildir, MAILDIRSIZE), constants.O_WRONLY | constants.O_APPEND | constants.O_NOFOLLOW)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw err
  }
  try {
    const text = Buffer.from(lines.map((l) => `${l.bytes} ${l.count}\n`).join(''))
    const {bytesWritten} = await h.write(text, 0, text.length)
    if (bytesWritten !== text.length) throw new Error(`short append to ${MAILDIRSIZE}: ${bytesWritten} of ${text.length}`)
  } finally {
    await h.close()
  }
  return true
}

/**
 * Serialises async work per key (one mailbox at a time) with a promise chain; different keys run in parallel.
 * Keys are dropped once idle so the map does not grow with every mailbox ever seen.
 */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>()

  /** Runs `fn` after every earlier `run` with the same key has settled. */
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve()
    let release!: () => void
    const mine = new Promise<void>((resolve) => {
      release = resolve
    })
    const tail = previous.then(() => mine)
    this.tails.set(key, tail)
    await previous
    try {
      return await fn()
    } finally {
      release()
      if (this.tails.get(key) === tail) this.tails.delete(key)
    }
  }

  /** Number of keys with work queued or running (for tests). */
  get activeKeys(): number {
    return this.tails.size
  }
}

/**
 * Runs `fn` holding the quota lock of one Maildir: first the in-process mutex (so one process polls the file
 * lock at a time), then the cross-process dotlock `maildirsize.lock`. Everything that reads-then-writes
 * maildirsize (check + append, rebuild) and the rename that a reservation covers runs inside. Keep `fn` short:
 * other processes poll for the lock meanwhile.
 */
export async function withQuotaLock<T>(
  mutex: KeyedMutex,
  maildir: string,
  fn: () => Promise<T>,
  options: DotlockOptions = {},
): Promise<T> {
  return mutex.run(maildir, async () => {
    const release = await acquireDotlock(path.join(maildir, MAILDIRSIZE_LOCK), options)
    try {
      return await fn()
    } finally {
      await release().catch(() => undefined)
    }
  })
}

/**
 * Usage from maildirsize without a lock and without ever rebuilding: undefined when the file is missing,
 * malformed, too large, for another limit, or old enough that an over-quota reading must be re-checked. Used to
 * refuse cheaply, before writing, a message that clearly does not fit; the decision that counts is made under
 * the lock.
 */
export async function peekUsage(maildir: string, limitBytes: number, now = Date.now()): Promise<Usage | undefined> {
  const file = await readMaildirSizeFile(maildir).catch(() => undefined)
  if (!file || file.bytes > MAILDIRSIZE_MAX_BYTES || now - file.mtimeMs > STALE_OVER_QUOTA_MS) return undefined
  const parsed = parseMaildirSize(file.text)
  if (!parsed || parsed.limitBytes !== limitBytes) return undefined
  return {bytes: parsed.bytes, count: parsed.count}
}

/** Thrown by {@link QuotaCommitter.reserveAndCommit} when the message does not fit: its verdict decides the reply. */
export class QuotaRefusal extends Error {
  constructor(readonly verdict: 'over' | 'tooBig') {
    super(verdict === 'over' ? 'mailbox over quota' : 'message larger than the mailbox quota')
    this.name = 'QuotaRefusal'
  }
}

/** Options of the quota bookkeeping that writes (host for rebuilt temp names, lock timing, warnings). */
export interface QuotaWriteOptions {
  host?: string
  lock?: DotlockOptions
  onWarning?: (message: string, error?: unknown) => void
}

interface PendingCommit {
  owner?: MailboxOwner
  limitBytes: number
  size: number
  commit: () => Promise<void>
  resolve: () => void
  reject: (err: unknown) => void
}

/**
 * Reserves quota and commits messages into one Maildir, in batches: every message of this process that is
 * ready while the mailbox's lock is taken waits for the next round, and each round takes the lock once for all
 * of them (one read of maildirsize, one append with one line per message, the renames into new/ in parallel).
 * The decision, the lines and the renames happen under the lock, so the tally and the files appear together
 * for every other process, and a rebuild (also under the lock) counts each message exactly once.
 */
export class QuotaCommitter {
  private readonly queues = new Map<string, PendingCommit[]>()

  constructor(
    private readonly mutex: KeyedMutex,
    private readonly options: QuotaWriteOptions = {},
  ) {}

  /**
   * Resolves once `commit` (the rename of the finished, fsync'd temp file into new/) ran with `size` octets
   * counted; rejects with {@link QuotaRefusal} when the message does not fit (commit is then not called), or
   * with commit's error (its line is then taken back with a negative one: Maildir++ allows them). `owner`: the
   * mailbox's (users file `uid=` / `gid=`), given the lock file and a rebuilt maildirsize.
   */
  reserveAndCommit(maildir: string, limitBytes: number, size: number, commit: () => Promise<void>, owner?: MailboxOwner): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const entry: PendingCommit = {owner, limitBytes, size, commit, resolve, reject}
      const queue = this.queues.get(maildir)
      if (queue) {
        queue.push(entry)
        return
      }
      this.queues.set(maildir, [entry])
      void this.drain(maildir)
    })
  }

  private async drain(maildir: string): Promise<void> {
    for (;;) {
      const queue = this.queues.get(maildir)
      if (!queue || queue.length === 0) {
        this.queues.delete(maildir)
        return
      }
      const batch = queue.splice(0)
      try {
        await withQuotaLock(this.mutex, maildir, () => this.commitBatch(maildir, batch), {...this.options.lock, owner: batch[0]!.owner})
      } catch (err) {
        // The lock or the reading failed: nobody in this batch was committed.
        for (const e of batch) e.reject(err)
      }
    }
  }

  private async commitBatch(maildir: string, batch: PendingCommit[]): Promise<void> {
    const host = this.options.host
    const owner = batch[0]!.owner
    let usage = await readUsage(maildir, batch[0]!.limitBytes, host, undefined, owner)
    let reserved = 0
    const accepted: PendingCommit[] = []
    const refused: [PendingCommit, QuotaRefusal][] = []
    for (const e of batch) {
      if (e.size > e.limitBytes) {
        refused.push([e, new QuotaRefusal('tooBig')])
        continue
      }
      if (usage.bytes + reserved + e.size > e.limitBytes && !usage.recalculated && usage.ageMs > STALE_OVER_QUOTA_MS) {
        // Maildir++: an old over-quota reading is checked against the files before refusing.
        usage = {...(await recalculate(maildir, e.limitBytes, host, owner)), recalculated: true, ageMs: 0}
      }
      if (usage.bytes + reserved + e.size > e.limitBytes) {
        refused.push([e, new QuotaRefusal('over')])
        continue
      }
      reserved += e.size
      accepted.push(e)
    }
    const appended = await this.change(maildir, accepted.map((e) => ({bytes: e.size, count: 1})))
    const outcomes = await Promise.allSettled(accepted.map((e) => e.commit()))
    const failed = accepted.filter((_, i) => outcomes[i]!.status === 'rejected')
    if (appended) await this.change(maildir, failed.map((e) => ({bytes: -e.size, count: -1})))
    // Settle only after the lock's work is done (the caller releases the lock right after).
    for (const [e, why] of refused) e.reject(why)
    accepted.forEach((e, i) => {
      const o = outcomes[i]!
      if (o.status === 'fulfilled') e.resolve()
      else e.reject(o.reason)
    })
  }

  /** Takes back a committed message that could not be made durable: runs `remove` and appends a negative line. */
  async releaseAndRemove(maildir: string, size: number, remove: () => Promise<void>, owner?: MailboxOwner): Promise<void> {
    await withQuotaLock(
      this.mutex,
      maildir,
      async () => {
        await remove()
        await this.change(maildir, [{bytes: -size, count: -1}])
      },
      {...this.options.lock, owner},
    )
  }

  /** Appends usage lines; on failure removes maildirsize (rebuilt from the files on the next reading). */
  private async change(maildir: string, lines: Usage[]): Promise<boolean> {
    try {
      return await appendUsageLines(maildir, lines)
    } catch (err) {
      this.options.onWarning?.(`cannot update ${MAILDIRSIZE} of ${maildir}`, err)
      await fsp.unlink(path.join(maildir, MAILDIRSIZE)).catch(() => undefined)
      return false
    }
  }
}
