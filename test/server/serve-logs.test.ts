/**
 * The server log as an operator greps it: one line per recipient outcome (RCPT-time refusals included) with
 * the session, client, sender, Message-ID, size, recipient, mailbox, codes and, for local failures, the cause;
 * one line per session saying truthfully how it ended and how many recipients were accepted.
 */
import {mkdir, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {afterEach, describe, expect, test} from 'vitest'
import {MAILDIRSIZE} from '../../src/delivery/quota.js'
import {RawSession, type TestServer, startServe} from '../support/serve.js'

let srv: TestServer | undefined
afterEach(async () => {
  if (srv) {
    await srv.stop()
    await srv.cleanup()
    srv = undefined
  }
})

type Line = Record<string, unknown>

/** Waits until the log has a line matching `fields`; returns it. */
async function logLine(s: TestServer, fields: Line): Promise<Line> {
  let found: Line | undefined
  await expect
    .poll(() => {
      found = s.logs.map((l) => JSON.parse(l) as Line).find((l) => Object.entries(fields).every(([k, v]) => l[k] === v))
      return found
    }, {timeout: 20_000})
    .toBeDefined()
  return found!
}

async function open(s: TestServer): Promise<RawSession> {
  const c = await RawSession.open(s.port)
  await c.waitReplies(1)
  c.write('LHLO c.test\r\n')
  await c.waitReplies(2)
  return c
}

describe('recipient lines', () => {
  test('delivered, unknown (550 5.1.1), too many (452 4.5.3), quota at RCPT and a local failure, each with its facts', async () => {
    srv = await startServe({checkQuotaAtRcpt: true, quota: 1024, maxRecipients: 100})
    const root = srv.root
    // A full mailbox (refused at RCPT) and one whose domain directory is a file (a local failure).
    await mkdir(path.join(root, 'example.com', 'full'), {recursive: true})
    await writeFile(path.join(root, 'example.com', 'full', MAILDIRSIZE), '1024S\n1024 1\n')
    await writeFile(path.join(root, 'broken.example'), 'not a directory')
    const c = await open(srv)
    const rcpts = ['a@example.com', 'full@example.com', 'x@broken.example', ...Array.from({length: 98}, (_, i) => `r${i}@example.com`), 'over@example.com']
    c.write(`MAIL FROM:<s@example.org> SIZE=60\r\n${rcpts.map((r) => `RCPT TO:<${r}>\r\n`).join('')}DATA\r\n`)
    await c.waitReplies(2 + 1 + rcpts.length + 1)
    c.write('Subject: t\r\nMessage-ID: <t1@example.org>\r\n\r\nhi\r\n.\r\n')
    await c.waitReplies(2 + 1 + rcpts.length + 1 + 100)
    const session = srv.events.find((e) => e.type === 'session.opened')!.sessionId
    const client = `127.0.0.1:${c.socket.localPort}`

    const delivered = await logLine(srv, {event: 'recipient', recipient: 'a@example.com'})
    expect(delivered).toMatchObject({
      level: 'info',
      session,
      client,
      from: 's@example.org',
      messageId: '<t1@example.org>',
      outcome: 'delivered',
      stage: 'DATA',
      mailbox: 'example.com/a',
      code: 250,
      enhanced: '2.0.0',
    })
    expect(delivered.size).toBeGreaterThan(40)
    expect(typeof delivered.time).toBe('string')
    // The id in our line is the one in the 250 the client got.
    const reply250 = c.replies.find((r) => r.lines[0]!.includes('<a@example.com>') && r.code === 250)!
    expect(reply250.lines[0]).toBe(`<a@example.com> ${String(delivered.id)} delivered`)

    expect(await logLine(srv, {event: 'recipient', recipient: 'full@example.com'})).toMatchObject({
      session,
      client,
      from: 's@example.org',
      size: 60,
      stage: 'RCPT',
      outcome: 'deferred',
      mailbox: 'example.com/full',
      code: 452,
      enhanced: '4.2.2',
    })
    expect(await logLine(srv, {event: 'recipient', recipient: 'over@example.com'})).toMatchObject({stage: 'RCPT', code: 452, enhanced: '4.5.3'})
    const failed = await logLine(srv, {event: 'recipient', recipient: 'x@broken.example'})
    expect(failed).toMatchObject({stage: 'DATA', outcome: 'deferred', code: 451, enhanced: '4.3.0', mailbox: 'broken.example/x', messageId: '<t1@example.org>'})
    expect(failed.cause).toMatch(/^ENOTDIR .*broken\.example/)
    c.write('QUIT\r\n')
    await c.waitClosed()
  })

  test('unknown user with a users file; the text format carries the same facts as key=value', async () => {
    const logs: string[] = []
    const users = path.join(await import('node:os').then((os) => os.tmpdir()), `users-logs-${process.pid}`)
    await writeFile(users, 'a@example.com\n')
    srv = await startServe({usersFile: users, logFormat: 'text', log: (l) => logs.push(l)})
    const c = await open(srv)
    c.write('MAIL FROM:<s@example.org>\r\nRCPT TO:<nobody@example.com>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n')
    await c.waitReplies(6)
    c.write('Message-ID: <t2@example.org>\r\n\r\nhi\r\n.\r\nQUIT\r\n')
    await c.waitClosed()
    await expect.poll(() => logs.filter((l) => / session /.test(l)).length).toBe(1)
    const rejected = logs.find((l) => l.includes('to=<nobody@example.com>'))!
    expect(rejected).toMatch(/^\d{4}-\d\d-\d\dT\S+Z \S+ rejected id=\S+ stage=RCPT client=127\.0\.0\.1:\d+ from=<s@example\.org> to=<nobody@example\.com> code=550 dsn=5\.1\.1 \(no such user here\)$/)
    const ok = logs.find((l) => l.includes('to=<a@example.com>'))!
    expect(ok).toMatch(/ delivered id=(\S+) stage=DATA client=\S+ from=<s@example\.org> message-id=<t2@example\.org> size=\d+ to=<a@example\.com> mailbox=example\.com\/a code=250 dsn=2\.0\.0 ms=\d+ \(<a@example\.com> \S+ delivered\)$/)
  })
})

describe('session lines say how the session ended', () => {
  const cases: [string, (c: RawSession) => Promise<void>, string, number][] = [
    ['QUIT', async (c) => { c.write('QUIT\r\n'); await c.waitClosed() }, 'quit', 0],
    ['closed without QUIT', async (c) => { c.close() }, 'client-closed', 0],
    [
      'dropped after 354 (what msmtp does on a failure), with the two accepted recipients counted',
      async (c) => {
        c.write('MAIL FROM:<s@example.org>\r\nRCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n')
        await c.waitReplies(6)
        c.write('Subject: half\r\n')
        c.close()
      },
      'client-dropped-in-body',
      2,
    ],
    [
      'too many errors (a limit)',
      async (c) => {
        c.write('BOGUS\r\n'.repeat(10))
        await c.waitClosed()
      },
      'too-many-errors',
      0,
    ],
  ]
  test.each(cases)('%s', async (_name, act, end, recipients) => {
    srv = await startServe()
    const c = await open(srv)
    const client = `127.0.0.1:${c.socket.localPort}`
    await act(c)
    expect(await logLine(srv, {event: 'session'})).toMatchObject({end, recipients, client})
  })

  test('idle timeout', async () => {
    srv = await startServe({idleTimeoutMs: 300})
    const c = await open(srv)
    await c.waitClosed()
    expect(c.replies.at(-1)!.code).toBe(421)
    expect(await logLine(srv, {event: 'session'})).toMatchObject({end: 'idle-timeout', reason: 'idle timeout'})
  })

  test('server shutdown', async () => {
    srv = await startServe()
    const c = await open(srv)
    const s = srv
    srv = undefined
    await s.stop()
    await c.waitClosed()
    expect(await logLine(s, {event: 'session'})).toMatchObject({end: 'shutdown', reason: 'server shutdown'})
    expect(s.logs.map((l) => (JSON.parse(l) as Line).event)).toEqual(expect.arrayContaining(['listening', 'stopping', 'session']))
    await s.cleanup()
  })
})
