/**
 * Proves the interop harness (test/support/peers.ts) against the real peers: each helper starts its peer,
 * the peers talk to each other, and everything is gone afterwards.
 */
import {existsSync, statSync} from 'node:fs'
import {createServer} from 'node:net'
import {afterAll, afterEach, beforeAll, describe, expect, test} from 'vitest'
import {
  type AiosmtpdLmtp,
  type Dovecot,
  describePeers,
  freePort,
  groupMembers,
  isAlive,
  type PeerName,
  parseDeliveries,
  parseSwaksReplies,
  type Postfix,
  type PostfixTransport,
  pythonLmtpSend,
  requirePeers,
  runSmtpSource,
  runSwaks,
  type SmtpSink,
  sinkSocketDir,
  smtpSourceTarget,
  startAiosmtpdLmtp,
  startDovecot,
  startPostfix,
  startSmtpSink,
  swaksTarget,
  tempDir,
} from '../support/peers.js'

/** Asserts a stopped peer left no process behind: neither its pid nor anything in its process group. */
function expectGone(pid: number): void {
  expect(isAlive(pid)).toBe(false)
  expect(groupMembers(pid)).toEqual([])
}

const BIG_BODY = `${'x'.repeat(70)}\n`.repeat(90) // ~6.4 KB: over the 4K quota of user `small`

describe('gating', () => {
  const saved = {CI: process.env.CI, HIDE: process.env.LMTP_PEERS_HIDE}
  afterEach(() => {
    for (const [key, value] of [
      ['CI', saved.CI],
      ['LMTP_PEERS_HIDE', saved.HIDE],
    ] as const) {
      if (value === undefined) delete process.env[key]
      else process.env[key] = value
    }
  })

  test.each([
    {ci: 'true', hide: 'swaks', skip: false, throws: true},
    {ci: '', hide: 'swaks', skip: true, throws: true},
    {ci: 'false', hide: 'swaks', skip: true, throws: true},
    {ci: 'true', hide: 'nothing', skip: false, throws: false},
  ])('CI=$ci, hidden $hide -> skip $skip, check throws $throws', ({ci, hide, skip, throws}) => {
    process.env.CI = ci
    process.env.LMTP_PEERS_HIDE = hide
    // The gate's verdict on a visible peer depends on this machine; hide the one under test instead.
    const names: PeerName[] = hide === 'nothing' ? [] : ['swaks']
    const gate = requirePeers(...names)
    expect(gate.skip).toBe(skip)
    if (throws) {
      expect(() => gate.check()).toThrow(/swaks \(hidden by LMTP_PEERS_HIDE\).*sudo bash \.ci\/install-peers/)
    } else {
      expect(() => gate.check()).not.toThrow()
      expect(gate.ok).toBe(true)
    }
  })

  test('freePort returns an unprivileged port that can then be bound on 127.0.0.1', async () => {
    const port = await freePort()
    expect(port).toBeGreaterThan(1023)
    const server = createServer()
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({port, host: '127.0.0.1', exclusive: true}, resolve)
    })
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })

  test('tempDir is reachable by other users and cleaned up', async () => {
    const dir = await tempDir('lmtp-harness')
    expect(dir.path.startsWith('/root')).toBe(false)
    const {mode} = statSync(dir.path)
    expect(mode & 0o777).toBe(0o755)
    await dir.cleanup()
    expect(existsSync(dir.path)).toBe(false)
  })
})

describePeers('smtp-sink <- smtp-source, swaks', ['smtp-sink', 'smtp-source', 'swaks'], () => {
  const started: SmtpSink[] = []
  afterAll(async () => {
    for (const s of started) {
      await s.stop()
      expectGone(s.pid)
    }
  })

  test('smtp-source -L delivers 20 messages over 2 sessions', async () => {
    const sink = await startSmtpSink()
    started.push(sink)
    const r = await runSmtpSource(['-L', '-m', '20', '-s', '2', '-l', '1024', '-d', smtpSourceTarget(sink)])
    expect(r).toMatchObject({code: 0, stderr: ''})
  })

  test('smtp-source -L over a Unix socket', async () => {
    const sock = await sinkSocketDir()
    try {
      const sink = await startSmtpSink({socketPath: sock.socketPath})
      try {
        const r = await runSmtpSource(['-L', '-m', '5', smtpSourceTarget({socketPath: sock.socketPath})])
        expect(r).toMatchObject({code: 0, stderr: ''})
      } finally {
        await sink.stop()
        expectGone(sink.pid)
      }
    } finally {
      await sock.cleanup()
    }
    expect(existsSync(sock.socketPath)).toBe(false)
  })

  test('fault flag -r RCPT makes the sink reject recipients', async () => {
    const sink = await startSmtpSink({flags: ['-r', 'RCPT']})
    started.push(sink)
    const r = await runSwaks([...swaksTarget(sink), '--from', 's@example.org', '--to', 'a@example.com'])
    expect(parseSwaksReplies(r.stdout).filter((x) => x.failed)).toEqual([
      {code: 450, text: '4.3.0 Error: command failed', failed: true},
    ])
    expect(r.code).not.toBe(0)
  })
})

describePeers('Dovecot LMTP <- swaks, Python', ['dovecot', 'swaks', 'python3'], () => {
  let dovecot: Dovecot
  let tempfail: Dovecot
  beforeAll(async () => {
    ;[dovecot, tempfail] = await Promise.all([startDovecot(), startDovecot({quotaTempfail: true})])
  })
  afterAll(async () => {
    const all = [dovecot, tempfail].filter(Boolean)
    await Promise.all(all.map((d) => d.stop()))
    for (const d of all) {
      expectGone(d.pid)
      expect(existsSync(d.root)).toBe(false)
    }
  })

  test.each(['tcp', 'unix'] as const)('swaks --protocol LMTP over %s delivers into the Maildir root', async (via) => {
    const target = via === 'tcp' ? {port: dovecot.port} : {socketPath: dovecot.socketPath}
    const [a, b] = [`a-${via}`, `b-${via}`]
    const r = await runSwaks([...swaksTarget(target), '--from', 's@example.org', '--to', `${a}@example.com,${b.toUpperCase()}@Example.com`])
    expect(r.code).toBe(0)
    const saved = parseSwaksReplies(r.stdout).filter((x) => /Saved$/.test(x.text))
    expect(saved.map((x) => x.code)).toEqual([250, 250])
    expect(await dovecot.newMessages(a)).toHaveLength(1)
    expect(await dovecot.newMessages(b)).toHaveLength(1)
    expect(existsSync(`${dovecot.root}/${b}/new`)).toBe(true)
  })

  test.each([
    {name: 'permanent', tempfailMode: false, code: 552, text: /^5\.2\.2 <small@example\.com> Quota exceeded/},
    {name: 'tempfail', tempfailMode: true, code: 452, text: /^4\.2\.2 <small@example\.com> Quota exceeded/},
  ])('over quota ($name): $code', async ({tempfailMode, code, text}) => {
    const server = tempfailMode ? tempfail : dovecot
    const r = await runSwaks([...swaksTarget(server), '--from', 's@example.org', '--to', 'small@example.com', '--body', BIG_BODY])
    const failed = parseSwaksReplies(r.stdout).filter((x) => x.failed)
    expect(failed).toHaveLength(1)
    expect(failed[0]).toMatchObject({code})
    expect(failed[0]!.text).toMatch(text)
    expect(await server.newMessages('small')).toEqual([])
  })

  test.each(['tcp', 'unix'] as const)('python smtplib.LMTP over %s reads one reply per recipient', async (via) => {
    const r = await pythonLmtpSend({
      target: via === 'tcp' ? dovecot.port : dovecot.socketPath,
      from: 's@example.org',
      to: ['p1@example.com', 'small@example.com', 'p2@example.com'],
      message: `Subject: harness\n\n${BIG_BODY}`,
    })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.replies.map((x) => [x.rcpt, x.stage, x.code])).toEqual([
      ['p1@example.com', 'data', 250],
      ['small@example.com', 'data', 552],
      ['p2@example.com', 'data', 250],
    ])
    expect(r.replies[0]!.text).toMatch(/^2\.0\.0 <p1@example\.com> .* Saved$/)
  })

  test('python reports a connection failure as exit 2', async () => {
    const r = await pythonLmtpSend({target: await freePort(), from: 's@x', to: ['a@x'], message: 'x\n'})
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/ConnectionRefused/)
  })
})

describePeers('Postfix -> Dovecot LMTP', ['postfix', 'dovecot', 'swaks'], () => {
  let dovecot: Dovecot
  let tempfail: Dovecot
  const postfixes: Postfix[] = []
  beforeAll(async () => {
    ;[dovecot, tempfail] = await Promise.all([startDovecot(), startDovecot({quotaTempfail: true})])
  })
  afterAll(async () => {
    await Promise.all(postfixes.map((p) => p.stop()))
    for (const p of postfixes) expectGone(p.pid)
    const all = [dovecot, tempfail].filter(Boolean)
    await Promise.all(all.map((d) => d.stop()))
    for (const d of all) expectGone(d.pid)
  })

  test.each([
    {transport: 'local', via: 'inet'},
    {transport: 'local', via: 'unix'},
    {transport: 'virtual', via: 'inet'},
    {transport: 'mailbox', via: 'unix'},
  ] as {transport: PostfixTransport; via: 'inet' | 'unix'}[])(
    '$transport transport over $via: status=sent for every recipient',
    async ({transport, via}) => {
      const postfix = await startPostfix({
        lmtpTarget: via === 'inet' ? {port: dovecot.port} : {socketPath: dovecot.socketPath},
        transport,
        domains: ['example.com', 'example.net'],
      })
      postfixes.push(postfix)
      const user = `${transport}${via}`
      const r = await runSwaks([
        '--server', '127.0.0.1', '--port', String(postfix.smtpPort),
        '--from', 's@example.org', '--to', `${user}@example.com,${user}2@example.net`,
      ])
      expect(r.code).toBe(0)
      const done = await postfix.waitForDeliveries((d) => d.length >= 2)
      expect(done.map((d) => [d.to, d.status, d.dsn])).toEqual(
        expect.arrayContaining([
          [`${user}@example.com`, 'sent', '2.0.0'],
          [`${user}2@example.net`, 'sent', '2.0.0'],
        ]),
      )
      expect(done[0]!.relay).toContain(via === 'inet' ? `127.0.0.1]:${dovecot.port}` : `[${dovecot.socketPath}]`)
      expect(done[0]!.text).toMatch(/^250 2\.0\.0 <.*> .* Saved\)?/)
      expect(await dovecot.newMessages(user)).toHaveLength(1)
      expect(await dovecot.newMessages(`${user}2`)).toHaveLength(1)
    },
  )

  test('an over-quota recipient is deferred with 4.2.2, the other is sent, flush retries it', async () => {
    const postfix = await startPostfix({lmtpTarget: {port: tempfail.port}})
    postfixes.push(postfix)
    const r = await runSwaks([
      '--server', '127.0.0.1', '--port', String(postfix.smtpPort),
      '--from', 's@example.org', '--to', 'ok@example.com,small@example.com', '--body', BIG_BODY,
    ])
    expect(r.code).toBe(0)
    const first = await postfix.waitForDeliveries((d) => d.length >= 2)
    expect(first.slice(0, 2).map((d) => [d.to, d.status, d.dsn])).toEqual(
      expect.arrayContaining([
        ['ok@example.com', 'sent', '2.0.0'],
        ['small@example.com', 'deferred', '4.2.2'],
      ]),
    )
    expect(await postfix.queue()).toHaveLength(1)
    await postfix.flush()
    await postfix.waitForDeliveries((d) => d.filter((x) => x.to === 'small@example.com').length >= 2)
  })
})

describePeers('aiosmtpd LMTP (non-compliant)', ['aiosmtpd', 'swaks'], () => {
  let server: AiosmtpdLmtp
  beforeAll(async () => {
    server = await startAiosmtpdLmtp()
  })
  afterAll(async () => {
    if (!server) return
    await server.stop()
    expectGone(server.pid)
  })

  test('answers swaks over LMTP without advertising PIPELINING', async () => {
    const r = await runSwaks([...swaksTarget(server), '--from', 's@example.org', '--to', 'a@example.com'])
    expect(r.code).toBe(0)
    const replies = parseSwaksReplies(r.stdout)
    expect(replies.some((x) => /PIPELINING/.test(x.text))).toBe(false)
    expect(replies.slice(replies.findIndex((x) => x.code === 354) + 1).map((x) => x.code)).toEqual([250, 221])
    expect(await server.messages()).toEqual([{mail_from: 's@example.org', rcpt_tos: ['a@example.com'], size: expect.any(Number)}])
  })

  test('gives ONE reply after DATA for two recipients: the second never comes', async () => {
    const r = await pythonLmtpSend({target: server.port, from: 's@example.org', to: ['a@example.com', 'b@example.com'], message: 'Subject: x\n\nhi\n', timeoutMs: 1_500})
    expect(r.code).toBe(0)
    expect(r.replies.map((x) => [x.stage, x.code])).toEqual([
      ['data', 250],
      ['data', null],
    ])
  })
})

test('parseDeliveries reads to/orig_to/relay/dsn/status/text', () => {
  const log = [
    'Nov 29 01:37:34 postfix.test postfix/lmtp[7640]: 41E4C20C1D5: to=<a@example.com>, relay=127.0.0.1[127.0.0.1]:24024, delay=0.08, delays=0.01/0.01/0.02/0.03, dsn=2.0.0, status=sent (250 2.0.0 <a@example.com> id Saved)',
    'Nov  9 01:37:45 postfix.test postfix/lmtp[7857]: 946E720C1D1: to=<s@example.com>, orig_to=<s@x>, relay=postfix.test[/tmp/d/run/lmtp], conn_use=2, delay=1, delays=1/0/0/0, dsn=4.2.2, status=deferred (host postfix.test[/tmp/d/run/lmtp] said: 452 4.2.2 <s@example.com> Quota exceeded (mailbox for user is full) (in reply to end of DATA command))',
    'Nov 29 01:37:34 postfix.test postfix/qmgr[7611]: 41E4C20C1D5: removed',
  ].join('\n')
  expect(parseDeliveries(log).map(({line: _line, ...d}) => d)).toEqual([
    {queueId: '41E4C20C1D5', service: 'postfix/lmtp', to: 'a@example.com', relay: '127.0.0.1[127.0.0.1]:24024', dsn: '2.0.0', status: 'sent', text: '250 2.0.0 <a@example.com> id Saved'},
    {
      queueId: '946E720C1D1', service: 'postfix/lmtp', to: 's@example.com', origTo: 's@x', relay: 'postfix.test[/tmp/d/run/lmtp]', dsn: '4.2.2', status: 'deferred',
      text: 'host postfix.test[/tmp/d/run/lmtp] said: 452 4.2.2 <s@example.com> Quota exceeded (mailbox for user is full) (in reply to end of DATA command)',
    },
  ])
})
