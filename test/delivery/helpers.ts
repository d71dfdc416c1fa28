/** Shared helpers of the delivery tests: paths without the (separately developed) parser, temp roots, spools. */
import {mkdtemp, readdir, rm} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import type {Path} from '../../src/protocol/address.js'
import type {AcceptedRecipient, Envelope, SessionInfo} from '../../src/protocol/backend.js'
import {FileSpool} from '../../src/delivery/spool.js'

/** Builds a Path for `local@domain` (quoted local parts: pass `value` for the unquoted form). */
export function mkPath(address: string, value?: string): Path {
  if (address === '') {
    return {address: '', localPart: '', localPartValue: '', domain: '', isNull: true, isPostmaster: false, isUtf8: false}
  }
  if (address.toLowerCase() === 'postmaster') {
    return {address, localPart: '', localPartValue: '', domain: '', isNull: false, isPostmaster: true, isUtf8: false}
  }
  const at = address.lastIndexOf('@')
  const localPart = at >= 0 ? address.slice(0, at) : address
  const domain = at >= 0 ? address.slice(at + 1) : ''
  return {
    address,
    localPart,
    localPartValue: value ?? localPart,
    domain,
    isNull: false,
    isPostmaster: false,
    isUtf8: /[^\x00-\x7f]/.test(address),
  }
}

/** A fresh temp directory; remember to remove it (see cleanup). */
export async function tempRoot(prefix = 'lmtp-delivery-'): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), prefix))
}

/** Removes a temp directory tree. */
export async function cleanup(dir: string): Promise<void> {
  await rm(dir, {recursive: true, force: true})
}

/** A session as the server would describe it. */
export const session: SessionInfo = {
  sessionId: 's1',
  peer: '127.0.0.1:40000',
  lhlo: 'client.example',
  tls: false,
  hostname: 'mx.test',
}

/** An envelope from `from` to `rcpts` (in order, duplicates kept). */
export function envelope(from: string, rcpts: string[], smtputf8 = false): Envelope {
  const recipients: AcceptedRecipient[] = rcpts.map((r, index) => ({index, path: mkPath(r)}))
  return {transactionId: 'tx1', from: mkPath(from), params: smtputf8 ? {smtputf8: true} : {}, recipients}
}

/** A finished spool holding `body` (written in `pieces` chunks of roughly equal size). */
export async function spoolOf(dir: string, body: string | Buffer, pieces = 1): Promise<FileSpool> {
  const spool = await FileSpool.open({dir, host: 'testhost'})
  const buf = typeof body === 'string' ? Buffer.from(body) : body
  const step = Math.max(1, Math.ceil(buf.length / pieces))
  for (let i = 0; i < buf.length; i += step) await spool.write(buf.subarray(i, i + step))
  await spool.finish()
  return spool
}

/** Recursively lists every path under `dir`, relative to it. */
export async function listTree(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, {withFileTypes: true, recursive: true})) {
    out.push(path.relative(dir, path.join(e.parentPath, e.name)))
  }
  return out.sort()
}

/** Local parts (as their unquoted value) that must never be mapped. */
export const UNSAFE_LOCAL_PARTS: [string, string][] = [
  ['dot-dot', '..'],
  ['dot', '.'],
  ['parent traversal', '../x'],
  ['deep traversal', '../../../etc/passwd'],
  ['slash', 'a/b'],
  ['absolute', '/etc'],
  ['backslash', 'a\\b'],
  ['NUL', 'a\u0000b'],
  ['CR', 'a\rb'],
  ['LF', 'a\nb'],
  ['tab', 'a\tb'],
  ['DEL', 'a\u007fb'],
  ['C1 control', 'a\u0085b'],
  ['leading dot', '.hidden'],
  ['inner dot-dot', 'a..b'],
  ['empty', ''],
  ['percent-encoded dots', '%2e%2e'],
  ['percent-encoded slash', 'a%2fb'],
  ['percent hack', 'user%other.example'],
  ['space', 'john doe'],
  ['no-break space', 'john\u00a0doe'],
  ['U+2215 division slash', 'a\u2215b'],
  ['U+2044 fraction slash', 'a\u2044b'],
  ['U+FF0F fullwidth solidus', 'a\uff0fb'],
  ['U+FF3C fullwidth reverse solidus', 'a\uff3cb'],
  ['U+FF0E fullwidth full stop pair', '\uff0e\uff0e'],
  ['U+2024 one dot leader', '\u2024\u2024'],
  ['U+FE52 small full stop', '\ufe52hidden'],
  ['zero-width space', 'a\u200bb'],
  ['right-to-left override', 'a\u202eb'],
  ['overlong (65 octets)', 'a'.repeat(65)],
  ['overlong in UTF-8 octets', '\u00e9'.repeat(33)],
  ['quote', 'a"b'],
  ['angle bracket', 'a<b'],
]
