/**
 * A cross-process lock as a file (a "dotlock"), for work on one mailbox shared by several `lmtp serve`
 * processes, on one host or several hosts over NFS. Node has no flock/fcntl; an exclusive create
 * (O_CREAT|O_EXCL) is atomic on local file systems and on NFSv3 and later, and needs no native code.
 *
 * The lock file holds `<pid> <host> <pid namespace> <token>` (the token is new for every acquisition, so a
 * lock is told from a later one even when the file system reuses its inode). A lock whose holder is provably dead (same host name and
 * same pid namespace, pid gone) is broken at once; any other lock older than `staleMs` is broken too (its
 * holder crashed on another host, or in another container). Breaking renames the lock aside and checks that
 * the renamed file is the one judged stale (same content), so two waiters breaking at once cannot remove a
 * fresh lock. The same file name as Dovecot's (`maildirsize.lock`) keeps its quota recalculation out too.
 */
import {randomBytes} from 'node:crypto'
import {constants, readlinkSync} from 'node:fs'
import * as fsp from 'node:fs/promises'
import os from 'node:os'

/** Options of {@link acquireDotlock}. */
export interface DotlockOptions {
  /** Host name written into the lock (default os.hostname()). */
  host?: string
  /** A lock older than this is taken as left by a crash and broken. Default 30 s. */
  staleMs?: number
  /** Give up waiting after this long (the error has code ETIMEDOUT). Default 60 s. */
  timeoutMs?: number
  /** Whether a pid of this host and pid namespace is alive (tests). Default: signal 0. */
  isAlive?: (pid: number) => boolean
  /** Current time in ms (tests). */
  now?: () => number
  /** Waits between attempts (tests inject a gate). Default: a timer. */
  wait?: (ms: number) => Promise<void>
  /** Owner given to the lock file through its descriptor (the mailbox's, users file `uid=` / `gid=`). */
  owner?: {uid: number; gid: number}
}

/** Releases a lock taken by {@link acquireDotlock}; safe to call twice. */
export type DotlockRelease = () => Promise<void>

const CREATE = constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW

/** This process's pid namespace (Linux), so that a pid seen in another container is never judged dead. */
const PID_NAMESPACE = (() => {
  try {
    return readlinkSync('/proc/self/ns/pid').replace(/[^\w:[\]]/g, '')
  } catch {
    return '-'
  }
})()

/** The identity of this process in a lock file: `<pid> <host> <pid namespace>` (a token follows it). */
export function dotlockOwner(host = os.hostname()): string {
  return `${process.pid} ${host.replace(/\s/g, '_')} ${PID_NAMESPACE}`
}

function signalZero(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Whether a lock's content names a process of this host and pid namespace that no longer exists. */
function holderDead(content: string, host: string, isAlive: (pid: number) => boolean): boolean {
  const [pid, lockHost, ns] = content.trim().split(' ')
  const n = Number(pid)
  if (!Number.isSafeInteger(n) || n <= 0 || n === process.pid) return false
  return lockHost === host.replace(/\s/g, '_') && ns === PID_NAMESPACE && !isAlive(n)
}

/**
 * Takes the lock `lockPath` (waiting while another process holds it, breaking a stale one) and returns the
 * function that releases it. Rejects with code ETIMEDOUT after `timeoutMs`, or with the file system's error.
 */
export async function acquireDotlock(lockPath: string, options: DotlockOptions = {}): Promise<DotlockRelease> {
  const host = options.host ?? os.hostname()
  const staleMs = options.staleMs ?? 30_000
  const now = options.now ?? Date.now
  const wait = options.wait ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)))
  const isAlive = options.isAlive ?? signalZero
  const deadline = now() + (options.timeoutMs ?? 60_000)
  const owner = `${dotlockOwner(host)} ${randomBytes(8).toString('hex')}\n`
  for (let attempt = 0; ; attempt++) {
    if (await tryCreate(lockPath, Buffer.from(owner), options.owner)) return releaser(lockPath, owner)
    const held = await readLock(lockPath)
    if (held === undefined) continue // released meanwhile: try again at once
    if (holderDead(held.content, host, isAlive) || now() - held.mtimeMs > staleMs) {
      await breakLock(lockPath, held.content)
      continue
    }
    if (now() >= deadline) {
      const err: NodeJS.ErrnoException = new Error(
        `${lockPath} is held by ${held.content.trim() || 'an unknown process'}: gave up waiting (remove it by hand if that process is gone)`,
      )
      err.code = 'ETIMEDOUT'
      throw err
    }
    // Short critical sections: poll fast first, then back off (with jitter so waiters do not move in step).
    await wait(Math.min(50, 2 ** Math.min(attempt, 6) / 2) * (0.5 + Math.random()))
  }
}

/** Creates the lock file with our identity; false when it already exists. */
async function tryCreate(lockPath: string, owner: Buffer, fileOwner?: DotlockOptions['owner']): Promise<boolean> {
  let h: fsp.FileHandle
  try {
    h = await fsp.open(lockPath, CREATE, 0o600)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw err
  }
  try {
    if (fileOwner) await h.chown(fileOwner.uid, fileOwner.gid)
    const {bytesWritten} = await h.write(owner, 0, owner.length, 0)
    if (bytesWritten !== owner.length) throw new Error(`short write to ${lockPath}`)
    return true
  } catch (err) {
    await fsp.unlink(lockPath).catch(() => undefined)
    throw err
  } finally {
    await h.close()
  }
}

/** Content and age of an existing lock; undefined when it is gone. */
async function readLock(lockPath: string): Promise<{content: string; mtimeMs: number} | undefined> {
  try {
    const st = await fsp.lstat(lockPath)
    return {content: await readText(lockPath), mtimeMs: st.mtimeMs}
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

/** The first bytes of a lock file (never through a symlink). */
async function readText(file: string): Promise<string> {
  const text = await fsp.readFile(file, {encoding: 'latin1', flag: constants.O_RDONLY | constants.O_NOFOLLOW})
  return text.slice(0, 300)
}

/** Removes a stale lock, but only the file judged stale (by content): a fresh lock renamed by mistake is put back. */
async function breakLock(lockPath: string, staleContent: string): Promise<void> {
  const aside = `${lockPath}.stale.${randomBytes(6).toString('hex')}`
  try {
    await fsp.rename(lockPath, aside)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return // someone else broke or released it
    throw err
  }
  if ((await readText(aside)) !== staleContent) {
    // A new holder took the lock between our reading and our rename: give it back (link never overwrites).
    await fsp.link(aside, lockPath).catch(() => undefined)
  }
  await fsp.unlink(aside).catch(() => undefined)
}

function releaser(lockPath: string, owner: string): DotlockRelease {
  let released = false
  return async () => {
    if (released) return
    released = true
    try {
      // Only our own lock: if it was broken as stale and retaken, it is someone else's now.
      if ((await readText(lockPath)) === owner) await fsp.unlink(lockPath)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
  }
}
