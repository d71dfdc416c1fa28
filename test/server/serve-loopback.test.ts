/**
 * `lmtp serve` over real sockets with real files: the rules of the serve issue, driven byte for byte.
 */
import {readdir, stat, writeFile} from 'node:fs/promises'
import path from 'node:path'
import tls from 'node:tls'
import {afterEach, describe, expect, test} from 'vitest'
import {connectTarget} from '../../src/net/target.js'
import {LmtpClient} from '../../src/protocol/client.js'
import {R} from '../../src/protocol/replies.js'
import {describeReply} from '../../src/protocol/reply.js'
import {RawSession, type TestServer, bodyAfterTrace, deliveredFiles, startServe} from '../support/serve.js'
import {makeTestCertificate} from '../support/tls-cert.js'

let srv: TestServer | undefined
afterEach(async () => {
  if (srv) {
    await srv.stop()
    await srv.cleanup()
    srv = undefined
  }
})

const brief = (rs: {code: number; enhanced?: string}[]): string[] => rs.map((r) => `${r.code} ${r.enhanced ?? ''}`.trim())

async function lhlo(s: RawSession): Promise<number> {
  await s.waitReplies(1)
  s.write('LHLO client.test\r\n')
  await s.waitReplies(2)
  return 2
}

describe.each(['tcp', 'unix'] as const)('serve over %s', (transport) => {
  test('mixed outcomes in one transaction: delivered, unknown, over quota, duplicate', async () => {
    const dir0 = await import('node:os').then((os) => os.tmpdir())
    const usersFile = path.join(dir0, `users-${process.pid}-${transport}`)
    await writeFile(usersFile, '# test users\nalice@example.com\nbob@example.com quota=3K\n')
    srv = await startServe({usersFile})
    const s = await RawSession.open(transport === 'tcp' ? srv.port : srv.socketPath)
    let n = await lhlo(s)
    const body = `Subject: t\r\n\r\n${'x'.repeat(2000)}\r\n.\r\n`
    s.write('MAIL FROM:<sender@example.org>\r\nRCPT TO:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n')
    n += 4
    await s.waitReplies(n)
    s.write(body)
    n += 2
    const first = await s.waitReplies(n)
    expect(brief(first.slice(-2))).toEqual(['250 2.0.0', '250 2.0.0'])
    s.write(
      'MAIL FROM:<sender@example.org>\r\nRCPT TO:<alice@example.com>\r\nRCPT TO:<nobody@example.com>\r\nRCPT TO:<bob@example.com>\r\nRCPT TO:<Alice@Example.com>\r\nDATA\r\n',
    )
    n += 6
    const env = await s.waitReplies(n)
    expect(brief(env.slice(-6))).toEqual(['250 2.1.0', '250 2.1.5', '550 5.1.1', '250 2.1.5', '250 2.1.5', '354'])
    s.write(body)
    n += 3
    const res = await s.waitReplies(n)
    expect(res.slice(-3).map(describeReply)).toEqual([
      expect.stringMatching(/^250 2\.0\.0 <alice@example\.com> \S+\.\d+ delivered$/),
      '452 4.2.2 <bob@example.com> mailbox full, try again later',
      expect.stringMatching(/^250 2\.0\.0 <Alice@Example\.com> \S+\.\d+ delivered$/),
    ])
    s.close()
    const files = await deliveredFiles(srv.root)
    expect(files.map((f) => f.mailbox)).toEqual(['example.com/alice', 'example.com/alice', 'example.com/alice', 'example.com/bob'])
    expect(files.filter((f) => f.mailbox === 'example.com/alice').every((f) => bodyAfterTrace(f.content) === `Subject: t\n\n${'x'.repeat(2000)}\n`)).toBe(true)
    expect(files[0]!.content).toMatch(/^Return-Path: <sender@example.org>\nDelivered-To: /)
    // maildirsize is kept in Maildir++ format for bob (limit line first).
    const { readFile } = await import('node:fs/promises')
    const ms = await readFile(path.join(srv.root, 'example.com', 'bob', 'maildirsize'), 'utf8')
    expect(ms.split('\n')[0]).toBe('3072S')
  })
})

describe('serve limits and hostile input', () => {
  test('a message over --max-size gets 552 5.3.4 per recipient and nothing is written', async () => {
    srv = await startServe({maxSize: 1024})
    const s = await RawSession.open(srv.port)
    let n = await lhlo(s)
    s.write('MAIL FROM:<a@example.org> SIZE=5000\r\n')
    n++
    expect(brief(await s.waitReplies(n)).at(-1)).toBe('552 5.3.4')
    s.write('MAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.com>\r\nRCPT TO:<y@example.com>\r\nDATA\r\n')
    n += 4
    await s.waitReplies(n)
    s.write(`${'y'.repeat(900)}\r\n${'z'.repeat(900)}\r\n.\r\nNOOP\r\n`)
    n += 3
    const r = await s.waitReplies(n)
    expect(brief(r.slice(-3))).toEqual(['552 5.3.4', '552 5.3.4', '250 2.0.0'])
    expect(await deliveredFiles(srv.root)).toEqual([])
    s.close()
  })

  test('smuggling variants never deliver a second message', async () => {
    srv = await startServe()
    for (const variant of ['\n.\n', '\r\n.\n', '\n.\r\n', '\r.\r\n']) {
      const s = await RawSession.open(srv.port)
      let n = await lhlo(s)
      s.write('MAIL FROM:<a@example.org>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n')
      n += 3
      await s.waitReplies(n)
      s.write(`Subject: real\r\n\r\nhello${variant}MAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\n.\r\n`)
      n += 1
      const r = await s.waitReplies(n)
      expect(r.at(-1)!.code, JSON.stringify(variant)).toBe(554)
      s.write('QUIT\r\n')
      await s.waitClosed()
      expect(s.replies.length).toBe(n + 1)
    }
    expect(await deliveredFiles(srv.root)).toEqual([])
  })

  test.each([
    ['../x@example.com'],
    ['"../x"@example.com'],
    ['"a/b"@example.com'],
    ['"a\\\\b"@example.com'],
    ['.hidden@example.com'],
    ['%2e%2e@example.com'],
    ['x@..'],
    ['x@example..com'],
    ['"x\u2215y"@example.com'],
  ])('traversal attempt %s is refused at RCPT and creates nothing', async (addr) => {
    srv = await startServe()
    const s = await RawSession.open(srv.port)
    let n = await lhlo(s)
    s.write(`MAIL FROM:<a@example.org> SMTPUTF8\r\nRCPT TO:<${addr}>\r\n`)
    n += 2
    const r = await s.waitReplies(n)
    expect(r.at(-1)!.code).toBeGreaterThanOrEqual(500)
    s.close()
    const top = await readdir(srv.dir)
    expect(top.sort()).toEqual(['Maildir', 'lmtp.sock'].sort())
    expect((await readdir(srv.root)).filter((e) => !e.startsWith('.lmtp'))).toEqual([])
  })

  test('--max-connections: the connection beyond the cap gets 421 4.7.0', async () => {
    srv = await startServe({maxConnections: 2})
    const a = await RawSession.open(srv.port)
    const b = await RawSession.open(srv.port)
    await a.waitReplies(1)
    await b.waitReplies(1)
    const c = await RawSession.open(srv.port)
    const r = await c.waitReplies(1)
    expect(describeReply(r[0]!)).toBe(describeReply(R.tooManyConnections))
    await c.waitClosed()
    a.close()
    b.close()
  })

  test('idle sessions get 421 4.4.2 and are closed', async () => {
    srv = await startServe({idleTimeoutMs: 300})
    const s = await RawSession.open(srv.port)
    const r = await s.waitReplies(2)
    expect(describeReply(r[1]!)).toBe(describeReply(R.idleTimeout))
    await s.waitClosed()
  })
})

describe('STARTTLS', () => {
  test('upgrades, forgets the session, discards injected commands, then delivers', async () => {
    const {mkdtemp} = await import('node:fs/promises')
    const os = await import('node:os')
    const certDir = await mkdtemp(path.join(os.tmpdir(), 'lmtp-cert-'))
    const cert = makeTestCertificate(certDir)
    srv = await startServe({tls: {cert: cert.cert, key: cert.key}})
    // Injection: commands pipelined after STARTTLS in clear text must never be obeyed.
    const s = await RawSession.open(srv.port)
    let n = await lhlo(s)
    expect(s.replies[1]!.lines).toContain('STARTTLS')
    s.write('STARTTLS\r\nMAIL FROM:<evil@example.net>\r\n')
    n += 1
    await s.waitReplies(n)
    expect(s.replies.at(-1)!.code).toBe(220)
    const secure = tls.connect({socket: s.socket, rejectUnauthorized: false})
    await new Promise<void>((r) => secure.once('secureConnect', () => r()))
    let got = ''
    secure.on('data', (d) => {
      got += d.toString()
    })
    secure.write('MAIL FROM:<a@example.org>\r\nLHLO again\r\n')
    for (let i = 0; i < 100 && !got.includes('250 SMTPUTF8'); i++) await new Promise((r) => setTimeout(r, 20))
    const lines = got.trimEnd().split('\r\n')
    // The injected MAIL was dropped; the state was reset (MAIL needs LHLO again), STARTTLS is no longer offered.
    expect(lines[0]).toBe('503 5.5.1 send LHLO first')
    expect(lines).not.toContain('250-STARTTLS')
    expect(lines.at(-1)).toBe('250 SMTPUTF8')
    secure.destroy()

    // A real client: STARTTLS then a delivery.
    const socket = await connectTarget({kind: 'tcp', host: '127.0.0.1', port: srv.port})
    const client = new LmtpClient(socket)
    await client.start()
    await client.lhlo('client.test')
    await client.startTls((plain) => {
      const t = tls.connect({socket: plain as import('node:net').Socket, ca: cert.cert, servername: 'mx.test'})
      return new Promise((resolve, reject) => {
        t.once('secureConnect', () => resolve(t))
        t.once('error', reject)
      })
    })
    const caps = await client.lhlo('client.test')
    expect(caps.startTls).toBe(false)
    const res = await client.send({from: 'a@example.org', to: ['tls@example.com'], body: [Buffer.from('Subject: tls\r\n\r\nsecret\r\n')]})
    expect(res.recipients.map((r) => r.code)).toEqual([250])
    await client.quit()
    const files = await deliveredFiles(srv.root)
    expect(files).toHaveLength(1)
    expect(files[0]!.content).toMatch(/ with LMTPS id /)
  })
})

describe('graceful shutdown', () => {
  test('a transaction in flight finishes, idle sessions get 421 4.3.2, no partial file', async () => {
    srv = await startServe()
    const idle = await RawSession.open(srv.port)
    await idle.waitReplies(1)
    const s = await RawSession.open(srv.port)
    let n = await lhlo(s)
    s.write('MAIL FROM:<a@example.org>\r\nRCPT TO:<p@example.com>\r\nRCPT TO:<q@example.com>\r\nDATA\r\n')
    n += 4
    await s.waitReplies(n)
    // The 354 above means the transaction is open: that, not how much of the body the server has read yet, is
    // what makes it "in flight" for stop() (no sleep needed to order them).
    s.write('Subject: half\r\n\r\nfirst half\r\n')
    const stopping = srv.stop()
    const idleReplies = await idle.waitReplies(2)
    expect(describeReply(idleReplies[1]!)).toBe(describeReply(R.shuttingDown))
    s.write('second half\r\n.\r\n')
    n += 3
    const r = await s.waitReplies(n)
    expect(brief(r.slice(-3))).toEqual(['250 2.0.0', '250 2.0.0', '421 4.3.2'])
    await s.waitClosed()
    const summary = await stopping
    expect(summary.totals.delivered).toBe(2)
    const files = await deliveredFiles(srv.root)
    expect(files.map((f) => bodyAfterTrace(f.content))).toEqual(['Subject: half\n\nfirst half\nsecond half\n', 'Subject: half\n\nfirst half\nsecond half\n'])
    const tmp = await readdir(path.join(srv.root, 'example.com', 'p', 'tmp'))
    expect(tmp).toEqual([])
    await srv.cleanup()
    srv = undefined
  })
})

describe('startup', () => {
  test('a stale Unix socket file is replaced; a live one is refused', async () => {
    srv = await startServe()
    const {runServer} = await import('../../src/server/run-server.js')
    const second = runServer({
      maildir: srv.root,
      listen: [{kind: 'unix', path: srv.socketPath}],
      socketMode: 0o660,
      hostname: 'x',
      overQuota: 'temporary',
      checkQuotaAtRcpt: false,
      maxSize: 1000,
      maxRecipients: 100,
      maxConnections: 1,
      idleTimeoutMs: 1000,
      logFormat: 'text',
      shutdownGraceMs: 0,
      log: () => {},
      until: Promise.resolve(),
    })
    await expect(second).rejects.toThrow(/in use by a running server/)
    const st = await stat(srv.socketPath)
    expect(st.isSocket()).toBe(true)
  })
})
