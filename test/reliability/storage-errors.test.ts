/**
 * Storage errors hit one mailbox, not the transaction: a file where a directory should be, a directory that
 * cannot be written (immutable, since root ignores permission bits), a read-only mount. The recipient behind the
 * broken mailbox gets a 4xx (the client keeps it queued), every other recipient is delivered, nothing partial is
 * left in tmp/, and the same mailbox takes mail again once it is repaired.
 */
import {execFileSync} from 'node:child_process'
import {mkdir, mkdtemp, readdir, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {afterAll, afterEach, beforeEach, describe, expect, test} from 'vitest'
import {type TestServer, deliveredFiles, startServe} from '../support/serve.js'
import {brief, transact} from '../security/helpers.js'
import {requireHost} from '../support/host-gate.js'

const isRoot = process.getuid?.() === 0

/** True when `chattr +i` works on this file system (ext4 as root does; tmpfs and overlayfs may not). */
async function chattrWorks(): Promise<boolean> {
  if (!isRoot) return false
  const probe = await mkdtemp(path.join(os.tmpdir(), 'lmtp-chattr-'))
  try {
    execFileSync('chattr', ['+i', probe], {stdio: 'ignore'})
    execFileSync('chattr', ['-i', probe], {stdio: 'ignore'})
    return true
  } catch {
    return false
  } finally {
    await rm(probe, {recursive: true, force: true})
  }
}

const BODY = 'Subject: storage\r\n\r\nhello\r\n.\r\n'
let srv: TestServer
beforeEach(async () => {
  srv = await startServe()
})
afterEach(async () => {
  await srv.stop()
  await srv.cleanup()
})

async function mailbox(local: string, domain = 'example.com'): Promise<string> {
  const dir = path.join(srv.root, domain, local)
  for (const sub of ['tmp', 'new', 'cur']) await mkdir(path.join(dir, sub), {recursive: true, mode: 0o700})
  return dir
}

async function tmpLeft(dir: string): Promise<string[]> {
  return readdir(path.join(dir, 'tmp')).catch(() => [])
}

describe('a file where a directory should be', () => {
  test.each([
    ['new/ is a regular file', 'new'],
    ['tmp/ is a regular file', 'tmp'],
    ['cur/ is a regular file', 'cur'],
  ])('%s: 4xx for that recipient only, the others delivered', async (_name, sub) => {
    const broken = await mailbox('broken')
    await rm(path.join(broken, sub), {recursive: true})
    await writeFile(path.join(broken, sub), 'not a directory\n')
    const r = await transact(srv.port, {from: 'a@example.org', to: ['ok1@example.com', 'broken@example.com', 'ok2@example.com'], body: BODY})
    const after = brief(r.slice(-4, -1))
    expect(after[0]).toBe('250 2.0.0')
    expect(after[1]).toMatch(/^4\d\d 4\./)
    expect(after[2]).toBe('250 2.0.0')
    expect((await deliveredFiles(srv.root)).map((f) => f.mailbox)).toEqual(['example.com/ok1', 'example.com/ok2'])
    if (sub !== 'tmp') expect(await tmpLeft(broken)).toEqual([])
  })

  test('the mailbox directory is a regular file: 4xx for it, the others delivered', async () => {
    await mkdir(path.join(srv.root, 'example.com'), {recursive: true})
    await writeFile(path.join(srv.root, 'example.com', 'broken'), 'not a directory\n')
    const r = await transact(srv.port, {from: 'a@example.org', to: ['broken@example.com', 'ok@example.com'], body: BODY})
    expect(brief(r.slice(-3, -1)).map((x) => x[0])).toEqual(['4', '2'])
  })

  test('the domain directory is a regular file: 4xx for its recipients, another domain delivered', async () => {
    await writeFile(path.join(srv.root, 'broken.example'), 'not a directory\n')
    const r = await transact(srv.port, {from: 'a@example.org', to: ['x@broken.example', 'ok@example.com', 'y@broken.example'], body: BODY})
    expect(brief(r.slice(-4, -1)).map((x) => x[0])).toEqual(['4', '2', '4'])
    expect((await deliveredFiles(srv.root)).map((f) => f.mailbox)).toEqual(['example.com/ok'])
  })
})

const chattrGate = requireHost(
  'immutable-directory cases',
  (await chattrWorks()) ? undefined : 'chattr +i does not work here (needs root on ext4 or xfs; tmpfs and overlayfs refuse it)',
)

describe.skipIf(chattrGate.skip)('a directory that cannot be written (chattr +i: root ignores permission bits)', () => {
  beforeEach(() => chattrGate.check())
  const immutable: string[] = []
  afterEach(() => {
    for (const d of immutable.splice(0)) execFileSync('chattr', ['-i', d])
  })

  test.each(['new', 'tmp'])('%s/ immutable: 4xx for that recipient only; delivered again once repaired', async (sub) => {
    const broken = await mailbox('frozen')
    const d = path.join(broken, sub)
    execFileSync('chattr', ['+i', d])
    immutable.push(d)
    const r = await transact(srv.port, {from: 'a@example.org', to: ['frozen@example.com', 'ok@example.com'], body: BODY})
    expect(brief(r.slice(-3, -1))).toEqual(['451 4.3.0', '250 2.0.0'])
    expect(await tmpLeft(broken)).toEqual([])
    execFileSync('chattr', ['-i', d])
    immutable.pop()
    const again = await transact(srv.port, {from: 'a@example.org', to: ['frozen@example.com'], body: BODY})
    expect(brief(again.slice(-2, -1))).toEqual(['250 2.0.0'])
    expect((await deliveredFiles(srv.root)).map((f) => f.mailbox)).toEqual(['example.com/frozen', 'example.com/ok'])
  })
})

describe.skipIf(!isRoot)('a mailbox on a read-only mount', () => {
  let mounted = ''
  afterAll(() => {
    if (mounted) execFileSync('umount', ['-l', mounted])
  })

  test('EROFS: 4xx for that recipient only, the others delivered', async () => {
    const ro = await mailbox('readonly')
    execFileSync('mount', ['--bind', ro, ro])
    mounted = ro
    execFileSync('mount', ['-o', 'remount,ro,bind', ro])
    const r = await transact(srv.port, {from: 'a@example.org', to: ['ok@example.com', 'readonly@example.com'], body: BODY})
    expect(brief(r.slice(-3, -1))).toEqual(['250 2.0.0', '451 4.3.0'])
    execFileSync('umount', [ro])
    mounted = ''
    expect((await deliveredFiles(srv.root)).map((f) => f.mailbox)).toEqual(['example.com/ok'])
  })
})
