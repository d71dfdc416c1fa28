/**
 * Corpus readers: header parsing and the envelope derived from it, the streaming mbox reader (every chunk
 * size, mboxrd unescaping split at every byte, bad separators and headerless messages with their lines, a
 * FIFO to prove it yields before the end of the file), Maildir trees, .eml directories and detection.
 */
import {spawnSync} from 'node:child_process'
import {createWriteStream} from 'node:fs'
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, test} from 'vitest'
import {envelopeFromHeaders, headerEnd, leadingTraceLength, parseAddressList, parseHeaderBlock} from '../../src/replay/headers.js'
import type {ReplayItem, SourceEntry} from '../../src/replay/item.js'
import {readMbox, unescapeMboxrd} from '../../src/replay/mbox.js'
import {detectFileKind, readSources} from '../../src/replay/sources.js'

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'lmtp-replay-corpus-'))
})
afterAll(async () => {
  await rm(dir, {recursive: true, force: true})
})

async function collect(it: AsyncIterable<SourceEntry>): Promise<{items: ReplayItem[]; problems: string[]; ignored: string[]}> {
  const items: ReplayItem[] = []
  const problems: string[] = []
  const ignored: string[] = []
  for await (const e of it) {
    if ('item' in e) items.push(e.item)
    else if ('problem' in e) problems.push(`${path.basename(e.problem.source)}${e.problem.line === undefined ? '' : `:${e.problem.line}`} ${e.problem.reason}`)
    else ignored.push(path.basename(e.ignored))
  }
  return {items, problems, ignored}
}

async function text(item: ReplayItem): Promise<{from?: string; to: string[]; body: string}> {
  const m = await item.open()
  const parts: Buffer[] = []
  for await (const b of m.body) parts.push(b)
  await m.close()
  return {from: m.from, to: m.to, body: Buffer.concat(parts).toString('utf8')}
}

describe('headers', () => {
  test.each([
    ['A: b\r\n\r\nbody', 8],
    ['A: b\n\nbody', 6],
    ['\r\nbody', 2],
    ['\nbody', 1],
    ['A: b\r\nC: d', -1],
    ['A: b\r\n', -1],
  ])('headerEnd(%j) = %d', (input, end) => {
    expect(headerEnd(Buffer.from(input))).toBe(end)
  })

  test.each([
    ['"Alice A." <alice@example.com>, bob@example.com', ['alice@example.com', 'bob@example.com']],
    ['alice@example.com (Alice), <carol@example.com>', ['alice@example.com', 'carol@example.com']],
    ['"Doe, John" <john@example.com>', ['john@example.com']],
    ['team: a@example.com, b@example.com;, c@example.com', ['a@example.com', 'b@example.com', 'c@example.com']],
    ['undisclosed-recipients:;', []],
    ['not an address', []],
  ])('parseAddressList(%j)', (input, want) => {
    expect(parseAddressList(input)).toEqual(want)
  })

  test.each([
    ['Delivered-To: <d@x>\nX-Original-To: o@x\nTo: t@x\nReturn-Path: <r@x>\n', {from: 'r@x', to: ['d@x']}],
    ['X-Original-To: o@x\nTo: t@x\n', {from: undefined, to: ['o@x']}],
    ['To: a@x,\n b@x\nFrom: "F" <f@x>\n', {from: 'f@x', to: ['a@x', 'b@x']}],
    ['Return-Path: <>\nTo: a@x\n', {from: '', to: ['a@x']}],
    ['Subject: none\n', {from: undefined, to: []}],
  ])('envelope from %j', (headers, want) => {
    expect(envelopeFromHeaders(parseHeaderBlock(Buffer.from(headers)))).toEqual(want)
  })

  test('the envelope sender falls back to the mbox From_ line before From', () => {
    expect(envelopeFromHeaders(parseHeaderBlock(Buffer.from('From: f@x\nTo: a@x\n')), 'line@x').from).toBe('line@x')
  })

  test.each(['\r\nbody\r\n', 'this is not a header\r\n\r\n', '\x00\x01binary\n'])('no headers: %j', (input) => {
    expect(() => parseHeaderBlock(Buffer.from(input))).toThrow(/no headers/)
  })

  test.each([
    ['Return-Path: <a@x>\r\nDelivered-To: b@x\r\nSubject: s\r\n\r\n', 39],
    ['X-Original-To: b@x\nDelivered-To: b@x\nReceived: from x\n\tby y\nDelivered-To: c@x\n\n', 37],
    ['Delivered-To: b@x,\n c@x\nTo: d@x\n\n', 24],
    ['Subject: s\nDelivered-To: b@x\n\n', 0],
    ['Delivered-To: b@x', 0],
  ])('leadingTraceLength(%j) = %d', (input, n) => {
    expect(leadingTraceLength(Buffer.from(input))).toBe(n)
  })

  test('folded and 8-bit values', () => {
    const f = parseHeaderBlock(Buffer.from('Subject: Grüße\r\n  aus Köln\r\n', 'utf8'))
    expect(f).toEqual([{name: 'Subject', value: 'Grüße aus Köln'}])
  })
})

const MBOX = [
  'From alice@example.com Thu Nov 27 10:00:00 2025',
  'Return-Path: <alice@example.com>',
  'To: bob@example.com',
  'Subject: one',
  '',
  'first body',
  '>From the start of a line',
  '>>From twice escaped',
  '> From not an escape',
  '',
  'From MAILER-DAEMON Thu Nov 27 10:01:00 2025',
  'Delivered-To: carol@example.com',
  'Subject: two',
  '',
  'second body',
  '',
  'From broken',
  'To: x@example.com',
  '',
  'skipped because the separator is broken',
  '',
  'From dave@example.com Thu Nov 27 10:02:00 2025',
  '',
  'no headers here',
  '',
  'From erin@example.com Thu Nov 27 10:03:00 2025',
  'To: frank@example.com',
  'Subject: three',
  '',
  'third body, no final newline',
].join('\n')

// The leading trace fields (Return-Path, Delivered-To) give the envelope and are left out of the message.
const WANT_BODIES = [
  'To: bob@example.com\nSubject: one\n\nfirst body\nFrom the start of a line\n>From twice escaped\n> From not an escape\n',
  'Subject: two\n\nsecond body\n',
  'To: frank@example.com\nSubject: three\n\nthird body, no final newline',
]

describe('mbox', () => {
  test.each([1, 2, 3, 7, 64, 1 << 20])('chunk size %d: messages, envelopes, unescaping, bad parts with their lines', async (chunkSize) => {
    const file = path.join(dir, `box-${chunkSize}.mbox`)
    await writeFile(file, MBOX)
    // bufferLimit 40: the first message is read back from its byte range, the others come from memory.
    const {items, problems} = await collect(readMbox(file, {chunkSize, bufferLimit: 40}))
    expect(problems).toEqual([
      'box-' + chunkSize + '.mbox:17 broken From_ separator "From broken": expected "From SENDER DATE"',
      'box-' + chunkSize + '.mbox:22 the message has no headers (an empty line follows the From_ line)',
    ])
    expect(items.map((i) => i.source.replace(/.*:/, ''))).toEqual(['1', '11', '26'])
    const got = await Promise.all(items.map(text))
    expect(got.map((g) => g.body)).toEqual(WANT_BODIES)
    expect(got.map((g) => [g.from, g.to])).toEqual([
      ['alice@example.com', ['bob@example.com']],
      ['', ['carol@example.com']],
      ['erin@example.com', ['frank@example.com']],
    ])
  })

  test('--keep-trace-headers keeps them', async () => {
    const file = path.join(dir, 'keep.mbox')
    await writeFile(file, MBOX)
    const {items} = await collect(readMbox(file, {keepTrace: true}))
    expect((await text(items[1]!)).body).toBe('Delivered-To: carol@example.com\nSubject: two\n\nsecond body\n')
  })

  test('text before the first separator is reported at line 1 and skipped', async () => {
    const file = path.join(dir, 'garbage.mbox')
    await writeFile(file, 'garbage\nmore\n\nFrom a@x Thu Nov 27 10:00:00 2025\nTo: b@x\n\nok\n')
    const {items, problems} = await collect(readMbox(file))
    expect(problems).toEqual([expect.stringMatching(/^garbage.mbox:1 not an mbox separator/)])
    expect(items.map((i) => i.source.replace(/.*:/, ''))).toEqual(['4'])
    expect((await text(items[0]!)).body).toBe('To: b@x\n\nok\n')
  })

  test('CRLF mbox: the separating empty line is removed, CRLF kept', async () => {
    const file = path.join(dir, 'crlf.mbox')
    await writeFile(file, 'From a@x Thu Nov 27 10:00:00 2025\r\nTo: b@x\r\n\r\none\r\n\r\nFrom a@x Thu Nov 27 10:00:00 2025\r\nTo: c@x\r\n\r\ntwo\r\n')
    const {items} = await collect(readMbox(file, {chunkSize: 5}))
    expect(await Promise.all(items.map(async (i) => (await text(i)).body))).toEqual(['To: b@x\r\n\r\none\r\n', 'To: c@x\r\n\r\ntwo\r\n'])
  })

  test('mboxrd unescaping gives the same bytes whatever the chunk boundaries', async () => {
    const input = Buffer.from('>From a\n>>From b\nx>From c\n>\n>>\n>>>From d\n> From e\n>Fro')
    const want = 'From a\n>From b\nx>From c\n>\n>>\n>>From d\n> From e\n>Fro'
    for (let i = 0; i <= input.length; i++) {
      for (let j = i; j <= input.length; j += 3) {
        const parts = [input.subarray(0, i), input.subarray(i, j), input.subarray(j)]
        const out: Buffer[] = []
        for await (const b of unescapeMboxrd((async function* () {
          yield* parts
        })())) out.push(b)
        expect(Buffer.concat(out).toString()).toBe(want)
      }
    }
  })

  test('streams: the first message is handed out before the rest of the file exists (a FIFO)', async () => {
    const fifo = path.join(dir, 'stream.mbox')
    if (spawnSync('mkfifo', [fifo]).status !== 0) return
    const writer = createWriteStream(fifo)
    writer.write('From a@x Thu Nov 27 10:00:00 2025\nTo: b@x\n\none\n\nFrom a@x Thu Nov 27 10:00:00 2025\nTo: c@x\n\n')
    const it = readMbox(fifo)[Symbol.asyncIterator]()
    const first = await it.next()
    expect(first.done).toBe(false)
    expect((first.value as {item: ReplayItem}).item.source).toMatch(/:1$/)
    writer.end('two\n')
    const second = await it.next()
    expect((await text((second.value as {item: ReplayItem}).item)).body).toBe('To: c@x\n\ntwo\n')
    expect((await it.next()).done).toBe(true)
  })
})

describe('directories', () => {
  let maildirs: string
  let emls: string
  beforeAll(async () => {
    maildirs = path.join(dir, 'maildirs')
    const msg = (n: number) => `Delivered-To: u${n}@example.com\nSubject: m${n}\n\nbody ${n}\n`
    for (const box of ['a', 'b/.Sent']) for (const sub of ['cur', 'new', 'tmp']) await mkdir(path.join(maildirs, box, sub), {recursive: true})
    await writeFile(path.join(maildirs, 'a', 'new', '1.M1.host'), msg(1))
    await writeFile(path.join(maildirs, 'a', 'cur', '2.M2.host:2,S'), msg(2))
    await writeFile(path.join(maildirs, 'a', 'tmp', '3.M3.host'), msg(3))
    await mkdir(path.join(maildirs, 'b', 'cur'), {recursive: true})
    await mkdir(path.join(maildirs, 'b', 'new'), {recursive: true})
    await writeFile(path.join(maildirs, 'b', 'new', '4.M4.host'), msg(4))
    await writeFile(path.join(maildirs, 'b', '.Sent', 'cur', '5.M5.host:2,S'), msg(5))
    await writeFile(path.join(maildirs, 'b', 'dovecot-uidlist'), '3 V1 N2\n')
    emls = path.join(dir, 'emls')
    await mkdir(path.join(emls, 'sub'), {recursive: true})
    await writeFile(path.join(emls, 'one.eml'), 'To: x@example.com\r\n\r\none\r\n')
    await writeFile(path.join(emls, 'sub', 'two.eml'), 'To: y@example.com\r\n\r\ntwo\r\n')
    await writeFile(path.join(emls, 'bad.eml'), '\r\nno headers\r\n')
    await writeFile(path.join(emls, 'notes.txt'), 'ignored')
  })

  test('a tree of Maildirs: new/ and cur/ of every Maildir (Maildir++ folders too), never tmp/', async () => {
    const {items, problems} = await collect(readSources([maildirs]))
    expect(problems).toEqual([])
    expect(items.every((i) => i.kind === 'maildir')).toBe(true)
    const got = (await Promise.all(items.map(text))).map((t) => t.to[0]).sort()
    expect(got).toEqual(['u1@example.com', 'u2@example.com', 'u4@example.com', 'u5@example.com'])
  })

  test('a directory of .eml files: other files ignored, a message without headers is a problem when opened', async () => {
    const {items, ignored} = await collect(readSources([emls]))
    expect(ignored).toEqual(['notes.txt'])
    expect(items.map((i) => path.basename(i.source)).sort()).toEqual(['bad.eml', 'one.eml', 'two.eml'])
    const bad = items.find((i) => i.source.endsWith('bad.eml'))!
    await expect(bad.open()).rejects.toThrow(/bad.eml: the message has no headers/)
    const one = items.find((i) => i.source.endsWith('one.eml'))!
    expect(await text(one)).toEqual({from: undefined, to: ['x@example.com'], body: 'To: x@example.com\r\n\r\none\r\n'})
  })

  test('--format eml reads every file as a message', async () => {
    const {items, ignored} = await collect(readSources([emls], {format: 'eml'}))
    expect(ignored).toEqual([])
    expect(items).toHaveLength(4)
  })

  test('a missing SOURCE is a problem, not a crash', async () => {
    const {problems} = await collect(readSources([path.join(dir, 'nope')]))
    expect(problems).toEqual(['nope cannot read: no such file'])
  })

  test.each([
    ['x.txt', 'From a@x Thu Nov 27 10:00:00 2025\nTo: b\n\n', 'mbox'],
    ['x.jsonl', '{"type":"session","format":"lmtp-transcript","v":1,"id":"s","at":0}\n', 'transcript'],
    ['x.json', '{"type":"other"}\n', 'eml'],
    ['x.msg', 'To: a@x\n\nhi\n', 'eml'],
  ])('detects %s by content', async (name, content, kind) => {
    const f = path.join(dir, `detect-${name}`)
    await writeFile(f, content)
    expect(await detectFileKind(f)).toBe(kind)
  })
})
