/**
 * The edges of a replay run against a real `lmtp serve`: MAIL parameters decided per message from its bytes,
 * how sessions are counted (closed by replay vs lost), the exit codes of skipped and interrupted input, and
 * --resume (what was answered finally is not sent again; a torn last line is ignored).
 */
import {mkdir, mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, test} from 'vitest'
import {MAILDIRSIZE} from '../../src/delivery/quota.js'
import type {LmtpEvent} from '../../src/protocol/events.js'
import {type ReplayOptions, runReplay} from '../../src/replay/driver.js'
import {generateMessages} from '../../src/replay/generate.js'
import {parseResumeText, RESUME_FORMAT, ResumeJournal} from '../../src/replay/resume.js'
import {readSources} from '../../src/replay/sources.js'
import {deliveredFiles, startServe, type TestServer} from '../support/serve.js'

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'lmtp-replay-edges-'))
})
afterAll(async () => {
  await rm(dir, {recursive: true, force: true})
})

function options(server: TestServer, more: Partial<ReplayOptions>): ReplayOptions {
  return {
    target: {kind: 'tcp', host: '127.0.0.1', port: server.port},
    lhloName: 'replay.test',
    concurrency: 1,
    input: () => readSources([]),
    ...more,
  }
}

async function emlDir(name: string, messages: Record<string, string | Buffer>): Promise<string> {
  const d = path.join(dir, name)
  await mkdir(d, {recursive: true})
  for (const [file, content] of Object.entries(messages)) await writeFile(path.join(d, file), content)
  return d
}

function mailLines(events: LmtpEvent[]): string[] {
  return events.flatMap((e) => (e.type === 'command' && e.role === 'server' && e.verb === 'MAIL' ? [e.line] : []))
}

describe('MAIL parameters per message', () => {
  test('BODY=8BITMIME only for the message with 8-bit content; SIZE is its exact size', async () => {
    const seven = 'Delivered-To: a@example.com\nSubject: seven\n\nplain ASCII\n'
    const eight = Buffer.from('Delivered-To: b@example.com\nSubject: eight\n\nGrüße\n', 'utf8')
    const src = await emlDir('params', {'1-seven.eml': seven, '2-eight.eml': eight})
    const serve = await startServe()
    try {
      const summary = await runReplay(options(serve, {input: () => readSources([src])}))
      expect(summary.recipients.delivered).toBe(2)
      const lines = mailLines(serve.events)
      expect(lines).toHaveLength(2)
      // Trace headers are left out, line ends become CRLF: the size declared is what is sent.
      const sevenSent = 'Subject: seven\r\n\r\nplain ASCII\r\n'.length
      expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^MAIL FROM:<> SIZE=${sevenSent}$`)))
      expect(lines).toContainEqual(expect.stringMatching(/^MAIL FROM:<> SIZE=\d+ BODY=8BITMIME$|^MAIL FROM:<> BODY=8BITMIME SIZE=\d+$/))
      expect(lines.filter((l) => l.includes('BODY='))).toHaveLength(1)
    } finally {
      await serve.stop()
      await serve.cleanup()
    }
  })
})

describe('sessions', () => {
  test('sessions replay QUITs itself (--messages-per-connection, the end of the run) are closed, not lost', async () => {
    const serve = await startServe()
    try {
      const summary = await runReplay(
        options(serve, {
          generated: true,
          count: 6,
          concurrency: 2,
          messagesPerConnection: 2,
          to: ['load@example.com'],
          from: 'load@example.org',
          input: () => generateMessages({size: 512, from: 'load@example.org', to: ['load@example.com']}),
        }),
      )
      expect(summary.messages.delivered).toBe(6)
      // Each worker QUITs after 2 messages and at the end: every session opened was closed by replay.
      expect(summary.connections.opened).toBeGreaterThanOrEqual(3)
      expect(summary.connections).toEqual({opened: summary.connections.opened, closed: summary.connections.opened, lost: 0, dropped: 0, failedAttempts: 0})
      expect(summary.exitCode).toBe(0)
    } finally {
      await serve.stop()
      await serve.cleanup()
    }
  })
})

describe('exit codes of unsent input', () => {
  test('Ctrl-C (the signal) after a few messages: interrupted, exit 130, the rest not sent', async () => {
    const serve = await startServe()
    const controller = new AbortController()
    try {
      const summary = await runReplay(
        options(serve, {
          generated: true,
          count: 1_000_000,
          to: ['load@example.com'],
          from: 'load@example.org',
          input: () => generateMessages({size: 256, from: 'load@example.org', to: ['load@example.com']}),
          onProgress: (p) => {
            if (p.done >= 5) controller.abort()
          },
          signal: controller.signal,
        }),
      )
      expect(summary.interrupted).toBe(true)
      expect(summary.messages.total).toBeGreaterThanOrEqual(5)
      expect(summary.messages.total).toBeLessThan(1_000_000)
      expect(summary.recipients.deferred).toBe(0)
      expect(summary.exitCode).toBe(130)
    } finally {
      await serve.stop()
      await serve.cleanup()
    }
  })

  test('a recorded transaction without a body is not input that went unsent: exit 0', async () => {
    const rec = path.join(dir, 'notmail')
    await mkdir(rec)
    const header = {type: 'session', format: 'lmtp-transcript', v: 1, id: 's1', at: 0, start: '', peer: '', listener: '', transport: 'tcp'}
    const refused = {type: 'transaction', t: 1, tx: 's1.1', start: 0, from: 'a@example.org', params: {}, rcpts: [{to: 'x@example.com', stage: 'RCPT', code: 550}], aborted: false}
    await writeFile(path.join(rec, 's1.jsonl'), `${JSON.stringify(header)}\n${JSON.stringify(refused)}\n`)
    const src = await emlDir('notmail-eml', {'a.eml': 'Delivered-To: a@example.com\nSubject: a\n\na\n'})
    const serve = await startServe()
    try {
      const summary = await runReplay(options(serve, {input: () => readSources([rec, src])}))
      expect(summary.input).toMatchObject({skipped: 1, notMail: 1})
      expect(summary.exitCode).toBe(0)
    } finally {
      await serve.stop()
      await serve.cleanup()
    }
  })
})

describe('--resume', () => {
  const message = (to: string, n: number): string => `Delivered-To: ${to}\nMessage-ID: <${n}@resume.test>\nSubject: ${n}\n\nbody ${n}\n`

  test('a second run sends only what the first did not: every message arrives once', async () => {
    const src = await emlDir('resume-all', Object.fromEntries([1, 2, 3, 4, 5, 6].map((n) => [`${n}.eml`, message('r@example.com', n)])))
    const file = path.join(dir, 'all.resume')
    const serve = await startServe()
    try {
      const first = await runReplay(options(serve, {count: 4, input: () => readSources([src]), journal: await ResumeJournal.open(file)}))
      expect(first.messages.delivered).toBe(4)
      expect(first.resume).toMatchObject({alreadyDone: 0, recipientsAlreadyDone: 0})
      const second = await runReplay(options(serve, {input: () => readSources([src]), journal: await ResumeJournal.open(file)}))
      expect(second.messages.delivered).toBe(2)
      expect(second.resume).toMatchObject({alreadyDone: 4, recipientsAlreadyDone: 4})
      expect(second.exitCode).toBe(0)
      const third = await runReplay(options(serve, {input: () => readSources([src]), journal: await ResumeJournal.open(file)}))
      expect(third.messages.total).toBe(0)
      expect(third.resume!.alreadyDone).toBe(6)
      expect(third.exitCode).toBe(0)
      const ids = (await deliveredFiles(serve.root)).map((f) => /Message-ID: <(\d+)@/.exec(f.content)?.[1]).sort()
      expect(ids).toEqual(['1', '2', '3', '4', '5', '6'])
    } finally {
      await serve.stop()
      await serve.cleanup()
    }
  })

  test('a deferred recipient is not done: the next run sends the message to it alone', async () => {
    const src = await emlDir('resume-deferred', {'m.eml': 'To: alice@example.com, carol@example.com\nMessage-ID: <d@resume.test>\nSubject: d\n\nd\n'})
    const file = path.join(dir, 'deferred.resume')
    const usersFile = path.join(dir, 'users-deferred')
    await writeFile(usersFile, 'alice@example.com\ncarol@example.com quota=10K\n')
    const serve = await startServe({usersFile})
    try {
      await mkdir(path.join(serve.root, 'example.com', 'carol'), {recursive: true})
      await writeFile(path.join(serve.root, 'example.com', 'carol', MAILDIRSIZE), '10240S\n10200 20\n')
      const first = await runReplay(options(serve, {input: () => readSources([src]), journal: await ResumeJournal.open(file)}))
      expect(first.recipients).toMatchObject({delivered: 1, deferred: 1})
      expect(first.exitCode).toBe(75)
      const entries = [...parseResumeText(await readFile(file, 'utf8'), file).values()]
      expect(entries.map((s) => [...s])).toEqual([[0]])
      // carol has room now.
      await writeFile(path.join(serve.root, 'example.com', 'carol', MAILDIRSIZE), '10240S\n')
      const second = await runReplay(options(serve, {input: () => readSources([src]), journal: await ResumeJournal.open(file)}))
      expect(second.recipients).toMatchObject({total: 1, delivered: 1})
      expect(second.resume).toMatchObject({alreadyDone: 0, recipientsAlreadyDone: 1})
      expect(second.exitCode).toBe(0)
      const boxes = (await deliveredFiles(serve.root)).map((f) => f.mailbox).sort()
      expect(boxes).toEqual([expect.stringMatching(/alice/), expect.stringMatching(/carol/)])
    } finally {
      await serve.stop()
      await serve.cleanup()
    }
  })

  test('a torn last line (a run killed mid-write) is ignored and cut off: the file stays readable', async () => {
    const src = await emlDir('resume-torn', {'1.eml': message('t@example.com', 1), '2.eml': message('t@example.com', 2)})
    const file = path.join(dir, 'torn.resume')
    const serve = await startServe()
    try {
      const first = await runReplay(options(serve, {count: 1, input: () => readSources([src]), journal: await ResumeJournal.open(file)}))
      expect(first.messages.delivered).toBe(1)
      const text = await readFile(file, 'utf8')
      await writeFile(file, `${text}{"key":"torn-fragm`)
      const second = await runReplay(options(serve, {input: () => readSources([src]), journal: await ResumeJournal.open(file)}))
      expect(second.messages.delivered).toBe(1)
      expect(second.resume!.alreadyDone).toBe(1)
      const after = await readFile(file, 'utf8')
      expect(after).not.toContain('torn-fragm')
      expect(after.split('\n')[0]).toContain(RESUME_FORMAT)
      expect(parseResumeText(after, file).size).toBe(2)
    } finally {
      await serve.stop()
      await serve.cleanup()
    }
  })
})
