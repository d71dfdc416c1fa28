import {constants} from 'node:fs'
import {lstat, mkdir, readdir, readFile, stat, symlink, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {afterEach, beforeEach, describe, expect, test} from 'vitest'
import {
  buildTraceHeaders,
  CrlfToLf,
  encodeHostForMaildir,
  type FileLike,
  formatRfc5322Date,
  type MaildirFs,
  parseUniqueName,
  realFs,
  sanitizeHeaderText,
  storedSizes,
  uniqueName,
  writeAll,
  writeMaildirMessage,
} from '../../src/delivery/maildir.js'
import {cleanup, spoolOf, tempRoot} from './helpers.js'

describe('unique names', () => {
  test('have the Maildir shape and differ every time', () => {
    const names = new Set<string>()
    for (let i = 0; i < 2000; i++) names.add(uniqueName('mx.example'))
    expect(names.size).toBe(2000)
    for (const n of [...names].slice(0, 5)) {
      expect(n).toMatch(new RegExp(`^\\d{10,}\\.M\\d{1,6}N[0-9a-f]{8}P${process.pid}Q\\d+R[0-9a-f]{16}\\.mx\\.example$`))
    }
  })

  test.each([
    ['mx.example', 'mx.example'],
    ['a/b', 'a\\057b'],
    ['a:b', 'a\\072b'],
    ['a,b', 'a\\054b'],
    ['a\\b', 'a\\134b'],
    ['', 'localhost'],
  ])('host %j is encoded as %j', (host, encoded) => {
    expect(encodeHostForMaildir(host)).toBe(encoded)
    expect(uniqueName(host).endsWith(`.${encoded}`)).toBe(true)
  })

  test('parseUniqueName reads back pid, host and S=', () => {
    const base = uniqueName('h:1')
    expect(parseUniqueName(base)).toMatchObject({pid: process.pid, host: 'h\\0721'})
    expect(parseUniqueName(`${base},S=123,W=130:2,S`)).toMatchObject({pid: process.pid, size: 123})
    expect(parseUniqueName('1234.abc.host')).toBeUndefined()
    expect(parseUniqueName('maildirsize')).toBeUndefined()
  })
})

describe('CrlfToLf', () => {
  const cases: [string, string][] = [
    ['a\r\nb\r\n', 'a\nb\n'],
    ['\r\n\r\n', '\n\n'],
    ['bare\rcr\r', 'bare\rcr\r'],
    ['bare\nlf', 'bare\nlf'],
    ['\r\r\n', '\r\n'],
    ['x\r', 'x\r'],
    ['', ''],
  ]

  function convert(input: Buffer, cuts: number[]): string {
    const conv = new CrlfToLf()
    const parts: Buffer[] = []
    let prev = 0
    for (const c of [...cuts, input.length]) {
      const piece = input.subarray(prev, c)
      const out = Buffer.alloc(piece.length + 1)
      parts.push(out.subarray(0, conv.push(piece, out)))
      prev = c
    }
    const tail = Buffer.alloc(1)
    parts.push(tail.subarray(0, conv.end(tail)))
    return Buffer.concat(parts).toString('latin1')
  }

  test.each(cases)('%j split at every boundary pair', (input, expected) => {
    const buf = Buffer.from(input, 'latin1')
    for (let i = 0; i <= buf.length; i++) {
      for (let j = i; j <= buf.length; j++) expect(convert(buf, [i, j])).toBe(expected)
    }
  })
})

describe('trace headers', () => {
  const base = {
    sender: 'bob@example.org',
    recipient: 'alice@example.com',
    lhlo: 'client.example',
    peer: '127.0.0.1:4000',
    hostname: 'mx.test',
    transactionId: 'T1',
    smtputf8: false,
    tls: false,
    date: new Date(Date.UTC(2025, 10, 29, 1, 35, 58)),
  }

  test('Return-Path, Delivered-To and Received, folded with tabs', () => {
    const h = buildTraceHeaders(base)
    const lines = h.split('\n')
    expect(lines[0]).toBe('Return-Path: <bob@example.org>')
    expect(lines[1]).toBe('Delivered-To: alice@example.com')
    expect(lines[2]).toBe('Received: from client.example (127.0.0.1:4000)')
    expect(lines[3]).toBe('\tby mx.test with LMTP id T1')
    expect(lines[4]).toMatch(/^\tfor <alice@example\.com>; (Sun|Mon|Tue|Wed|Thu|Fri|Sat), \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$/)
    expect(lines[5]).toBe('')
    expect(h).not.toContain('\r')
  })

  test.each([
    [{smtputf8: true}, 'UTF8LMTP'],
    [{tls: true}, 'LMTPS'],
    [{smtputf8: true, tls: true}, 'UTF8LMTPS'],
  ])('protocol %j -> %s', (extra, protocol) => {
    expect(buildTraceHeaders({...base, ...extra})).toContain(` with ${protocol} id `)
  })

  test('null sender', () => {
    expect(buildTraceHeaders({...base, sender: ''})).toMatch(/^Return-Path: <>\n/)
  })

  test.each([
    ['lhlo', {lhlo: 'x\r\nBcc: victim@example.com'}],
    ['peer', {peer: 'a\nX-Evil: 1'}],
    ['hostname', {hostname: 'mx\r\n\r\nbody'}],
    ['transaction id', {transactionId: 'id\u0000\nX: y'}],
    ['recipient', {recipient: 'a@b\r\nX-Evil: 1'}],
    ['sender', {sender: 'a@b>\nX-Evil: 1'}],
  ])('%s cannot inject a header line', (_name, extra) => {
    const h = buildTraceHeaders({...base, ...extra})
    const lines = h.split('\n')
    expect(lines).toHaveLength(6)
    for (const line of lines.slice(0, 5)) expect(line).toMatch(/^(Return-Path|Delivered-To|Received): |^\t(by|for) /)
    expect(h).not.toMatch(/[\x00\r]/)
  })

  test('sanitizeHeaderText caps the length', () => {
    expect(sanitizeHeaderText('a'.repeat(2000)).length).toBeLessThan(600)
  })

  test('RFC 5322 date shape', () => {
    expect(formatRfc5322Date(new Date(2025, 0, 5, 7, 8, 9))).toMatch(/^Sun, 5 Jan 2025 07:08:09 [+-]\d{4}$/)
  })
})

describe('storedSizes', () => {
  test('S= counts LF line ends, W= counts CRLF', () => {
    const headers = 'A: b\n'
    // body "x\r\ny\r\n" (6 octets, 2 CRLF) is stored as "x\ny\n"
    expect(storedSizes(headers, {size: 6, crlfCount: 2, bareLfCount: 0})).toEqual({size: 9, virtualSize: 12})
  })
})

describe('writeMaildirMessage', () => {
  let root: string
  let spoolDir: string
  beforeEach(async () => {
    root = await tempRoot()
    spoolDir = path.join(root, '.lmtp-spool')
  })
  afterEach(async () => cleanup(root))

  const HEADERS = 'Return-Path: <a@b>\nDelivered-To: c@d\n'
  const BODY = 'Subject: hi\r\n\r\nline 1\r\nline 2\r\n'

  test('stores headers + body with LF line ends, 0600 file, 0700 dirs, S= and W= right', async () => {
    const spool = await spoolOf(spoolDir, BODY, 3)
    const dir = path.join(root, 'example.com', 'alice')
    const res = await writeMaildirMessage({dir, headers: HEADERS, source: spool.path, stats: spool, host: 'mx'})
    expect(path.dirname(res.file)).toBe(path.join(dir, 'new'))
    const stored = await readFile(res.file, 'latin1')
    expect(stored).toBe(HEADERS + BODY.replaceAll('\r\n', '\n'))
    expect(res.size).toBe(Buffer.byteLength(stored))
    expect(res.virtualSize).toBe(Buffer.byteLength(stored.replaceAll('\n', '\r\n')))
    expect(res.name).toMatch(new RegExp(`,S=${res.size},W=${res.virtualSize}$`))
    expect(res.name).not.toContain(':2,')
    expect((await stat(res.file)).mode & 0o777).toBe(0o600)
    for (const sub of ['tmp', 'new', 'cur']) expect((await stat(path.join(dir, sub))).mode & 0o777).toBe(0o700)
    expect((await stat(path.join(root, 'example.com'))).mode & 0o777).toBe(0o700)
    expect(await readdir(path.join(dir, 'tmp'))).toEqual([])
  })

  test('a symlink planted at the temp name is not followed', async () => {
    const spool = await spoolOf(spoolDir, BODY)
    const dir = path.join(root, 'example.com', 'alice')
    await mkdir(path.join(dir, 'tmp'), {recursive: true})
    const target = path.join(root, 'victim')
    await writeFile(target, 'precious')
    const name = 'planted.M1P1Q1Rab.host'
    await symlink(target, path.join(dir, 'tmp', `${name},S=${storedSizes(HEADERS, spool).size},W=${storedSizes(HEADERS, spool).virtualSize}`))
    await expect(
      writeMaildirMessage({dir, headers: HEADERS, source: spool.path, stats: spool, nameFactory: () => name}),
    ).rejects.toMatchObject({code: 'EEXIST'})
    expect(await readFile(target, 'utf8')).toBe('precious')
    expect(await readdir(path.join(dir, 'new')).catch(() => [])).toEqual([])
  })

  test('a symlinked spool file is not read', async () => {
    const dir = path.join(root, 'example.com', 'alice')
    const target = path.join(root, 'secret')
    await writeFile(target, 'secret\r\n')
    const link = path.join(root, 'link')
    await symlink(target, link)
    await expect(
      writeMaildirMessage({dir, headers: HEADERS, source: link, stats: {size: 8, crlfCount: 1, bareLfCount: 0}}),
    ).rejects.toMatchObject({code: 'ELOOP'})
    expect(await readdir(path.join(dir, 'tmp'))).toEqual([])
    expect(await readdir(path.join(dir, 'new'))).toEqual([])
  })

  test('re-creates a Maildir removed after first use', async () => {
    const spool = await spoolOf(spoolDir, BODY)
    const dir = path.join(root, 'example.com', 'bob')
    await writeMaildirMessage({dir, headers: HEADERS, source: spool.path, stats: spool})
    await cleanup(dir)
    const res = await writeMaildirMessage({dir, headers: HEADERS, source: spool.path, stats: spool})
    expect((await lstat(res.file)).isFile()).toBe(true)
  })

  /** A file system whose message writes fail with `code` after `okWrites` successful writes. */
  function failingFs(code: string, where: 'write' | 'sync' | 'rename' | 'fsyncDir', okWrites = 1): MaildirFs {
    const fail = () => Object.assign(new Error(`injected ${code}`), {code})
    return {
      ...realFs,
      rename: async (a, b) => {
        if (where === 'rename') throw fail()
        return realFs.rename(a, b)
      },
      open: async (file, flags, mode) => {
        const h = await realFs.open(file, flags, mode)
        const isTmp = (flags & constants.O_CREAT) !== 0
        const isDir = (flags & constants.O_DIRECTORY) !== 0
        let writes = 0
        const wrapped: FileLike = {
          read: (b, o, l, p) => h.read(b, o, l, p),
          write: async (b, o, l) => {
            if (isTmp && where === 'write' && writes++ >= okWrites) throw fail()
            return h.write(b, o, l)
          },
          sync: async () => {
            if ((isTmp && where === 'sync') || (isDir && where === 'fsyncDir')) throw fail()
            return h.sync()
          },
          close: () => h.close(),
        }
        return wrapped
      },
    }
  }

  test.each([
    ['ENOSPC', 'write'],
    ['EDQUOT', 'write'],
    ['EIO', 'sync'],
    ['ENOSPC', 'rename'],
    ['EIO', 'fsyncDir'],
  ] as const)('%s on %s: error rethrown, nothing left in tmp/ or new/', async (code, where) => {
    const spool = await spoolOf(spoolDir, BODY)
    const dir = path.join(root, 'example.com', 'carol')
    await expect(
      writeMaildirMessage({dir, headers: HEADERS, source: spool.path, stats: spool, fs: failingFs(code, where)}),
    ).rejects.toMatchObject({code})
    expect(await readdir(path.join(dir, 'tmp'))).toEqual([])
    expect(await readdir(path.join(dir, 'new'))).toEqual([])
  })

  test('writeAll loops over short writes and refuses zero-byte writes', async () => {
    const got: Buffer[] = []
    const short: FileLike = {
      read: async () => ({bytesRead: 0}),
      write: async (b, o, l) => {
        const n = Math.min(3, l)
        got.push(Buffer.from(b.subarray(o, o + n)))
        return {bytesWritten: n}
      },
      sync: async () => undefined,
      close: async () => undefined,
    }
    await writeAll(short, Buffer.from('hello world'))
    expect(Buffer.concat(got).toString()).toBe('hello world')
    const stuck: FileLike = {...short, write: async () => ({bytesWritten: 0})}
    await expect(writeAll(stuck, Buffer.from('x'))).rejects.toMatchObject({code: 'EIO'})
  })
})
