/**
 * Quota accounting survives a crash at the one moment where it can drift: a message renamed into new/ but not
 * yet counted in maildirsize, or counted but not yet renamed. A child process is SIGKILLed at the rename; after
 * the startup clean-up (cleanTmp) the usage read through maildirsize must equal what the files add up to.
 */
import {spawn} from 'node:child_process'
import path from 'node:path'
import {afterEach, describe, expect, test} from 'vitest'
import {MaildirBackend} from '../../src/delivery/maildir-backend.js'
import {readUsage, scanUsage} from '../../src/delivery/quota.js'
import {cleanup, tempRoot} from '../delivery/helpers.js'
import {REPO_ROOT} from './serve-process.js'

let dir = ''
afterEach(async () => {
  if (dir) await cleanup(dir)
  dir = ''
})

describe('crash between the quota tally and the rename into new/', () => {
  test.each(['before', 'after'] as const)('SIGKILL %s the rename: maildirsize agrees with the files after restart', async (point) => {
    dir = await tempRoot('lmtp-quota-crash-')
    const root = path.join(dir, 'Maildir')
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'test/reliability/die-at-rename.ts'), root, point], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stderr.on('data', (d) => {
      out += d
    })
    const exited = new Promise<NodeJS.Signals | null>((r) => child.once('exit', (_c, s) => r(s)))
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        if (d.toString().includes('READY')) resolve()
      })
      void exited.then(() => reject(new Error(`child exited before the rename:\n${out}`)))
    })
    child.kill('SIGKILL')
    expect(await exited).toBe('SIGKILL')

    const box = path.join(root, 'example.com', 'q')
    const backend = new MaildirBackend({root, hostname: 'mx.test', defaultQuota: 1_000_000})
    const report = await backend.cleanTmp()
    expect(report.errors).toBe(0)
    const files = await scanUsage(box)
    expect(files.count).toBe(point === 'after' ? 2 : 1)
    const usage = await readUsage(box, 1_000_000)
    expect({bytes: usage.bytes, count: usage.count}).toEqual(files)
  })
})
