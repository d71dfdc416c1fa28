/**
 * Disk full, for real: the Maildir lives on a small tmpfs mounted by the test (needs root; CI runs as root).
 * Deliveries get 452 4.3.1 per recipient, nothing partial is left, the server keeps serving and delivers again
 * once space is freed.
 */
import {execFileSync} from 'node:child_process'
import {mkdir, mkdtemp, readdir, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, test} from 'vitest'
import {RawSession, type TestServer, deliveredFiles, startServe} from '../support/serve.js'
import {inCi} from '../support/peers.js'

const isRoot = process.getuid?.() === 0
if (!isRoot && !inCi()) console.warn('[disk-full] skipped: mounting a tmpfs needs root (run the suite as root, as CI does)')

/** Mounts a tmpfs with `options` before the describe's tests and starts a server whose Maildir lives there. */
function tmpfsServer(options: string): {current: () => {mnt: string; srv: TestServer}} {
  let mnt = ''
  let srv: TestServer | undefined
  beforeAll(async () => {
    if (!isRoot) throw new Error('disk-full tests need root to mount a tmpfs (CI runs as root)')
    mnt = await mkdtemp(path.join(os.tmpdir(), 'lmtp-tmpfs-'))
    execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', mnt])
    srv = await startServe({maildir: path.join(mnt, 'Maildir')})
  })
  afterAll(async () => {
    if (srv) {
      await srv.stop()
      await srv.cleanup()
    }
    if (mnt) {
      try {
        execFileSync('umount', [mnt])
      } catch {
        execFileSync('umount', ['-l', mnt])
      }
      await rm(mnt, {recursive: true, force: true})
    }
  })
  return {current: () => ({mnt, srv: srv!})}
}

/** One transaction of a `size`-octet message to `rcpts`; returns the per-recipient replies as "code enhanced". */
async function deliverTo(srv: TestServer, size: number, rcpts: string[]): Promise<string[]> {
  const s = await RawSession.open(srv.port)
  await s.waitReplies(1)
  s.write(`LHLO t\r\nMAIL FROM:<a@example.org>\r\n${rcpts.map((r) => `RCPT TO:<${r}>\r\n`).join('')}DATA\r\n`)
  const before = 3 + rcpts.length + 1
  await s.waitReplies(before)
  const line = `${'d'.repeat(98)}\r\n`
  s.write(`Subject: big\r\n\r\n${line.repeat(Math.ceil(size / line.length))}.\r\n`)
  const r = await s.waitReplies(before + rcpts.length)
  s.close()
  return r.slice(before).map((x) => `${x.code} ${x.enhanced}`)
}

describe.skipIf(!isRoot && !inCi())('disk full on a tmpfs', () => {
  const mount = tmpfsServer('size=1m')
  let mnt = ''
  let srv: TestServer
  beforeAll(() => {
    ;({mnt, srv} = mount.current())
  })
  const deliver = (size: number, rcpts: string[]): Promise<string[]> => deliverTo(srv, size, rcpts)

  test('spool cannot be written: 452 4.3.1 for every recipient', async () => {
    await writeFile(path.join(mnt, 'filler'), Buffer.alloc(900 * 1024))
    expect(await deliver(300 * 1024, ['a@example.com', 'b@example.com'])).toEqual(['452 4.3.1', '452 4.3.1'])
    await rm(path.join(mnt, 'filler'))
  })

  test('mailbox file cannot be written: 452 4.3.1 for that recipient, nothing partial, then recovery', async () => {
    await writeFile(path.join(mnt, 'filler'), Buffer.alloc(500 * 1024))
    expect(await deliver(300 * 1024, ['c@example.com'])).toEqual(['452 4.3.1'])
    expect(await deliveredFiles(srv.root)).toEqual([])
    for (const box of ['c']) {
      const tmp = await readdir(path.join(srv.root, 'example.com', box, 'tmp')).catch(() => [])
      expect(tmp).toEqual([])
    }
    await rm(path.join(mnt, 'filler'))
    expect(await deliver(300 * 1024, ['c@example.com'])).toEqual(['250 2.0.0'])
    expect((await deliveredFiles(srv.root)).map((f) => f.mailbox)).toEqual(['example.com/c'])
  })
})

describe.skipIf(!isRoot && !inCi())('out of inodes on a tmpfs', () => {
  const mount = tmpfsServer('size=16m,nr_inodes=64')
  let mnt = ''
  let srv: TestServer
  beforeAll(() => {
    ;({mnt, srv} = mount.current())
  })

  test('a new mailbox that cannot be created for lack of inodes gets 452 4.3.1, then recovery', async () => {
    // One delivery first, so the spool directory exists; then use up every inode but one (the spool file's).
    expect(await deliverTo(srv, 100, ['first@example.com'])).toEqual(['250 2.0.0'])
    const fill = path.join(mnt, 'fill')
    await mkdir(fill)
    const made: string[] = []
    for (;;) {
      const f = path.join(fill, String(made.length))
      try {
        await writeFile(f, '')
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err
        break
      }
      made.push(f)
    }
    await rm(made.pop()!)
    expect(await deliverTo(srv, 100, ['fresh@example.com'])).toEqual(['452 4.3.1'])
    await rm(fill, {recursive: true})
    expect(await deliverTo(srv, 100, ['fresh@example.com'])).toEqual(['250 2.0.0'])
  })
})
