/**
 * Disk full, for real: the Maildir lives on a small tmpfs mounted by the test (needs root; CI runs as root).
 * Deliveries get 452 4.3.1 per recipient, nothing partial is left, the server keeps serving and delivers again
 * once space is freed.
 */
import {execFileSync} from 'node:child_process'
import {mkdtemp, readdir, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, test} from 'vitest'
import {RawSession, type TestServer, deliveredFiles, startServe} from '../support/serve.js'
import {inCi} from '../support/peers.js'

const isRoot = process.getuid?.() === 0
if (!isRoot && !inCi()) console.warn('[disk-full] skipped: mounting a tmpfs needs root (run the suite as root, as CI does)')

describe.skipIf(!isRoot && !inCi())('disk full on a tmpfs', () => {
  let mnt = ''
  let srv: TestServer
  beforeAll(async () => {
    if (!isRoot) throw new Error('disk-full tests need root to mount a tmpfs (CI runs as root)')
    mnt = await mkdtemp(path.join(os.tmpdir(), 'lmtp-tmpfs-'))
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt])
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

  async function deliver(size: number, rcpts: string[]): Promise<string[]> {
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
