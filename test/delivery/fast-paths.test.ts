import {readdir, readFile} from 'node:fs/promises'
import path from 'node:path'
import {afterEach, beforeEach, describe, expect, test} from 'vitest'
import {type FileLike, fsyncDirGrouped, type MaildirFs, realFs, writeMaildirMessage} from '../../src/delivery/maildir.js'
import {FileSpool} from '../../src/delivery/spool.js'
import {cleanup, tempRoot} from './helpers.js'

describe('lazy FileSpool (the body stays in memory until it outgrows the batch)', () => {
  let root: string
  let dir: string
  beforeEach(async () => {
    root = await tempRoot()
    dir = path.join(root, '.lmtp-spool')
  })
  afterEach(async () => cleanup(root))

  const cases: [string, number, number, boolean][] = [
    // name, body size, batch size, expect a file
    ['empty body', 0, 1024, false],
    ['smaller than the first buffer', 100, 64 * 1024, false],
    ['grows past the first buffer, still in memory', 40 * 1024, 64 * 1024, false],
    ['exactly the batch size', 64 * 1024, 64 * 1024, false],
    ['one octet beyond the batch: spills to a file', 64 * 1024 + 1, 64 * 1024, true],
    ['many batches', 300 * 1024, 64 * 1024, true],
  ]

  test.each(cases)('%s', async (_name, size, batchSize, spills) => {
    const body = Buffer.alloc(size)
    for (let i = 0; i < size; i++) body[i] = i % 80 === 79 ? 0x0a : i % 80 === 78 ? 0x0d : 0x61 + (i % 26)
    const spool = await FileSpool.open({dir, host: 'h', batchSize, lazy: true})
    for (let i = 0; i < size; i += 7001) await spool.write(body.subarray(i, i + 7001))
    await spool.finish()
    expect(spool.size).toBe(size)
    if (spills) {
      expect(spool.body).toBeUndefined()
      expect((await readFile(spool.path)).equals(body)).toBe(true)
    } else {
      expect(spool.body?.equals(body)).toBe(true)
      expect(await readdir(dir).catch(() => [])).toEqual([])
    }
    await spool.discard()
    expect(await readdir(dir).catch(() => [])).toEqual([])
  })

  test('the in-memory body is written into the Maildir like a spooled one', async () => {
    const text = 'Subject: x\r\n\r\nline one\r\nbare\nend\r\n'
    const spool = await FileSpool.open({dir, host: 'h', lazy: true})
    await spool.write(Buffer.from(text))
    await spool.finish()
    const res = await writeMaildirMessage({
      dir: path.join(root, 'example.com', 'a'),
      headers: 'X-Trace: 1\n',
      source: spool.path,
      body: spool.body,
      stats: spool,
      host: 'h',
    })
    expect(await readFile(res.file, 'utf8')).toBe('X-Trace: 1\nSubject: x\n\nline one\nbare\nend\n')
    expect(res.name).toMatch(new RegExp(`,S=${res.size},W=${res.virtualSize}$`))
  })
})

describe('fsyncDirGrouped (group commit of directory fsyncs)', () => {
  let root: string
  beforeEach(async () => {
    root = await tempRoot()
  })
  afterEach(async () => cleanup(root))

  /**
   * A file system whose directory fsyncs wait until released, counting them; `syncing(n)` resolves once the n-th
   * fsync has begun (the explicit signal the tests order on, instead of a sleep).
   */
  function gatedFs(): {fs: MaildirFs; syncs: number; release(): void; syncing(n: number): Promise<void>; fail: boolean} {
    const gates: (() => void)[] = []
    const waiters: {n: number; resolve: () => void}[] = []
    const state = {
      syncs: 0,
      fail: false,
      release: () => {
        for (const g of gates.splice(0)) g()
      },
      syncing: (n: number) =>
        new Promise<void>((resolve) => {
          if (state.syncs >= n) resolve()
          else waiters.push({n, resolve})
        }),
      fs: undefined as unknown as MaildirFs,
    }
    state.fs = {
      ...realFs,
      open: async (file, flags, mode): Promise<FileLike> => {
        const h = await realFs.open(file, flags, mode)
        return {
          write: (b, o, l) => h.write(b, o, l),
          read: (b, o, l, p) => h.read(b, o, l, p),
          close: () => h.close(),
          sync: async () => {
            state.syncs++
            const gate = new Promise<void>((r) => gates.push(r))
            for (const w of waiters.filter((x) => x.n <= state.syncs)) {
              waiters.splice(waiters.indexOf(w), 1)
              w.resolve()
            }
            await gate
            if (state.fail) throw Object.assign(new Error('EIO'), {code: 'EIO'})
            await h.sync()
          },
        }
      },
    }
    return state
  }

  test('callers during a running fsync share the single next one; nobody resolves on an fsync that began before it', async () => {
    const g = gatedFs()
    const order: string[] = []
    const first = fsyncDirGrouped(root, g.fs).then(() => order.push('first'))
    await g.syncing(1)
    const later = [1, 2, 3].map((i) => fsyncDirGrouped(root, g.fs).then(() => order.push(`later${i}`)))
    expect(g.syncs).toBe(1)
    g.release()
    await first
    await g.syncing(2)
    // The three latecomers did not ride on the first fsync: a second one started for all of them.
    expect(order).toEqual(['first'])
    expect(g.syncs).toBe(2)
    g.release()
    await Promise.all(later)
    expect(order).toEqual(['first', 'later1', 'later2', 'later3'])
    expect(g.syncs).toBe(2)
  })

  test('a failed fsync rejects every caller that waited for it, and the next call starts afresh', async () => {
    const g = gatedFs()
    g.fail = true
    const a = fsyncDirGrouped(root, g.fs)
    const b = fsyncDirGrouped(root, g.fs)
    await g.syncing(1)
    g.release()
    await expect(a).rejects.toMatchObject({code: 'EIO'})
    await g.syncing(2)
    g.release()
    await expect(b).rejects.toMatchObject({code: 'EIO'})
    g.fail = false
    const c = fsyncDirGrouped(root, g.fs)
    await g.syncing(3)
    g.release()
    await expect(c).resolves.toBeUndefined()
    expect(g.syncs).toBe(3)
  })
})
