/**
 * OUR clients (`lmtp send`, `probe`, `replay`, the built CLI) against Cyrus IMAP 3.6's lmtpd, a real LMTP
 * server nobody on this team wrote (issue 13). Cyrus answers exactly one reply per accepted recipient, ends
 * its LHLO reply with `250 Ok SESSIONID=<...>` (a new id after every transaction), puts the enhanced code of
 * its unknown-user reply on the last of three lines, requires LMTP AUTH on a listener without `-a`, and is
 * open to SMTP smuggling. See client-runs.ts for why no test here can pass by waiting a timeout.
 */
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, expect, test} from 'vitest'
import {runCli} from '../client/run-cli.js'
import {type Cyrus, describePeers, startCyrus} from '../support/peers.js'
import {check, checkIds, DELIVERY_CHECKS, isForgedBySmuggling, probeJson, RUN_LIMIT_MS, replayJson, rows, SMUGGLING_CHECKS, sendArgs, sendJson, writeEmlCorpus} from './client-runs.js'

describePeers('lmtp send, probe, replay -> Cyrus IMAP lmtpd', ['cyrus'], () => {
  let cyrus: Cyrus
  let scratch: string
  let lmtp: string
  let auth: string
  beforeAll(async () => {
    cyrus = await startCyrus({users: ['alice', 'bob', 'carol', 'dave']})
    scratch = await mkdtemp(join(tmpdir(), 'lmtp-cyrus-clients-'))
    lmtp = `127.0.0.1:${cyrus.lmtpPort}`
    auth = `127.0.0.1:${cyrus.authPort}`
  })
  afterAll(async () => {
    await cyrus?.stop()
    if (scratch) await rm(scratch, {recursive: true, force: true})
  })

  test.each([{flags: [] as string[]}, {flags: ['--no-pipelining']}])(
    'send $flags to [alice, unknown, bob]: per-recipient results, 5.1.1 from the 3-line 550, exit 69, no violation',
    async ({flags}) => {
      const before = {alice: await cyrus.countMessages('alice'), bob: await cyrus.countMessages('bob')}
      const {run, json} = await sendJson(lmtp, ['alice@example.com', 'nobody@example.com', 'bob@example.com'], flags)
      expect(rows(json)).toEqual([
        ['alice@example.com', 'delivered', 'DATA', 250, '2.1.5'],
        ['nobody@example.com', 'rejected', 'RCPT', 550, '5.1.1'],
        ['bob@example.com', 'delivered', 'DATA', 250, '2.1.5'],
      ])
      expect(json.violation).toBeNull()
      expect(json.exitCode).toBe(69)
      expect(run.code).toBe(69)
      expect(await cyrus.countMessages('alice')).toBe(before.alice + 1)
      expect(await cyrus.countMessages('bob')).toBe(before.bob + 1)
    },
  )

  test('send (table, piped): the ENHANCED column shows 5.1.1 for the unknown user; exit 69, no violation', async () => {
    const run = await runCli(sendArgs(lmtp, ['alice@example.com', 'nobody@example.com']), {timeoutMs: RUN_LIMIT_MS})
    const lines = run.stdout.split('\n')
    expect(lines).toContainEqual(expect.stringMatching(/^1\s+alice@example\.com\s+delivered\s+DATA\s+250\s+2\.1\.5\s/))
    expect(lines).toContainEqual(expect.stringMatching(/^2\s+nobody@example\.com\s+rejected\s+RCPT\s+550\s+5\.1\.1\s/))
    expect(`${run.stdout}${run.stderr}`).not.toMatch(/violation|more replies/i)
    expect(run.code).toBe(69)
  })

  test('send --auth to the AUTH-required port delivers (password from a file)', async () => {
    const passwordFile = join(scratch, 'auth-password')
    await writeFile(passwordFile, `${cyrus.authPassword}\n`, {mode: 0o600})
    const before = await cyrus.countMessages('carol')
    const {run, json} = await sendJson(auth, ['carol@example.com'], ['--auth', cyrus.authUser, '--auth-password-file', passwordFile])
    expect(rows(json)).toEqual([['carol@example.com', 'delivered', 'DATA', 250, '2.1.5']])
    expect(json.violation).toBeNull()
    expect(run.code).toBe(0)
    expect(await cyrus.countMessages('carol')).toBe(before + 1)
  })

  test('send --auth with the password in LMTP_AUTH_PASSWORD delivers too', async () => {
    const before = await cyrus.countMessages('carol')
    const {run, json} = await sendJson(auth, ['carol@example.com'], ['--auth', cyrus.authUser], {LMTP_AUTH_PASSWORD: cyrus.authPassword})
    expect(rows(json)).toEqual([['carol@example.com', 'delivered', 'DATA', 250, '2.1.5']])
    expect(run.code).toBe(0)
    expect(await cyrus.countMessages('carol')).toBe(before + 1)
  })

  test('send without --auth to the AUTH-required port: nothing delivered, and the message names --auth', async () => {
    const before = await cyrus.countMessages('dave')
    const run = await runCli(sendArgs(auth, ['dave@example.com']), {timeoutMs: RUN_LIMIT_MS})
    expect(`${run.stdout}${run.stderr}`).toMatch(/requires authentication[^\n]*--auth/i)
    expect(run.code).not.toBeNull()
    expect([0, 76]).not.toContain(run.code)
    expect(await cyrus.countMessages('dave')).toBe(before)
  })

  test('probe --deliver-to: the only FAILs are the three smuggling checks, and they are true', async () => {
    const forgedBefore = (await cyrus.messages('dave')).filter(isForgedBySmuggling).length
    const {run, json} = await probeJson(lmtp, '--deliver-to', 'dave@example.com')
    expect(checkIds(json, 'fail')).toEqual([...SMUGGLING_CHECKS])
    for (const id of [...DELIVERY_CHECKS, 'pipelining-order', 'enhanced-codes']) expect(check(json, id)).toMatchObject({status: 'pass'})
    expect(run.code).toBe(76)
    // True findings: each smuggling check really got a forged message of its own stored.
    const forged = (await cyrus.messages('dave')).filter(isForgedBySmuggling).length
    expect(forged - forgedBefore).toBe(SMUGGLING_CHECKS.length)
  })

  test("probe: LHLO's last line `Ok SESSIONID=<...>` is not listed as a capability", async () => {
    const {json} = await probeJson(lmtp)
    expect(json.lhlo?.capabilities.map((c) => c.keyword)).toEqual(['8BITMIME', 'ENHANCEDSTATUSCODES', 'PIPELINING', 'SIZE', 'AUTH', 'IGNOREQUOTA'])
    expect(checkIds(json, 'fail')).toEqual([])
  })

  test('probe of the AUTH-required port: pipelined replies in order pass, and the AUTH requirement is named', async () => {
    const {json} = await probeJson(auth)
    expect(check(json, 'pipelining-order')).toMatchObject({status: 'pass'})
    expect(json.lhlo?.capabilities.map((c) => c.keyword)).not.toContain('OK')
    const named = json.checks.filter((c) => /auth/i.test(`${c.id} ${c.title}`) && /requires? (LMTP )?auth/i.test(`${c.title} ${c.detail}`))
    expect(named, JSON.stringify(json.checks, null, 1)).not.toEqual([])
  })

  test('replay of 20 messages (.eml dir) into Cyrus: all delivered, exit 0, no session counted lost', async () => {
    const corpus = await writeEmlCorpus(join(scratch, 'corpus'), 20, 'cyrus')
    const before = await cyrus.countMessages('bob')
    const {run, json} = await replayJson(corpus, lmtp, '--to', 'bob@example.com')
    expect(json.messages).toEqual({total: 20, delivered: 20, deferred: 0, rejected: 0})
    expect(json.recipients).toMatchObject({total: 20, delivered: 20})
    expect(json.connections.lost).toBe(0)
    expect(run.code).toBe(0)
    expect(await cyrus.countMessages('bob')).toBe(before + 20)
  })
})
