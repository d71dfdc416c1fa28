/**
 * The cross-process dotlock: mutual exclusion, stale locks broken (dead holder of this host, or too old), a live
 * holder waited for and given up on with ETIMEDOUT. Time and waits are injected: no test sleeps.
 */
import {spawn} from 'node:child_process'
import {readdir, readFile, utimes, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {afterEach, describe, expect, test} from 'vitest'
import {acquireDotlock, dotlockOwner} from '../../src/delivery/dotlock.js'
import {cleanup, tempRoot} from './helpers.js'

let dir = ''
afterEach(async () => {
  if (dir) await cleanup(dir)
  dir = ''
})

/** The text another process's lock would hold (same host and pid namespace as ours, another pid). */
function lockOf(pid: number): string {
  return `${dotlockOwner().replace(/^\d+/, String(pid))} 0123456789abcdef\n`
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

describe('acquireDotlock', () => {
  test('creates the lock with our identity and removes it on release', async () => {
    dir = await tempRoot('lmtp-dotlock-')
    const lock = path.join(dir, 'maildirsize.lock')
    const release = await acquireDotlock(lock)
    expect(await readFile(lock, 'latin1')).toMatch(new RegExp(`^${escapeRegExp(dotlockOwner())} [0-9a-f]{16}\n$`))
    await release()
    await release()
    expect(await readdir(dir)).toEqual([])
  })

  test('only one holder at a time among concurrent takers', async () => {
    dir = await tempRoot('lmtp-dotlock-')
    const lock = path.join(dir, 'maildirsize.lock')
    let inside = 0
    let maxInside = 0
    let total = 0
    await Promise.all(
      Array.from({length: 20}, async () => {
        for (let i = 0; i < 5; i++) {
          const release = await acquireDotlock(lock, {wait: () => new Promise((r) => setImmediate(r))})
          inside++
          maxInside = Math.max(maxInside, inside)
          await new Promise((r) => setImmediate(r))
          total++
          inside--
          await release()
        }
      }),
    )
    expect(total).toBe(100)
    expect(maxInside).toBe(1)
  })

  test('breaks the lock of a process of this host that died (real SIGKILLed child)', async () => {
    dir = await tempRoot('lmtp-dotlock-')
    const lock = path.join(dir, 'maildirsize.lock')
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], {stdio: 'ignore'})
    const exited = new Promise((r) => child.once('exit', r))
    await writeFile(lock, lockOf(child.pid!))
    child.kill('SIGKILL')
    await exited
    const release = await acquireDotlock(lock, {wait: () => Promise.reject(new Error('must not wait for a dead holder'))})
    expect(await readFile(lock, 'latin1')).toMatch(new RegExp(`^${escapeRegExp(dotlockOwner())} [0-9a-f]{16}\n$`))
    await release()
    expect((await readdir(dir)).filter((f) => f.includes('stale'))).toEqual([])
  })

  test('waits for a live holder, then gives up with ETIMEDOUT naming it', async () => {
    dir = await tempRoot('lmtp-dotlock-')
    const lock = path.join(dir, 'maildirsize.lock')
    await writeFile(lock, '4242 other-host pid:[1]\n')
    let clock = Date.now()
    let waits = 0
    const attempt = acquireDotlock(lock, {
      timeoutMs: 5000,
      staleMs: 60_000,
      now: () => clock,
      wait: async () => {
        waits++
        clock += 1000
      },
    })
    await expect(attempt).rejects.toMatchObject({code: 'ETIMEDOUT', message: expect.stringContaining('4242 other-host')})
    expect(waits).toBe(5)
    expect(await readFile(lock, 'latin1')).toBe('4242 other-host pid:[1]\n')
  })

  test('a lock of a live holder of this host is waited for, not broken', async () => {
    dir = await tempRoot('lmtp-dotlock-')
    const lock = path.join(dir, 'maildirsize.lock')
    await writeFile(lock, lockOf(1))
    let released = false
    const release = await acquireDotlock(lock, {
      isAlive: () => true,
      wait: async () => {
        // The holder lets go after the first wait: the taker must get the lock only then.
        if (!released) {
          released = true
          await cleanupLock(lock)
        }
      },
    })
    expect(released).toBe(true)
    await release()
  })

  test('breaks a lock older than staleMs whoever holds it (a crash on another host)', async () => {
    dir = await tempRoot('lmtp-dotlock-')
    const lock = path.join(dir, 'maildirsize.lock')
    await writeFile(lock, '4242 other-host pid:[1]\n')
    const old = new Date(Date.now() - 120_000)
    await utimes(lock, old, old)
    const release = await acquireDotlock(lock, {staleMs: 30_000, wait: () => Promise.reject(new Error('must not wait for a stale lock'))})
    expect(await readFile(lock, 'latin1')).toMatch(new RegExp(`^${escapeRegExp(dotlockOwner())} [0-9a-f]{16}\n$`))
    await release()
  })

  test('release leaves a lock alone that is no longer ours', async () => {
    dir = await tempRoot('lmtp-dotlock-')
    const lock = path.join(dir, 'maildirsize.lock')
    const release = await acquireDotlock(lock)
    await cleanupLock(lock)
    await writeFile(lock, `9999 ${os.hostname()} someone-else\n`)
    await release()
    expect(await readFile(lock, 'latin1')).toBe(`9999 ${os.hostname()} someone-else\n`)
  })
})

async function cleanupLock(lock: string): Promise<void> {
  const {unlink} = await import('node:fs/promises')
  await unlink(lock)
}
