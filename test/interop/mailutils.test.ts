/**
 * OUR clients (`lmtp send`, `probe`, `replay`, the built CLI) against GNU Mailutils 3.15's lmtpd, a real LMTP
 * server nobody on this team wrote (issue 13). It answers exactly one reply per accepted recipient, but allows
 * one transaction per session, answers LHLO after DATA and NOOP with `503 5.0.0`, and refuses any MAIL
 * parameter (`553 5.1.8`). See client-runs.ts for why no test here can pass by waiting a timeout.
 */
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, expect, test} from 'vitest'
import {runCli} from '../client/run-cli.js'
import {describePeers, type Mailutils, startMailutils} from '../support/peers.js'
import {check, checkIds, DELIVERY_CHECKS, isForgedBySmuggling, probeJson, RUN_LIMIT_MS, replayJson, rows, SMUGGLING_CHECKS, sendArgs, sendJson, writeEmlCorpus} from './client-runs.js'

describePeers('lmtp send, probe, replay -> GNU Mailutils lmtpd', ['mailutils'], () => {
  let mu: Mailutils
  let scratch: string
  let server: string
  let unknown: string
  beforeAll(async () => {
    mu = await startMailutils()
    scratch = await mkdtemp(join(tmpdir(), 'lmtp-mailutils-clients-'))
    server = `127.0.0.1:${mu.port}`
    unknown = `${mu.unknownUser}@example.com`
  })
  afterAll(async () => {
    await mu?.stop()
    if (scratch) await rm(scratch, {recursive: true, force: true})
  })

  test.each([{flags: [] as string[]}, {flags: ['--no-pipelining']}])(
    'send $flags to [mail, unknown, news]: per-recipient results, exit 69, no violation',
    async ({flags}) => {
      const before = {mail: await mu.countMessages('mail'), news: await mu.countMessages('news')}
      const {run, json} = await sendJson(server, ['mail@example.com', unknown, 'news@example.com'], flags)
      expect(rows(json)).toEqual([
        ['mail@example.com', 'delivered', 'DATA', 250, '2.0.0'],
        [unknown, 'rejected', 'RCPT', 550, '5.1.1'],
        ['news@example.com', 'delivered', 'DATA', 250, '2.0.0'],
      ])
      expect(json.violation).toBeNull()
      expect(json.exitCode).toBe(69)
      expect(run.code).toBe(69)
      expect(await mu.countMessages('mail')).toBe(before.mail + 1)
      expect(await mu.countMessages('news')).toBe(before.news + 1)
    },
  )

  test('send over the Unix socket (table, piped): right rows, exit 69, no violation', async () => {
    const run = await runCli(sendArgs(`unix:${mu.socketPath}`, ['news@example.com', unknown]), {timeoutMs: RUN_LIMIT_MS})
    const lines = run.stdout.split('\n')
    expect(lines).toContainEqual(expect.stringMatching(/^1\s+news@example\.com\s+delivered\s+DATA\s+250\s+2\.0\.0\s/))
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^2\\s+${unknown.replace(/\./g, '\\.')}\\s+rejected\\s+RCPT\\s+550\\s+5\\.1\\.1\\s`)))
    expect(`${run.stdout}${run.stderr}`).not.toMatch(/violation|more replies/i)
    expect(run.code).toBe(69)
  })

  test('probe --deliver-to: no false FAIL (one reply per recipient, dot-stuffing, smuggling, pipelined order)', async () => {
    const smuggledInside = async () => (await mu.messages('mail')).filter((m) => m.includes('SMUGGLED')).length
    const before = await smuggledInside()
    const {json} = await probeJson(server, '--deliver-to', 'mail@example.com')
    for (const id of [...DELIVERY_CHECKS, ...SMUGGLING_CHECKS, 'pipelining-order', 'enhanced-codes']) {
      expect(check(json, id)).toMatchObject({status: 'pass'})
    }
    // The one true FAIL: NOOP is a command every server MUST implement (RFC 5321 §4.5.1); Mailutils answers 503.
    expect(checkIds(json, 'fail')).toEqual(['rset-noop'])
    // Nothing was forged: the injected lines are stored inside the probe's own messages.
    expect((await mu.messages('mail')).filter(isForgedBySmuggling)).toEqual([])
    expect((await smuggledInside()) - before).toBe(SMUGGLING_CHECKS.length)
  })

  test('probe without --deliver-to: pipelined replies in order pass although NOOP is answered 503', async () => {
    const {json} = await probeJson(server)
    expect(check(json, 'pipelining-order')).toMatchObject({status: 'pass'})
    expect(checkIds(json, 'fail')).toEqual(['rset-noop'])
  })

  test('replay of 20 messages (.eml dir) into Mailutils: all delivered, exit 0, no session counted lost', async () => {
    const corpus = await writeEmlCorpus(join(scratch, 'corpus'), 20, 'mailutils')
    const before = await mu.countMessages('news')
    const {run, json} = await replayJson(corpus, server, '--to', 'news@example.com')
    expect(json.messages).toEqual({total: 20, delivered: 20, deferred: 0, rejected: 0})
    expect(json.recipients).toMatchObject({total: 20, delivered: 20})
    expect(json.connections.lost).toBe(0)
    expect(run.code).toBe(0)
    expect(await mu.countMessages('news')).toBe(before + 20)
  })
})
