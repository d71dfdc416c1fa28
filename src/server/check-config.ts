/**
 * `lmtp serve --check-config` (like `postfix check`): every check serve makes at startup, without binding or
 * dropping privileges, collected instead of stopping at the first. The users file, the certificate and key, the
 * identities, and whether the Maildir root (and its spool directory) will be writable by the serving user.
 */
import {stat} from 'node:fs/promises'
import path from 'node:path'
import {SPOOL_DIR} from '../delivery/mailbox.js'
import {type Identity, IdentityError, parseOwner, resolveIdentity} from './identity.js'
import {checkOwnersAllowed, loadTls, loadUsers} from './reload.js'
import type {ServeOptions} from './run-server.js'
import {expiryWarning} from './tls-files.js'

/** What --check-config found. */
export interface ConfigReport {
  /** Problems that make serve refuse to start (exit 78). */
  problems: string[]
  /** Things it would start with, but warn about. */
  warnings: string[]
}

/** Runs the checks (see the module comment). */
export async function checkServeConfig(o: ServeOptions): Promise<ConfigReport> {
  const report: ConfigReport = {problems: [], warnings: []}
  const attempt = async (step: () => unknown): Promise<void> => {
    try {
      await step()
    } catch (err) {
      report.problems.push((err as Error).message)
    }
  }
  let identity: Identity | undefined
  await attempt(() => {
    identity = o.user === undefined ? undefined : resolveIdentity(o.user, o.group)
  })
  await attempt(() => o.socketOwner !== undefined && parseOwner(o.socketOwner, '--socket-owner'))
  if (o.usersFile) await attempt(async () => checkOwnersAllowed(await loadUsers(o.usersFile!), o.usersFile!, identity))
  if (o.tlsFiles) {
    await attempt(async () => {
      const files = await loadTls(o.tlsFiles!.cert, o.tlsFiles!.key)
      const warning = expiryWarning(files, o.tlsFiles!.cert)
      if (warning) report.warnings.push(warning)
    })
  }
  if (!identity && process.geteuid?.() === 0) report.warnings.push('delivering as root: add --user (e.g. vmail)')
  const uid = identity?.uid ?? process.geteuid?.() ?? 0
  const gid = identity?.gid ?? process.getegid?.() ?? 0
  await attempt(() => checkWritableBy(path.resolve(o.maildir), uid, gid, 'Maildir root'))
  await attempt(() => checkWritableBy(path.join(path.resolve(o.maildir), SPOOL_DIR), uid, gid, 'spool directory'))
  return report
}

/** A directory serve writes into must be writable by uid/gid (a missing one is created at startup). */
async function checkWritableBy(dir: string, uid: number, gid: number, what: string): Promise<void> {
  const st = await stat(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined
    throw new IdentityError(`${what} ${dir}: ${err.message}`)
  })
  if (!st || uid === 0) return
  const bits = st.uid === uid ? (st.mode >> 6) & 7 : st.gid === gid ? (st.mode >> 3) & 7 : st.mode & 7
  if ((bits & 3) !== 3) {
    throw new IdentityError(`${what} ${dir} is not writable by uid ${uid} (it is ${st.uid}:${st.gid} mode ${(st.mode & 0o7777).toString(8)}): chown -R ${uid}:${gid} ${dir}, or run serve as its owner`)
  }
}
