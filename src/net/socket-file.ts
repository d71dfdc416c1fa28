/**
 * What is at a Unix socket path before we listen there: nothing, a stale socket file left by a dead process
 * (safe to remove), a live socket (someone answers: never take it over), or something that is not a socket
 * (never removed). Used by the LMTP listeners and by the watch event feed.
 */
import {lstat, unlink} from 'node:fs/promises'
import net from 'node:net'

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
