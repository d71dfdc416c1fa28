/**
 * The identity `lmtp serve` runs as: `--user` / `--group` (dropped to after the listeners are bound),
 * `--socket-owner` (owner of the Unix sockets it creates) and the `uid=` / `gid=` of users file entries. Names are
 * resolved through the system's name service (`getent`, so NSS sources such as LDAP count), numbers are taken
 * as they are.
 */
import {execFileSync} from 'node:child_process'

/** A resolved user and group, as numbers (and the user name when known, for initgroups). */
export interface Identity {
  uid: number
  gid: number
  /** The user name, for supplementary groups (initgroups); undefined for a bare number not in passwd. */
  userName?: string
}

/** A name or number that does not exist, or a malformed owner; the message names the flag and the next step. */
export class IdentityError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'IdentityError'
  }
}

/** One passwd or group entry from `getent`, or undefined when there is none. */
function getent(db: 'passwd' | 'group', key: string): string[] | undefined {
  try {
    const out = execFileSync('getent', [db, key], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']})
    const line = out.split('\n')[0]
    return line ? line.split(':') : undefined
  } catch {
    return undefined
  }
}

/** Resolves a user (name or number) to {uid, primary gid, name}; throws IdentityError when unknown. */
export function lookupUser(user: string, what = '--user'): {uid: number; gid: number; name?: string} {
  const entry = getent('passwd', user)
  if (entry) return {uid: Number(entry[2]), gid: Number(entry[3]), name: entry[0]}
  if (/^\d+$/.test(user)) return {uid: Number(user), gid: Number(user)}
  throw new IdentityError(`${what} ${user}: no such user; create it (e.g. useradd --system ${user}) or give another`)
}

/** Resolves a group (name or number) to its gid; throws IdentityError when unknown. */
export function lookupGroup(group: string, what = '--group'): number {
  const entry = getent('group', group)
  if (entry) return Number(entry[2])
  if (/^\d+$/.test(group)) return Number(group)
  throw new IdentityError(`${what} ${group}: no such group; create it (groupadd --system ${group}) or give another`)
}

/** `--user NAME [--group NAME]`: the identity to drop to (the user's primary group unless --group is given). */
export function resolveIdentity(user: string, group?: string): Identity {
  const u = lookupUser(user)
  return {uid: u.uid, gid: group === undefined ? u.gid : lookupGroup(group), userName: u.name}
}

/** `USER[:GROUP]` of --socket-owner (or a users file's owner): the group defaults to the user's primary group. */
export function parseOwner(text: string, what: string): {uid: number; gid: number} {
  const [user, group, extra] = text.split(':')
  if (!user || extra !== undefined || group === '') {
    throw new IdentityError(`${what} ${text}: write USER or USER:GROUP (names or numbers), e.g. postfix:postfix`)
  }
  const u = lookupUser(user, what)
  return {uid: u.uid, gid: group === undefined ? u.gid : lookupGroup(group, what)}
}

/** True when this process runs as root (effective uid 0). */
export function runningAsRoot(): boolean {
  return process.geteuid?.() === 0
}

/**
 * Drops to `id` for good: supplementary groups first (initgroups with the user's name, else just the gid), then
 * the gid, then the uid (the order matters: after setuid the process may no longer change its groups). Then it
 * checks that root cannot be regained (setuid(0) must fail) and throws if it can.
 */
export function dropPrivileges(id: Identity): void {
  // process.initgroups exists on POSIX but is missing from @types/node 20.
  const initgroups = (process as unknown as {initgroups?: (user: string, extraGroup: number) => void}).initgroups
  if (id.userName !== undefined && initgroups) initgroups(id.userName, id.gid)
  else process.setgroups!([id.gid])
  process.setgid!(id.gid)
  process.setuid!(id.uid)
  if (id.uid === 0) return
  let regained = false
  try {
    process.setuid!(0)
    regained = true
  } catch {
    // Expected: EPERM.
  }
  if (regained || process.getuid!() === 0 || process.geteuid!() === 0) {
    throw new IdentityError(`dropping to uid ${id.uid} did not stick: the process could become root again; refusing to run`)
  }
}
