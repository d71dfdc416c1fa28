/**
 * `lmtp serve` driven by real third-party LMTP clients: Postfix as the MTA in front (inet and unix), swaks,
 * Python's smtplib.LMTP and smtp-source. Mandatory in CI; skipped locally when the peers are missing.
 */
import {writeFile} from 'node:fs/promises'
import path from 'node:path'
import {afterAll, beforeAll, expect, test} from 'vitest'
import {connectTarget} from '../../src/net/target.js'
import {LmtpClient} from '../../src/protocol/client.js'
import {
  type Postfix,
  allowPeerAccess,
  describePeers,
  pythonLmtpSend,
  runSmtpSource,
  runSwaks,
  smtpSourceTarget,
  startPostfix,
  swaksTarget,
} from '../support/peers.js'
import {type TestServer, deliveredFiles, startServe} from '../support/serve.js'

const BODY_2K = `Subject: interop\r\n\r\n${`${'q'.repeat(98)}\r\n`.repeat(20)}`

let srv: TestServer

async function fill(address: string): Promise<void> {
  // Put one 2 KB message into a mailbox so that the next one puts it over its 3K quota.
  const c = new LmtpClient(await connectTarget({kind: 'tcp', host: '127.0.0.1', port: srv.port}))
  await c.start()
  await c.lhlo('fill.test')
  const r = await c.send({from: 'fill@example.org', to: [address], body: [Buffer.from(BODY_2K)]})
  await c.quit()
  expect(r.recipients[0]!.code).toBe(250)
}

async function filesOf(mailbox: string): Promise<number> {
  return (await deliveredFiles(srv.root)).filter((f) => f.mailbox === mailbox).length
}

describePeers('lmtp serve behind real peers', ['postfix', 'swaks', 'python3', 'smtp-source'], () => {
  beforeAll(async () => {
    srv = await startServe({hostname: 'mx.test'})
    const users = path.join(srv.dir, 'users')
    await writeFile(
      users,
      ['alice@example.com', 'bob@example.com', 'small@example.com quota=3K', 'small2@example.com quota=3K', 'small3@example.com quota=3K', 'small4@example.com quota=3K', 'py@example.com', 'swaks@example.com', 'swaks2@example.com', 'user@example.com', '2user@example.com'].join('\n'),
    )
    await srv.stop()
    srv = await startServe({maildir: srv.root, usersFile: users})
    allowPeerAccess(srv.socketPath)
  })
  afterAll(async () => {
    if (srv) {
      await srv.stop()
      await srv.cleanup()
    }
  })

  for (const [transport, via] of [
    ['local', 'inet'],
    ['local', 'unix'],
    ['virtual', 'inet'],
  ] as const) {
    test(`Postfix ${transport}_transport = lmtp:${via}: two recipients sent, the over-quota one deferred 4.2.2`, async () => {
      const small = transport === 'virtual' ? 'small4@example.com' : via === 'inet' ? 'small@example.com' : 'small2@example.com'
      await fill(small)
      const before = {alice: await filesOf('example.com/alice'), bob: await filesOf('example.com/bob')}
      let postfix: Postfix | undefined
      try {
        postfix = await startPostfix({
          lmtpTarget: via === 'inet' ? {port: srv.port} : {socketPath: srv.socketPath},
          transport,
        })
        const r = await runSwaks([
          '--server', '127.0.0.1', '--port', String(postfix.smtpPort),
          '--from', 'sender@example.org', '--to', `alice@example.com,${small},bob@example.com`,
          '--body', BODY_2K.split('\r\n\r\n')[1]!,
        ])
        expect(r.code, r.stdout + r.stderr).toBe(0)
        const d = await postfix.waitForDeliveries((x) => x.length >= 3)
        expect(d.slice(0, 3).map((x) => [x.to, x.status, x.dsn])).toEqual(
          expect.arrayContaining([
            ['alice@example.com', 'sent', '2.0.0'],
            ['bob@example.com', 'sent', '2.0.0'],
            [small, 'deferred', '4.2.2'],
          ]),
        )
        const sent = d.find((x) => x.to === 'alice@example.com')!
        expect(sent.relay).toContain(via === 'inet' ? `:${srv.port}` : srv.socketPath)
        // The delivery id in our 250 joins Postfix's maillog line to ours, by grep.
        const line = (await postfix.log()).split('\n').find((l) => l.includes('to=<alice@example.com>') && l.includes('status=sent'))!
        const id = /status=sent \(250 2\.0\.0 <alice@example\.com> (\S+) delivered\)/.exec(line)?.[1]
        expect(id, line).toBeDefined()
        const ours = srv.logs.filter((l) => l.includes(id!)).map((l) => JSON.parse(l) as Record<string, unknown>)
        expect(ours).toContainEqual(expect.objectContaining({event: 'recipient', id, recipient: 'alice@example.com', outcome: 'delivered', code: 250}))
        expect(await filesOf('example.com/alice')).toBe(before.alice + 1)
        expect(await filesOf('example.com/bob')).toBe(before.bob + 1)
        // The deferred one stays in Postfix's queue (LMTP's point: only the failure is retried).
        expect(await postfix.queue()).toHaveLength(1)
      } finally {
        await postfix?.stop()
      }
    })
  }

  for (const via of ['tcp', 'unix'] as const) {
    test(`swaks --protocol LMTP over ${via} delivers to both recipients`, async () => {
      const target = via === 'tcp' ? {port: srv.port} : {socketPath: srv.socketPath}
      const before = await filesOf('example.com/swaks')
      const r = await runSwaks([...swaksTarget(target), '--from', 's@example.org', '--to', 'swaks@example.com,swaks2@example.com'])
      expect(r.code, r.stdout).toBe(0)
      expect(r.stdout).toMatch(/250 2\.0\.0 <swaks@example\.com> \S+ delivered/)
      expect(r.stdout).toMatch(/250 2\.0\.0 <swaks2@example\.com> \S+ delivered/)
      expect(await filesOf('example.com/swaks')).toBe(before + 1)
    })
  }

  test('Python smtplib.LMTP reads one reply per recipient: delivered, unknown, over quota', async () => {
    await fill('small3@example.com')
    for (const target of [srv.port, srv.socketPath]) {
      const r = await pythonLmtpSend({
        target,
        from: 'py-sender@example.org',
        to: ['py@example.com', 'ghost@example.com', 'small3@example.com', 'py@example.com'],
        message: BODY_2K,
      })
      expect(r.replies.map((x) => [x.rcpt, x.stage, x.code])).toEqual([
        ['py@example.com', 'data', 250],
        ['ghost@example.com', 'rcpt', 550],
        ['small3@example.com', 'data', 452],
        ['py@example.com', 'data', 250],
      ])
    }
  })

  test('smtp-source -L: 1,000 messages, 8 sessions, 2 recipients each: every file present', async () => {
    const before = (await deliveredFiles(srv.root)).filter((f) => /user$/.test(f.mailbox)).length
    const r = await runSmtpSource(
      ['-L', '-d', '-m', '1000', '-s', '8', '-r', '2', '-l', '1024', '-f', 'load@example.org', '-t', 'user@example.com', smtpSourceTarget({port: srv.port})],
      {timeoutMs: 120_000},
    )
    expect(r.code, r.stderr).toBe(0)
    const files = (await deliveredFiles(srv.root)).filter((f) => /user$/.test(f.mailbox))
    expect(files.length - before).toBe(2000)
  }, 180_000)
})
