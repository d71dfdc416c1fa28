/**
 * What is at a Unix socket path before we listen there: nothing, a stale socket file left by a dead process
 * (safe to remove), a live socket (someone answers: never take it over), or something that is not a socket
 * (never removed). Used by the LMTP listeners and by the watch event feed. And the one ownership and mode check
 * for paths that another user could have prepared (the feed's socket and directory, serve's --record directory).
 */
import {type Stats, readFileSync} from 'node:fs'
import {lstat, realpath, unlink} from 'node:fs/promises'
import net from 'node:net'
import {dirname, resolve} from 'node:path'

/** The state of a socket path. */
export type SocketFileState = 'absent' | 'stale' | 'live' | 'not-socket'

/** Looks at a socket path (connecting to it to tell live from stale). */
export async function inspectSocketFile(path: string): Promise<SocketFileState> {
  let isSocket: boolean
  try {
    isSocket = (await lstat(path)).isSocket()
  } catch {
    return 'absent'
  }
  if (!isSocket) return 'not-socket'
  const alive = await new Promise<boolean>((resolve) => {
    const s = net.connect({path})
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
  return alive ? 'live' : 'stale'
}

/**
 * Makes a socket path free to listen on: removes a stale socket file; returns the state found so the caller
 * can refuse 'live' and 'not-socket' with its own message.
 */
export async function clearStaleSocketFile(path: string): Promise<SocketFileState> {
  const state = await inspectSocketFile(path)
  if (state === 'stale') await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err
  })
  return state
}

/** What kind of entry {@link checkTrustedPath} expects at the path. */
export type TrustedKind = 'directory' | 'socket'

/** Options of {@link checkTrustedPath}. */
export interface TrustedPathOptions {
  /** Also refuse any group or other permission bit (a 0700 directory, a 0600 socket). */
  private?: boolean
  /** The user the path must belong to (default: the running user); root-owned entries are always trusted. */
  uid?: number
}

/**
 * Why a path another user may have prepared must not be trusted, or undefined when it can be (or is absent).
 * The one check behind the event feed (serve's directory, watch's socket) and `serve --record`: the entry is of
 * the expected kind and not a symlink, belongs to the running user or root, is not writable by group or others
 * (nor accessible at all with `private`); every directory on the way belongs to the user or root, and is not
 * writable by others unless it is sticky (as /tmp is); a symlink on the way must belong to the user or root.
 */
export async function checkTrustedPath(target: string, kind: TrustedKind, options: TrustedPathOptions = {}): Promise<string | undefined> {
  const uid = options.uid ?? process.getuid?.()
  if (uid === undefined) return undefined
  const full = resolve(target)
  let st: Stats
  try {
    st = await lstat(full)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  const trusted = (owner: number): boolean => owner === uid || owner === 0
  if (st.isSymbolicLink()) return `${full} is a symlink (owned by ${ownerName(st.uid)}): a ${kind} is expected there`
  if (kind === 'directory' ? !st.isDirectory() : !st.isSocket()) return `${full} is not a ${kind}`
  if (!trusted(st.uid)) return `${full} is owned by ${ownerName(st.uid)}, not by ${ownerName(uid)} or root`
  const forbidden = options.private ? 0o077 : 0o022
  if ((st.mode & forbidden) !== 0) {
    return `${full} has mode 0${(st.mode & 0o777).toString(8)}: it must not be ${options.private ? 'accessible to' : 'writable by'} group or others`
  }
  // The directories on the way, as written and as resolved (a trusted symlink may lead elsewhere).
  for (const chain of [ancestors(dirname(full)), ancestors(await realpath(dirname(full)))]) {
    for (const dir of chain) {
      const a = await lstat(dir)
      if (!trusted(a.uid)) return `${dir} (on the way to ${full}) is owned by ${ownerName(a.uid)}, not by ${ownerName(uid)} or root`
      if (a.isDirectory() && (a.mode & 0o022) !== 0 && (a.mode & 0o1000) === 0) {
        return `${dir} (on the way to ${full}) is writable by others and not sticky (mode 0${(a.mode & 0o7777).toString(8)})`
      }
    }
  }
  return undefined
}

/** `/a/b/c` -> [`/`, `/a`, `/a/b`, `/a/b/c`]. */
function ancestors(dir: string): string[] {
  const out: string[] = []
  for (let d = dir; ; d = dirname(d)) {
    out.unshift(d)
    if (dirname(d) === d) return out
  }
}

/** `name (uid N)` from /etc/passwd, or `uid N`. */
function ownerName(uid: number): string {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const [name, , id] = line.split(':')
      if (id !== undefined && Number(id) === uid) return `${name} (uid ${uid})`
    }
  } catch {
    // No passwd file: the number alone.
  }
  return `uid ${uid}`
}
