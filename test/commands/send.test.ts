/**
 * `lmtp send` as a user runs it: the built CLI in its own process, against the real `lmtp serve` code
 * (runServer with a Maildir in a temp dir) over TCP, a Unix socket and STARTTLS, and against the scripted
 * fake server for what a real server won't do. Asserts exit codes, the report and the delivered files.
 */
import {spawnSync} from 'node:child_process'
import {mkdtemp, readdir, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, afterEach, beforeAll, describe, expect, test} from 'vitest'
import type {SendReport} from '../../src/client/send-message.js'
import {type FakeServer, greetAndLhlo, parseScript, startFakeServer} from '../support/fake-server.js'
import {requirePeers} from '../support/peers.js'
import {runCli, startServe, type TestServe} from '../client/run-cli.js'
import {freePort} from '../support/peers.js'

let scratch: string
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'lmtp-send-cli-'))
})
afterAll(async () => {
  await rm(scratch, {recursive: true, force: true})
})

async function delivered(maildir: string, address: string): Promise<string[]> {
  const [local, domain] = address.split('@') as [string, string]
  const dir = join(maildir, domain, local, 'new')
  const names = await readdir(dir).catch(() => [] as string[])
  return Promise.all(names.sort().map((n) => readFile(join(dir, n), 'utf8')))
}

function json(run: {stdout: string}): SendReport {
  return JSON.parse(run.stdout) as SendReport
}

describe('lmtp send against lmtp serve', () => {
  let serve: TestServe
  beforeAll(async () => {
    serve = await startServe({
      users: 'alice@example.com\nbob@example.com\nfull@example.com quota=1K\n',
    })
  })
  afterAll(async () => {
    await serve.stop()
  })

  test('delivered: exit 0, a plain table (not a TTY), the file in the Maildir', async () => {
    const run = await runCli(['send', '--server', serve.target, '--to', 'alice@example.com', '--from', 'ops@example.org'])
    expect(run.stderr).toBe('')
    expect(run.code).toBe(0)
    const lines = run.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^#\s+RECIPIENT\s+OUTCOME\s+STAGE\s+CODE\s+ENHANCED\s+TEXT\s+MS$/)
    expect(lines[1]).toMatch(/^1\s+alice@example\.com\s+delivered\s+DATA\s+250\s+2\.0\.0\s+<alice@example\.com> \S+ delivered\s+\d+$/)
    expect(lines[2]).toMatch(/^1 recipient: 1 delivered — 127\.0\.0\.1:\d+ \(DATA, pipelined\), .* exit 0$/)
    expect(run.stdout).not.toMatch(/\x1b\[/)
    const files = await delivered(serve.maildir, 'alice@example.com')
    expect(files.some((f) => f.includes('Subject: lmtp send test message') && f.includes('Return-Path: <ops@example.org>'))).toBe(true)
  })

  test('an unknown user with --users: rejected at RCPT, the others delivered, exit 69', async () => {
    const run = await runCli(['send', '--server', serve.target, '--to', 'bob@example.com,nobody@example.com', '--json'])
    expect(run.code).toBe(69)
    const r = json(run)
    expect(r.exitCode).toBe(69)
    expect(r.recipients.map((x) => [x.recipient, x.outcome, x.stage, x.code])).toEqual([
      ['bob@example.com', 'delivered', 'DATA', 250],
      ['nobody@example.com', 'rejected', 'RCPT', 550],
    ])
  })

  test('over quota: the duplicate recipient is deferred (452 4.2.2), exit 75', async () => {
    const run = await runCli(['send', '--server', serve.target, '--to', 'full@example.com', '--to', 'full@example.com'])
    expect(run.code).toBe(75)
    const rows = run.stdout.split('\n').filter((l) => /^\d+ {2}/.test(l))
    expect(rows).toHaveLength(2)
    // The two copies are written in parallel; which one the quota refuses is not fixed (the first to commit wins).
    const delivered = rows.filter((r) => /^\d\s+full@example\.com\s+delivered\s+DATA\s+250/.test(r))
    const deferred = rows.filter((r) => /^\d\s+full@example\.com\s+deferred\s+DATA\s+452\s+4\.2\.2\s/.test(r))
    expect([delivered.length, deferred.length], rows.join('\n')).toEqual([1, 1])
    expect(rows.map((r) => r.slice(0, 1))).toEqual(['1', '2'])
    expect(run.stdout).toMatch(/2 recipients: 1 delivered, 1 deferred — .* exit 75\n$/)
  })

  test('--json: the report object on stdout, exit code as well', async () => {
    const run = await runCli(['send', '--server', serve.target, '--to', 'alice@example.com', '--to', 'bob@example.com', '--json'])
    expect(run.code).toBe(0)
    const r = json(run)
    expect(Object.keys(r)).toEqual([
      'server',
      'greeting',
      'capabilities',
      'tls',
      'authenticated',
      'message',
      'envelope',
      'method',
      'pipelined',
      'mail',
      'recipients',
      'summary',
      'violation',
      'timings',
      'exitCode',
    ])
    expect(r.server).toBe(serve.target)
    expect(r.greeting.code).toBe(220)
    expect(r.capabilities).toMatchObject({pipelining: true, chunking: true, eightBitMime: true, smtputf8: true, size: 50 * 1024 * 1024})
    expect(r.tls).toBeNull()
    expect(r.envelope.params).toEqual({size: r.message.size})
    expect(r.recipients).toEqual([
      expect.objectContaining({index: 0, recipient: 'alice@example.com', stage: 'DATA', outcome: 'delivered', code: 250, enhanced: '2.0.0'}),
      expect.objectContaining({index: 1, recipient: 'bob@example.com', stage: 'DATA', outcome: 'delivered', code: 250, enhanced: '2.0.0'}),
    ])
    expect(r.summary).toEqual({total: 2, delivered: 2, deferred: 0, rejected: 0})
    expect(r.violation).toBeNull()
    for (const k of ['connectMs', 'greetingMs', 'lhloMs', 'mailMs', 'rcptMs', 'dataMs', 'deliveryMs', 'totalMs'] as const) {
      expect(typeof r.timings[k]).toBe('number')
    }
    expect(r.exitCode).toBe(0)
  })

  test('--bdat --transcript: BDAT LAST on the wire, the message intact', async () => {
    const file = join(scratch, 'dots.eml')
    await writeFile(file, 'Subject: dots\n\n.leading dot\n..two dots\n.\nend\n')
    const run = await runCli(['send', file, '--server', serve.target, '--to', 'alice@example.com', '--bdat', '--transcript'])
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/^\s+\d+ ms {2}C: BDAT \d+ LAST$/m)
    expect(run.stdout).not.toMatch(/C: DATA$/m)
    const files = await delivered(serve.maildir, 'alice@example.com')
    expect(files.some((f) => f.endsWith('Subject: dots\n\n.leading dot\n..two dots\n.\nend\n'))).toBe(true)
  })

  test('--no-pipelining: each command waits for its reply', async () => {
    const run = await runCli(['send', '--server', serve.target, '--to', 'alice@example.com,bob@example.com', '--no-pipelining', '--transcript'])
    expect(run.code).toBe(0)
    const dialogue = run.stdout
      .split('\n')
      .map((l) => /(C|S): (\S+(?: \S+)?)/.exec(l)?.slice(1, 3).join(' '))
      .filter((l): l is string => l !== undefined && /^(C (MAIL|RCPT|DATA)|S 250 2\.1)/.test(l))
    expect(dialogue).toEqual(['C MAIL FROM:<lmtp@' + dialogue[0]!.split('@')[1], 'S 250 2.1.0', 'C RCPT TO:<alice@example.com>', 'S 250 2.1.5', 'C RCPT TO:<bob@example.com>', 'S 250 2.1.5', 'C DATA'])
    expect(run.stdout).toMatch(/\(DATA, not pipelined\)/)
  })

  test('a message file with 8-bit content goes with BODY=8BITMIME, dots unstuffed on arrival', async () => {
    const file = join(scratch, 'utf8.eml')
    await writeFile(file, 'Subject: grüße\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n.Grüße aus Köln\r\n')
    const run = await runCli(['send', file, '--server', serve.target, '--to', 'bob@example.com', '--transcript'])
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/C: MAIL FROM:<[^>]*> SIZE=\d+ BODY=8BITMIME$/m)
    const files = await delivered(serve.maildir, 'bob@example.com')
    expect(files.some((f) => f.endsWith('\n\n.Grüße aus Köln\n'))).toBe(true)
  })

  test('stdin (-) is spooled and sent; --from "" sends <>', async () => {
    const run = await runCli(['send', '-', '--server', serve.target, '--to', 'bob@example.com', '--from', '', '--transcript'], {
      input: 'Subject: from stdin\n\nhello from stdin\n',
    })
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/C: MAIL FROM:<> SIZE=\d+$/m)
    const files = await delivered(serve.maildir, 'bob@example.com')
    expect(files.some((f) => f.endsWith('Subject: from stdin\n\nhello from stdin\n'))).toBe(true)
  })

  test('LMTP_SERVER is used when --server is not given', async () => {
    const run = await runCli(['send', '--to', 'alice@example.com', '--json'], {env: {LMTP_SERVER: serve.target}})
    expect(run.code).toBe(0)
    expect(json(run).server).toBe(serve.target)
  })
})

describe('lmtp send: checks before sending and usage', () => {
  test('over the advertised SIZE: exit 65 with what to change, nothing delivered', async () => {
    const serve = await startServe({maxSize: 1024})
    try {
      const run = await runCli(['send', '--server', serve.target, '--to', 'alice@example.com', '--size', '4K'])
      expect(run.code).toBe(65)
      expect(run.stderr).toMatch(/nothing was sent: the message is 4096 octets \(4 KB\) but .* accepts at most 1024 .*lmtp serve --max-size/)
      expect(await delivered(serve.maildir, 'alice@example.com')).toEqual([])
    } finally {
      await serve.stop()
    }
  })

  test.each([
    {name: 'a missing file', args: ['send', '/nonexistent/message.eml', '--to', 'a@example.com'], code: 66, err: /no such file/},
    {name: 'a directory as FILE', args: ['send', '/tmp', '--to', 'a@example.com'], code: 66, err: /is a directory/},
    {name: 'port 25', args: ['send', '--server', '127.0.0.1:25', '--to', 'a@example.com'], code: 64, err: /port 25 is the SMTP port/},
    {name: 'no --to', args: ['send', '--server', '127.0.0.1:2424'], code: 64, err: /Missing required flag to/},
    {name: 'a bad address', args: ['send', '--to', 'not an address'], code: 64, err: /not a valid recipient address/},
    {name: '--size with FILE', args: ['send', 'x.eml', '--size', '1K', '--to', 'a@example.com'], code: 64, err: /--size pads the generated/},
    {name: '--tls-insecure without --starttls', args: ['send', '--tls-insecure', '--to', 'a@example.com'], code: 64, err: /starttls/},
    {name: 'a bad --timeout', args: ['send', '--timeout', 'soon', '--to', 'a@example.com'], code: 64, err: /--timeout/},
    {name: 'a bad --lhlo', args: ['send', '--lhlo', 'two words', '--to', 'a@example.com'], code: 64, err: /--lhlo "two words": give one word/},
  ])('$name: exit $code', async ({args, code, err}) => {
    const run = await runCli(args)
    expect(run.code).toBe(code)
    expect(run.stderr).toMatch(err)
  })

  test('connection refused: exit 74 with the explanation', async () => {
    const port = await freePort()
    const run = await runCli(['send', '--server', `127.0.0.1:${port}`, '--to', 'a@example.com'])
    expect(run.code).toBe(74)
    expect(run.stderr).toBe(`lmtp: cannot connect to 127.0.0.1:${port}: connection refused (is the LMTP server running and listening there?)\n`)
  })

  test('an error with --json is a JSON object too', async () => {
    const port = await freePort()
    const run = await runCli(['send', '--server', `127.0.0.1:${port}`, '--to', 'a@example.com', '--json'])
    expect(run.code).toBe(74)
    expect(JSON.parse(run.stdout)).toEqual({error: {message: expect.stringMatching(/connection refused/), exitCode: 74}})
  })
})

describe('lmtp send over a Unix socket', () => {
  test('delivered over unix:', async () => {
    const serve = await startServe({unix: true})
    try {
      expect(serve.target).toMatch(/^unix:\//)
      const run = await runCli(['send', '--server', serve.target, '--to', 'carol@example.com', '--json'])
      expect(run.code).toBe(0)
      expect(json(run).recipients[0]!.outcome).toBe('delivered')
      expect(await delivered(serve.maildir, 'carol@example.com')).toHaveLength(1)
      // STARTTLS is never offered on a Unix socket.
      const tls = await runCli(['send', '--server', serve.target, '--to', 'carol@example.com', '--starttls'])
      expect(tls.code).toBe(69)
      expect(tls.stderr).toMatch(/does not offer STARTTLS \(servers do not offer it on Unix sockets\)/)
    } finally {
      await serve.stop()
    }
  })
})

const openssl = requirePeers('openssl')
describe.skipIf(openssl.skip)('lmtp send --starttls (test certificate made by openssl)', () => {
  let serve: TestServe
  let certFile: string
  beforeAll(async () => {
    openssl.check()
    certFile = join(scratch, 'cert.pem')
    const keyFile = join(scratch, 'key.pem')
    const made = spawnSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
      {stdio: 'pipe'},
    )
    expect(made.status, made.stderr.toString()).toBe(0)
    serve = await startServe({tls: {cert: await readFile(certFile), key: await readFile(keyFile)}})
  })
  afterAll(async () => {
    await serve?.stop()
  })

  test('--tls-insecure: TLS used, certificate not verified', async () => {
    const run = await runCli(['send', '--server', serve.target, '--to', 'alice@example.com', '--starttls', '--tls-insecure', '--json'])
    expect(run.code).toBe(0)
    const r = json(run)
    expect(r.tls).toMatchObject({verified: false, subject: 'localhost'})
    expect(r.tls!.protocol).toMatch(/^TLSv1\.[23]$/)
    expect(r.capabilities.startTls).toBe(false) // not advertised again inside TLS
  })

  test('--tls-ca: the certificate verifies', async () => {
    const run = await runCli(['send', '--server', serve.target, '--to', 'alice@example.com', '--starttls', '--tls-ca', certFile, '--transcript'])
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/-- TLS established: TLSv1\.[23] \S+, certificate verified/)
    expect(run.stdout).toMatch(/TLSv1\.[23]\), .* exit 0/)
  })

  test('an unverifiable certificate: exit 74, says how to fix it, nothing delivered', async () => {
    const before = (await delivered(serve.maildir, 'dave@example.com')).length
    const run = await runCli(['send', '--server', serve.target, '--to', 'dave@example.com', '--starttls'])
    expect(run.code).toBe(74)
    expect(run.stderr).toMatch(/certificate did not verify .*--tls-ca FILE.*--tls-insecure/)
    expect(await delivered(serve.maildir, 'dave@example.com')).toHaveLength(before)
  })
})

describe('lmtp send against the scripted fake server', () => {
  let fake: FakeServer | undefined
  afterEach(async () => {
    await fake?.close()
    fake = undefined
  })
  const envelope = `
    C: MAIL FROM:<ops@example.org> SIZE=*
    C: RCPT TO:<a@example.com>
    C: RCPT TO:<b@example.com>
    C: RCPT TO:<c@example.com>
    S: 250 2.1.0 ok
    S: 250 2.1.5 ok
    S: 250 2.1.5 ok
    S: 250 2.1.5 ok
    C: DATA
    S: 354 go ahead
    C: <body>
    C: QUIT`
  const args = (target: string, ...more: string[]): string[] => [
    'send',
    '--server',
    target,
    '--from',
    'ops@example.org',
    '--to',
    'a@example.com,b@example.com,c@example.com',
    ...more,
  ]

  test('closed after 1 of 3 replies: exit 75, the other two deferred with no reply', async () => {
    fake = await startFakeServer([...greetAndLhlo(['PIPELINING', 'ENHANCEDSTATUSCODES', 'SIZE 100000']), ...parseScript(`${envelope}\nS: 250 2.0.0 <a@example.com> saved\n!close`)])
    const run = await runCli(args(fake.target))
    expect(run.code).toBe(75)
    const rows = run.stdout.split('\n').filter((l) => /^\d+ {2}/.test(l))
    expect(rows[0]).toMatch(/^1\s+a@example\.com\s+delivered\s+DATA\s+250\s+2\.0\.0/)
    expect(rows[1]).toMatch(/^2\s+b@example\.com\s+deferred\s+DATA\s+-\s+-\s+no reply: connection lost after 1 of 3 replies/)
    expect(rows[2]).toMatch(/^3\s+c@example\.com\s+deferred\s+DATA\s+-\s+-\s+no reply: connection lost after 1 of 3 replies/)
    expect(run.stdout).toMatch(/count as deferred/)
    expect((await fake.session(0)).errors).toEqual([])
  })

  test('garbage after the body: exit 76 naming the problem', async () => {
    fake = await startFakeServer([...greetAndLhlo(), ...parseScript(`${envelope.replace(' SIZE=*', '')}\nS: 250 2.0.0 ok\nS: +OK POP3 server ready\n!stall`)])
    const run = await runCli(args(fake.target, '--json'))
    expect(run.code).toBe(76)
    const r = json(run)
    expect(r.violation).toMatch(/not a reply line: "\+OK POP3 server ready"/)
    expect(r.recipients.map((x) => x.outcome)).toEqual(['delivered', 'deferred', 'deferred'])
    expect(r.exitCode).toBe(76)
  })

  test('a server that stalls after the body: timeout, deferred, exit 75, with a clear message', async () => {
    fake = await startFakeServer([...greetAndLhlo(), ...parseScript(`${envelope.replace(' SIZE=*', '')}\n!stall`)])
    const run = await runCli(args(fake.target, '--timeout', '0.5'))
    expect(run.code).toBe(75)
    expect(run.stdout).toMatch(/no reply: no reply from the server for recipient 1 of 3 after the body within 0\.5s/)
  })

  test('a server that requires AUTH (Cyrus lmtpd without -a: 430 to MAIL): exit 78, says to use --auth', async () => {
    fake = await startFakeServer([
      ...greetAndLhlo(['PIPELINING', 'ENHANCEDSTATUSCODES', 'AUTH PLAIN LOGIN']),
      ...parseScript(`
        C: MAIL FROM:<ops@example.org>
        C: RCPT TO:<a@example.com>
        C: RCPT TO:<b@example.com>
        C: RCPT TO:<c@example.com>
        S: 430 Authentication required
        S: 503 5.5.1 No recipients
        S: 503 5.5.1 No recipients
        S: 503 5.5.1 No recipients
        C: RSET
        S: 250 2.0.0 ok
        C: QUIT
        S: 221 2.0.0 bye`),
    ])
    const run = await runCli(args(fake.target))
    expect(run.code).toBe(78)
    expect(run.stdout).toMatch(/this server requires authentication: use --auth USER/)
    expect((await fake.session(0)).errors).toEqual([])
  })

  test('--auth USER with the password from LMTP_AUTH_PASSWORD: AUTH PLAIN before MAIL, never shown in the transcript', async () => {
    const token = Buffer.from('\0ops\0hunter2').toString('base64')
    fake = await startFakeServer([
      ...greetAndLhlo(['PIPELINING', 'ENHANCEDSTATUSCODES', 'AUTH PLAIN LOGIN']),
      ...parseScript(`
        C: AUTH PLAIN ${token}
        S: 235 2.7.0 ok
        C: MAIL FROM:<ops@example.org>
        C: RCPT TO:<a@example.com>
        S: 250 2.1.0 ok
        S: 250 2.1.5 ok
        C: DATA
        S: 354 go
        C: <body>
        C: QUIT
        S: 250 2.0.0 saved
        S: 221 2.0.0 bye`),
    ])
    const run = await runCli(
      ['send', '--server', fake.target, '--from', 'ops@example.org', '--to', 'a@example.com', '--auth', 'ops', '--transcript'],
      {env: {LMTP_AUTH_PASSWORD: 'hunter2'}},
    )
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/C: AUTH PLAIN <credentials>/)
    expect(run.stdout).not.toContain(token)
    expect(run.stdout).not.toContain('hunter2')
    expect((await fake.session(0)).errors).toEqual([])
  })

  test('--auth refused by the server: exit 78 with the reply', async () => {
    fake = await startFakeServer([...greetAndLhlo(['AUTH PLAIN']), ...parseScript('C: AUTH PLAIN *\nS: 535 5.7.8 bad credentials\n!stall')])
    const run = await runCli(['send', '--server', fake.target, '--to', 'a@example.com', '--auth', 'ops'], {env: {LMTP_AUTH_PASSWORD: 'nope'}})
    expect(run.code).toBe(78)
    expect(run.stderr).toMatch(/AUTH PLAIN as "ops" was refused: 535 5\.7\.8 bad credentials/)
  })

  test('--auth to a server that does not offer AUTH: exit 69, says so', async () => {
    fake = await startFakeServer([...greetAndLhlo(['PIPELINING']), ...parseScript('C: QUIT\nS: 221 bye')])
    const run = await runCli(['send', '--server', fake.target, '--to', 'a@example.com', '--auth', 'ops'], {env: {LMTP_AUTH_PASSWORD: 'x'}})
    expect(run.code).toBe(69)
    expect(run.stderr).toMatch(/does not offer AUTH: drop --auth/)
  })

  test('--auth without a password: usage error, nothing is sent', async () => {
    const run = await runCli(['send', '--server', '127.0.0.1:9', '--to', 'a@example.com', '--auth', 'ops'], {env: {LMTP_AUTH_PASSWORD: undefined}})
    expect(run.code).toBe(64)
    expect(run.stderr).toMatch(/--auth-password-file FILE or set LMTP_AUTH_PASSWORD/)
  })

  test('a server that never greets: exit 74, says it stalled and what to do', async () => {
    fake = await startFakeServer([{stall: true}])
    const run = await runCli(args(fake.target, '--timeout', '0.5'))
    expect(run.code).toBe(74)
    expect(run.stderr).toMatch(/stalled: no reply from the server for the greeting within 0\.5s .*--timeout/)
  })

  test('a server that lacks 8BITMIME: 8-bit content is refused before MAIL (exit 65)', async () => {
    const file = join(scratch, '8bit.eml')
    await writeFile(file, 'Subject: x\n\nnaïve\n')
    fake = await startFakeServer([...greetAndLhlo(['PIPELINING', 'ENHANCEDSTATUSCODES']), ...parseScript('C: QUIT\nS: 221 2.0.0 bye')])
    const run = await runCli(['send', file, '--server', fake.target, '--to', 'a@example.com,josé@example.com'])
    expect(run.code).toBe(65)
    expect(run.stderr).toMatch(/8-bit content .* does not offer 8BITMIME/)
    expect(run.stderr).toMatch(/<josé@example\.com> is not ASCII .* does not offer SMTPUTF8/)
    const session = await fake.session(0)
    await session.closed
    expect(session.errors).toEqual([])
    expect(session.lines.filter((l) => l.startsWith('MAIL'))).toEqual([])
  })
})
