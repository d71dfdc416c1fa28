/**
 * Record a varied set of sessions with `serve --record` (mixed outcomes, BDAT, duplicates, dot lines, 8-bit,
 * a transaction refused at RCPT), replay the recording into a second `lmtp serve`: the delivered bodies are
 * byte-identical, --compare reports no change; then one user is over quota on a third server and --compare
 * reports exactly that recipient.
 */
import {mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, test} from 'vitest'
import {MAILDIRSIZE} from '../../src/delivery/quota.js'
import {connectTarget} from '../../src/net/target.js'
import {LmtpClient, type RecipientResult} from '../../src/protocol/client.js'
import {runReplay} from '../../src/replay/driver.js'
import {readSources} from '../../src/replay/sources.js'
import {isSessionLine, type TransactionLine} from '../../src/replay/transcript.js'
import {bodyAfterTrace, deliveredFiles, startServe, type TestServer} from '../support/serve.js'

const USERS = ['alice@example.com', 'bob@example.com', 'dave@example.com', 'carol@example.com quota=10K'].join('\n')

let scratch: string
let usersFile: string
let recDir: string
let a: TestServer

async function session(port: number, run: (c: LmtpClient) => Promise<void>): Promise<void> {
  const socket = await connectTarget({kind: 'tcp', host: '127.0.0.1', port})
  const c = new LmtpClient(socket)
  await c.start()
  await c.lhlo('client.test')
  await run(c)
  await c.quit()
}

function body(bytes: string | Buffer): AsyncIterable<Buffer> {
  return (async function* () {
    yield Buffer.from(bytes)
  })()
}

const MESSAGES = {
  dots: 'Subject: dots\r\nMessage-ID: <dots@test>\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n',
  eight: Buffer.from('Subject: 8bit\r\nMessage-ID: <8bit@test>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGrüße aus Köln — ünïcödé\r\n', 'utf8'),
  big: `Subject: big\r\nMessage-ID: <big@test>\r\n\r\n${'x'.repeat(76)}\r\n`.repeat(1) + `${'y'.repeat(998)}\r\n`.repeat(5),
  plain: 'Subject: plain\r\nMessage-ID: <plain@test>\r\n\r\nhello\r\n',
}

const outcomes = new Map<string, RecipientResult[]>()

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'lmtp-replay-rec-'))
  usersFile = path.join(scratch, 'users')
  await writeFile(usersFile, USERS)
  recDir = path.join(scratch, 'rec')
  a = await startServe({usersFile, record: recDir})
  // carol is nearly full on A: over quota after the body.
  await mkdir(path.join(a.root, 'example.com', 'carol'), {recursive: true})
  await writeFile(path.join(a.root, 'example.com', 'carol', MAILDIRSIZE), '10240S\n10200 20\n')
  await session(a.port, async (c) => {
    // Mixed at RCPT (unknown user), dot lines, DATA.
    const r1 = await c.send({from: 'sender@example.org', to: ['alice@example.com', 'nobody@example.com', 'dave@example.com'], body: body(MESSAGES.dots)})
    outcomes.set('dots', r1.recipients)
    // Every recipient refused at RCPT: no body, not replayable.
    const r2 = await c.send({from: 'sender@example.org', to: ['ghost@example.com'], body: body('Subject: x\r\n\r\nx\r\n')})
    outcomes.set('refused', r2.recipients)
  })
  await session(a.port, async (c) => {
    // BDAT, 8-bit, a duplicate recipient.
    const r = await c.send({
      from: 'sender@example.org',
      to: ['bob@example.com', 'bob@example.com'],
      params: {body: '8BITMIME'},
      body: body(MESSAGES.eight),
      bdat: true,
    })
    outcomes.set('eight', r.recipients)
  })
  await session(a.port, async (c) => {
    // Over quota for carol, delivered for alice; a multi-chunk BDAT.
    const r = await c.send({from: '', to: ['carol@example.com', 'alice@example.com'], body: body(MESSAGES.big), bdat: true, chunkSize: 4096})
    outcomes.set('big', r.recipients)
    const r2 = await c.send({from: 'sender@example.org', to: ['bob@example.com'], body: body(MESSAGES.plain)})
    outcomes.set('plain', r2.recipients)
  })
  await a.stop()
})

afterAll(async () => {
  await a?.cleanup()
  await rm(scratch, {recursive: true, force: true})
})

async function transactions(): Promise<TransactionLine[]> {
  const out: TransactionLine[] = []
  for (const f of (await readdir(recDir)).filter((n) => n.endsWith('.jsonl')).sort()) {
    const lines = (await readFile(path.join(recDir, f), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as {type: string})
    expect(isSessionLine(lines[0])).toBe(true)
    out.push(...(lines.filter((l) => l.type === 'transaction') as TransactionLine[]))
  }
  return out
}

describe('serve --record', () => {
  test('the recorded sessions had the mixed outcomes this test is about', () => {
    expect(outcomes.get('dots')!.map((r) => r.code)).toEqual([250, 550, 250])
    expect(outcomes.get('refused')!.map((r) => r.code)).toEqual([550])
    expect(outcomes.get('eight')!.map((r) => r.code)).toEqual([250, 250])
    expect(outcomes.get('big')!.map((r) => [r.code, r.enhanced])).toEqual([
      [452, '4.2.2'],
      [250, '2.0.0'],
    ])
  })

  test('one transcript per session (0600), every transaction with its recipients in RCPT order', async () => {
    const files = (await readdir(recDir)).filter((n) => n.endsWith('.jsonl'))
    expect(files).toHaveLength(3)
    for (const f of files) expect((await stat(path.join(recDir, f))).mode & 0o777).toBe(0o600)
    expect((await stat(recDir)).mode & 0o777).toBe(0o700)
    expect((await stat(path.join(recDir, 'bodies'))).mode & 0o777).toBe(0o700)
    const txs = await transactions()
    expect(txs.map((t) => t.rcpts.map((r) => `${r.to} ${r.stage} ${r.code}`))).toEqual([
      ['alice@example.com DATA 250', 'nobody@example.com RCPT 550', 'dave@example.com DATA 250'],
      ['ghost@example.com RCPT 550'],
      ['bob@example.com DATA 250', 'bob@example.com DATA 250'],
      ['carol@example.com DATA 452', 'alice@example.com DATA 250'],
      ['bob@example.com DATA 250'],
    ])
    expect(txs[1]!.body).toBeUndefined()
    expect(txs[2]!.body?.via).toBe('BDAT')
    expect(txs[2]!.params.body).toBe('8BITMIME')
    expect(txs[3]!.from).toBe('')
  })

  test('each body is stored once, content-addressed, 0600, exactly as received (dot-stuffing removed)', async () => {
    const txs = await transactions()
    const names = (await readdir(path.join(recDir, 'bodies'))).filter((n) => !n.startsWith('.'))
    expect(names).toHaveLength(4)
    const dots = txs[0]!.body!
    expect(dots.file).toBe(`bodies/${dots.sha256}`)
    const stored = await readFile(path.join(recDir, dots.file))
    expect(stored.toString()).toBe(MESSAGES.dots)
    expect((await stat(path.join(recDir, dots.file))).mode & 0o777).toBe(0o600)
    expect(await readFile(path.join(recDir, txs[2]!.body!.file))).toEqual(MESSAGES.eight)
  })
})

describe('replay a recording into a second lmtp serve', () => {
  async function replayInto(server: TestServer) {
    return runReplay({
      input: () => readSources([recDir]),
      target: {kind: 'tcp', host: '127.0.0.1', port: server.port},
      concurrency: 2,
      compare: true,
      lhloName: 'replay.test',
    })
  }

  test('same outcomes, byte-identical bodies, --compare reports no change (exit 0)', async () => {
    const b = await startServe({usersFile})
    try {
      await mkdir(path.join(b.root, 'example.com', 'carol'), {recursive: true})
      await writeFile(path.join(b.root, 'example.com', 'carol', MAILDIRSIZE), '10240S\n10200 20\n')
      const summary = await replayInto(b)
      expect(summary.compare).toMatchObject({changed: 0, unchanged: 8, compared: 8})
      expect(summary.exitCode).toBe(0)
      expect(summary.messages.total).toBe(4)
      expect(summary.recipients).toEqual({total: 8, delivered: 6, deferred: 1, rejected: 1})
      // The refused transaction had no body: reported as skipped, not sent.
      expect(summary.input.skipped).toBe(1)
      expect(summary.input.problems[0]!.reason).toMatch(/no body recorded/)
      const original = (await deliveredFiles(a.root)).map((f) => `${f.mailbox}\n${bodyAfterTrace(f.content)}`).sort()
      const replayed = (await deliveredFiles(b.root)).map((f) => `${f.mailbox}\n${bodyAfterTrace(f.content)}`).sort()
      expect(original).toHaveLength(6)
      expect(replayed).toEqual(original)
      // Byte for byte, 8-bit included.
      const eightA = (await deliveredFiles(a.root)).find((f) => f.content.includes('<8bit@test>'))!
      const eightB = (await deliveredFiles(b.root)).find((f) => f.content.includes('<8bit@test>'))!
      // (the Maildir writer stores LF line ends)
      expect(bodyAfterTrace(eightB.content)).toBe(MESSAGES.eight.toString('utf8').replace(/\r\n/g, '\n'))
      expect(bodyAfterTrace(eightA.content)).toBe(bodyAfterTrace(eightB.content))
    } finally {
      await b.stop()
      await b.cleanup()
    }
  })

  test('a user over quota on the new server: --compare reports exactly that recipient (exit 76)', async () => {
    // The same users, but dave now has a quota, and is nearly full.
    const quotaUsers = path.join(scratch, 'users-quota')
    await writeFile(quotaUsers, USERS.replace('dave@example.com', 'dave@example.com quota=10K'))
    const c = await startServe({usersFile: quotaUsers})
    try {
      for (const user of ['carol', 'dave']) {
        await mkdir(path.join(c.root, 'example.com', user), {recursive: true})
        await writeFile(path.join(c.root, 'example.com', user, MAILDIRSIZE), '10240S\n10200 20\n')
      }
      const summary = await replayInto(c)
      expect(summary.compare!.changed).toBe(1)
      expect(summary.compare!.changes).toEqual([
        expect.objectContaining({
          recipient: 'dave@example.com',
          recorded: expect.objectContaining({code: 250, enhanced: '2.0.0'}),
          now: expect.objectContaining({code: 452, enhanced: '4.2.2', outcome: 'deferred'}),
        }),
      ])
      expect(summary.exitCode).toBe(76)
    } finally {
      await c.stop()
      await c.cleanup()
    }
  })
})
