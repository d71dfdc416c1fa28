import {mkdir, readFile, stat, utimes, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {afterEach, beforeEach, describe, expect, test} from 'vitest'
import {
  appendUsage,
  checkQuota,
  formatMaildirSize,
  KeyedMutex,
  MAILDIRSIZE,
  parseMaildirSize,
  readUsage,
  recalculate,
  scanUsage,
} from '../../src/delivery/quota.js'
import {cleanup, tempRoot} from './helpers.js'

describe('maildirsize format', () => {
  test.each([
    ['1000S\n10 1\n20 2\n', {limitBytes: 1000, bytes: 30, count: 3}],
    ['1000S,50C\n10 1\n', {limitBytes: 1000, limitCount: 50, bytes: 10, count: 1}],
    ['50C\n10 1\n', {limitCount: 50, bytes: 10, count: 1}],
    ['1000S\n100 2\n-40 -1\n', {limitBytes: 1000, bytes: 60, count: 1}],
    ['1000S\n', {limitBytes: 1000, bytes: 0, count: 0}],
    ['1000S\n  7   1  \n', {limitBytes: 1000, bytes: 7, count: 1}],
  ])('parses %j', (text, expected) => {
    expect(parseMaildirSize(text)).toEqual(expected)
  })

  test.each(['', '1000X\n', 'abc\n1 1\n', '1000S\n1\n', '1000S\n1 x\n', '1000S\n1 1 1\n'])('malformed %j', (text) => {
    expect(parseMaildirSize(text)).toBeUndefined()
  })

  test('format and parse round-trip', () => {
    const text = formatMaildirSize(5_000_000, {bytes: 1234, count: 5})
    expect(text).toBe('5000000S\n1234 5\n')
    expect(parseMaildirSize(text)).toEqual({limitBytes: 5_000_000, bytes: 1234, count: 5})
  })
})

describe('usage on disk', () => {
  let maildir: string
  beforeEach(async () => {
    maildir = path.join(await tempRoot(), 'example.com', 'alice')
    for (const sub of ['tmp', 'new', 'cur']) await mkdir(path.join(maildir, sub), {recursive: true})
  })
  afterEach(async () => cleanup(path.dirname(path.dirname(maildir))))

  async function put(sub: string, name: string, bytes: number) {
    await writeFile(path.join(maildir, sub, name), Buffer.alloc(bytes, 0x61))
  }

  test('scan uses S= from names, else stat; ignores tmp/ and dot files', async () => {
    await put('new', '1.M1P1Q1Rab.h,S=100,W=104', 3) // S= wins over the real size
    await put('cur', '2.M1P1Q2Rab.h,S=50,W=52:2,S', 1)
    await put('cur', 'other-agent-name:2,', 70)
    await put('new', '.hidden', 999)
    await put('tmp', '3.M1P1Q3Rab.h,S=5000,W=5000', 1)
    expect(await scanUsage(maildir)).toEqual({bytes: 220, count: 3})
  })

  test('missing maildirsize is rebuilt with the limit line, 0600', async () => {
    await put('new', '1.M1P1Q1Rab.h,S=100,W=104', 100)
    const u = await readUsage(maildir, 1000)
    expect(u).toMatchObject({bytes: 100, count: 1, recalculated: true})
    expect(await readFile(path.join(maildir, MAILDIRSIZE), 'utf8')).toBe('1000S\n100 1\n')
    expect((await stat(path.join(maildir, MAILDIRSIZE))).mode & 0o777).toBe(0o600)
  })

  test('an existing file is summed, not rebuilt', async () => {
    await writeFile(path.join(maildir, MAILDIRSIZE), '1000S\n300 3\n-100 -1\n')
    expect(await readUsage(maildir, 1000)).toMatchObject({bytes: 200, count: 2, recalculated: false})
  })

  test.each([
    ['malformed', 'garbage\n'],
    ['different limit', '999S\n300 3\n'],
    ['larger than 5120 bytes', `1000S\n${'1 1\n'.repeat(2000)}`],
  ])('%s -> rebuilt from the files', async (_name, text) => {
    await put('cur', '1.M1P1Q1Rab.h,S=40,W=41:2,', 40)
    await writeFile(path.join(maildir, MAILDIRSIZE), text)
    expect(await readUsage(maildir, 1000)).toMatchObject({bytes: 40, count: 1, recalculated: true})
    expect(await readFile(path.join(maildir, MAILDIRSIZE), 'utf8')).toBe('1000S\n40 1\n')
  })

  test('appendUsage adds one line; missing file is left for the next rebuild', async () => {
    await recalculate(maildir, 1000)
    expect(await appendUsage(maildir, 123, 1)).toBe(true)
    expect(await readFile(path.join(maildir, MAILDIRSIZE), 'utf8')).toBe('1000S\n0 0\n123 1\n')
    await cleanup(path.join(maildir, MAILDIRSIZE))
    expect(await appendUsage(maildir, 5, 1)).toBe(false)
  })

  test('checkQuota: ok, over, too big', async () => {
    await writeFile(path.join(maildir, MAILDIRSIZE), '1000S\n900 9\n')
    expect((await checkQuota(maildir, 1000, 100)).verdict).toBe('ok')
    expect((await checkQuota(maildir, 1000, 101)).verdict).toBe('over')
    expect((await checkQuota(maildir, 1000, 1001)).verdict).toBe('tooBig')
  })

  test('a stale over-quota file is rebuilt before refusing (messages were deleted meanwhile)', async () => {
    const file = path.join(maildir, MAILDIRSIZE)
    await writeFile(file, '1000S\n900 9\n')
    const old = new Date(Date.now() - 20 * 60 * 1000)
    await utimes(file, old, old)
    expect((await checkQuota(maildir, 1000, 500)).verdict).toBe('ok')
    expect(await readFile(file, 'utf8')).toBe('1000S\n0 0\n')
  })
})

describe('KeyedMutex', () => {
  test('serialises one key, runs different keys together, forgets idle keys', async () => {
    const m = new KeyedMutex()
    const log: string[] = []
    let release!: () => void
    const gate = new Promise<void>((r) => {
      release = r
    })
    const a1 = m.run('a', async () => {
      log.push('a1 start')
      await gate
      log.push('a1 end')
    })
    const a2 = m.run('a', async () => {
      log.push('a2')
    })
    const b = m.run('b', async () => {
      log.push('b')
    })
    await b
    expect(log).toEqual(['a1 start', 'b'])
    release()
    await Promise.all([a1, a2])
    expect(log).toEqual(['a1 start', 'b', 'a1 end', 'a2'])
    expect(m.activeKeys).toBe(0)
  })

  test('a failing task does not block the next one', async () => {
    const m = new KeyedMutex()
    await expect(m.run('k', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom')
    expect(await m.run('k', async () => 42)).toBe(42)
  })
})
