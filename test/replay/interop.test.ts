/**
 * Replay into the LMTP servers that broke it before: GNU Mailutils 3.15 (refuses any MAIL parameter, one
 * transaction per session, 503 to an LHLO after DATA) and Cyrus IMAP 3.6 (a SESSIONID in its LHLO reply that
 * changes after every transaction; AUTH required on its plain TCP port). Every message must arrive, the run must
 * exit 0, and no session may be counted lost. No time is asserted: a wait on a timeout would run into the
 * test's own timeout and fail it.
 */
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, expect, test} from 'vitest'
import {runReplay, type ReplayOptions} from '../../src/replay/driver.js'
import {readSources} from '../../src/replay/sources.js'
import {type Cyrus, describePeers, type Mailutils, startCyrus, startMailutils} from '../support/peers.js'

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'lmtp-replay-interop-'))
})
afterAll(async () => {
  await rm(dir, {recursive: true, force: true})
})

/** 20 plain 7-bit messages for `to`, as a new user's corpus would be. */
async function corpus(name: string, to: string): Promise<string> {
  const d = path.join(dir, name)
  await mkdir(d)
  for (let n = 1; n <= 20; n++) {
    await writeFile(path.join(d, `${n}.eml`), `Delivered-To: ${to}\nFrom: s@example.org\nMessage-ID: <${n}.${name}@interop.test>\nSubject: ${n}\n\nmessage ${n}\n`)
  }
  return d
}

function options(port: number, source: string, more: Partial<ReplayOptions> = {}): ReplayOptions {
  return {
    target: {kind: 'tcp', host: '127.0.0.1', port},
    lhloName: 'replay.test',
    concurrency: 2,
    input: () => readSources([source]),
    ...more,
  }
}

describePeers('replay into GNU Mailutils lmtpd', ['mailutils'], () => {
  let mu: Mailutils
  beforeAll(async () => {
    mu = await startMailutils()
  })
  afterAll(async () => {
    await mu?.stop()
  })

  async function replayInto(name: string, more: Partial<ReplayOptions>) {
    const before = await mu.countMessages('mail')
    const summary = await runReplay(options(mu.port, await corpus(name, 'mail@example.com'), more))
    expect(summary.recipients).toEqual({total: 20, delivered: 20, deferred: 0, rejected: 0})
    expect(summary.connections.lost).toBe(0)
    expect(summary.connections.dropped).toBe(0)
    expect(summary.connections.closed).toBe(summary.connections.opened)
    expect(summary.violations.count).toBe(0)
    expect(summary.exitCode).toBe(0)
    expect(await mu.countMessages('mail')).toBe(before + 20)
    return summary
  }

  test('20 messages: no MAIL parameter for 7-bit mail; its 503 to the LHLO marker teaches one session per message; all delivered, exit 0', async () => {
    const summary = await replayInto('mailutils', {})
    expect(summary.oneTransactionPerSession).toMatch(/answered 503 to LHLO after a transaction: one session per message/)
    expect(summary.connections.opened).toBeGreaterThanOrEqual(20)
  })

  test('without pipelining (no marker): the 503 to a second MAIL is retried on a fresh session, then one session per message', async () => {
    const summary = await replayInto('mailutils-nopipe', {pipelining: false, concurrency: 1})
    expect(summary.oneTransactionPerSession).toMatch(/answered 503 to MAIL in a session that already carried a transaction/)
    // The first session carried one message and was refused the second, which went again on a new session.
    expect(summary.connections.opened).toBe(20)
  })
})

describePeers('replay into Cyrus lmtpd', ['cyrus'], () => {
  let cyrus: Cyrus
  beforeAll(async () => {
    cyrus = await startCyrus()
  })
  afterAll(async () => {
    await cyrus?.stop()
  })

  test('20 messages on the preauthorised port: all delivered, exit 0, no session lost', async () => {
    const before = await cyrus.countMessages('alice')
    const summary = await runReplay(options(cyrus.lmtpPort, await corpus('cyrus', 'alice@example.com')))
    expect(summary.recipients).toEqual({total: 20, delivered: 20, deferred: 0, rejected: 0})
    expect(summary.connections).toMatchObject({lost: 0, dropped: 0, failedAttempts: 0})
    expect(summary.connections.closed).toBe(summary.connections.opened)
    expect(summary.violations.count).toBe(0)
    expect(summary.exitCode).toBe(0)
    expect(await cyrus.countMessages('alice')).toBe(before + 20)
  })

  test('the port that requires AUTH: with --auth every message is delivered', async () => {
    const before = await cyrus.countMessages('bob')
    const summary = await runReplay(
      options(cyrus.authPort, await corpus('cyrus-auth', 'bob@example.com'), {auth: {user: cyrus.authUser, password: cyrus.authPassword}}),
    )
    expect(summary.recipients).toEqual({total: 20, delivered: 20, deferred: 0, rejected: 0})
    expect(summary.exitCode).toBe(0)
    expect(await cyrus.countMessages('bob')).toBe(before + 20)
  })

  test('the port that requires AUTH, without --auth: the run stops at the first refusal with exit 78 and says to use --auth', async () => {
    const summary = await runReplay(options(cyrus.authPort, await corpus('cyrus-noauth', 'carol@example.com')))
    expect(summary.aborted).toMatch(/answered 430 to MAIL: this server requires authentication: use --auth USER/)
    expect(summary.messages.total).toBeLessThanOrEqual(2)
    expect(summary.recipients.deferred).toBe(summary.recipients.total)
    expect(summary.exitCode).toBe(78)
  })
})
