import {readdir, readFile, stat} from 'node:fs/promises'
import path from 'node:path'
import {afterEach, beforeEach, describe, expect, test} from 'vitest'
import {DeliveredToScanner, FileSpool} from '../../src/delivery/spool.js'
import {cleanup, tempRoot} from './helpers.js'

describe('DeliveredToScanner', () => {
  const cases: [string, string, string[]][] = [
    ['plain', 'Delivered-To: alice@example.com\r\nSubject: x\r\n\r\nbody', ['alice@example.com']],
    ['angle brackets and case', 'delivered-to: <Alice@Example.COM>\r\n\r\n', ['alice@example.com']],
    ['space before colon', 'Delivered-To : bob@example.com\r\n\r\n', ['bob@example.com']],
    ['folded', 'Delivered-To:\r\n  carol@example.com\r\n\r\n', ['carol@example.com']],
    ['several', 'Delivered-To: a@x\r\nX: y\r\nDelivered-To: b@x\r\n\r\n', ['a@x', 'b@x']],
    ['only in body', 'Subject: x\r\n\r\nDelivered-To: alice@example.com\r\n', []],
    ['after a non-header line', 'Subject: x\r\nnot a header\r\nDelivered-To: a@x\r\n\r\n', []],
    ['no body', 'Delivered-To: a@x', ['a@x']],
    ['other header with the same prefix', 'Delivered-To-Foo: a@x\r\nX-Delivered-To: b@x\r\n\r\n', []],
    ['UTF-8', 'Delivered-To: jörg@bücher.example\r\n\r\n', ['jörg@bücher.example']],
  ]

  test.each(cases)('%s (fed split at every boundary)', (_name, text, expected) => {
    const buf = Buffer.from(text, 'utf8')
    for (let i = 0; i <= buf.length; i++) {
      const s = new DeliveredToScanner()
      s.push(buf.subarray(0, i))
      s.push(buf.subarray(i))
      s.end()
      expect([...s.addresses].sort()).toEqual(expected)
    }
  })

  test('stops at the end of the header section', () => {
    const s = new DeliveredToScanner()
    s.push(Buffer.from('A: b\r\n\r\n'))
    expect(s.done).toBe(true)
  })
})

describe('FileSpool', () => {
  let root: string
  let dir: string
  beforeEach(async () => {
    root = await tempRoot()
    dir = path.join(root, '.lmtp-spool')
  })
  afterEach(async () => cleanup(root))

  test('creates a 0700 directory and a 0600 file, keeps the bytes and counts line ends', async () => {
    const spool = await FileSpool.open({dir, host: 'h', batchSize: 7})
    const text = 'Delivered-To: x@y\r\n\r\nline\r\nbare\nlf\r\nend\r'
    const buf = Buffer.from(text)
    for (let i = 0; i < buf.length; i += 3) await spool.write(buf.subarray(i, i + 3))
    await spool.finish()
    expect((await stat(dir)).mode & 0o777).toBe(0o700)
    expect((await stat(spool.path)).mode & 0o777).toBe(0o600)
    expect(await readFile(spool.path, 'utf8')).toBe(text)
    expect({size: spool.size, crlf: spool.crlfCount, bareLf: spool.bareLfCount}).toEqual({size: buf.length, crlf: 4, bareLf: 1})
    expect([...spool.deliveredTo]).toEqual(['x@y'])
    expect(spool.finished).toBe(true)
  })

  test('a CRLF split across chunks is counted once', async () => {
    const spool = await FileSpool.open({dir})
    await spool.write(Buffer.from('a\r'))
    await spool.write(Buffer.from('\nb\n'))
    await spool.finish()
    expect([spool.crlfCount, spool.bareLfCount]).toEqual([1, 1])
  })

  test('the chunk buffer can be reused by the caller after write returns', async () => {
    const spool = await FileSpool.open({dir})
    const chunk = Buffer.alloc(10)
    chunk.fill('a')
    await spool.write(chunk)
    chunk.fill('b')
    await spool.write(chunk)
    await spool.finish()
    expect(await readFile(spool.path, 'utf8')).toBe('a'.repeat(10) + 'b'.repeat(10))
  })

  test('write returns a promise (backpressure) once the high-water mark is reached', async () => {
    const spool = await FileSpool.open({dir, batchSize: 1024, highWaterMark: 4096})
    let sawPromise = false
    for (let i = 0; i < 64; i++) {
      const r = spool.write(Buffer.alloc(1024, 0x61))
      if (r instanceof Promise) {
        sawPromise = true
        await r
      }
    }
    await spool.finish()
    expect(sawPromise).toBe(true)
    expect((await stat(spool.path)).size).toBe(64 * 1024)
  })

  test('discard removes the file, twice is fine, writing afterwards is refused', async () => {
    const spool = await FileSpool.open({dir})
    await spool.write(Buffer.from('x'.repeat(1000)))
    await spool.discard()
    await spool.discard()
    expect(await readdir(dir)).toEqual([])
    await expect(Promise.resolve(spool.write(Buffer.from('y')))).rejects.toThrow(/discarded/)
    await expect(spool.finish()).rejects.toThrow(/discarded/)
  })

  test('discard after finish removes the file', async () => {
    const spool = await FileSpool.open({dir})
    await spool.write(Buffer.from('x'))
    await spool.finish()
    await spool.discard()
    expect(await readdir(dir)).toEqual([])
  })

  test('a 96 MB message streams with bounded memory', async () => {
    const spool = await FileSpool.open({dir})
    const line = Buffer.from(`${'x'.repeat(76)}\r\n`)
    const chunk = Buffer.concat(Array.from({length: 800}, () => line)) // 62.5 KiB
    const total = 96 * 1024 * 1024
    globalThis.gc?.()
    const before = process.memoryUsage().rss
    let peak = before
    let written = 0
    while (written < total) {
      const r = spool.write(chunk)
      if (r) await r
      written += chunk.length
      peak = Math.max(peak, process.memoryUsage().rss)
    }
    await spool.finish()
    expect(spool.size).toBe(written)
    expect(spool.crlfCount).toBe(written / line.length)
    expect((await stat(spool.path)).size).toBe(written)
    expect(peak - before).toBeLessThan(64 * 1024 * 1024)
  })
})
