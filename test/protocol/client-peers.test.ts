/**
 * The client core's reply-count marker against the real servers it was redesigned for (issue 13), two
 * transactions per session with the mid-session LHLO marker: Cyrus 3.6 (whose last LHLO line carries a session id
 * that changes every transaction) must be recognised by structure and the session must go on; GNU Mailutils 3.15
 * (503 to LHLO after DATA, one transaction per session) must be resolved by one synchronous QUIT with no
 * violation, telling the caller to open a new session. Every wait runs on a 5 s timer, so a test that only
 * passed by waiting one out would fail: the outcome names a violation or a timeout then.
 */
import {afterAll, beforeAll, expect, test} from 'vitest'
import {openSession} from '../../src/client/session.js'
import {parseTarget} from '../../src/net/target.js'
import type {TransactionResult} from '../../src/protocol/client.js'
import {type Cyrus, describePeers, type Mailutils, startCyrus, startMailutils} from '../support/peers.js'

const T = 5000
const timeouts = {greeting: T, command: T, dataInit: T, dataBlock: T, dataEnd: T}
const body = (n: number): Buffer[] => [Buffer.from(`From: a@example.org\r\nSubject: marker ${n}\r\nMessage-ID: <marker-${n}-${process.pid}@example.org>\r\n\r\nhi ${n}\r\n`)]

async function twoTransactions(target: string, to: string[]): Promise<TransactionResult[]> {
  const s = await openSession(parseTarget(target), {lhloName: 'client.test', timeouts})
  const results: TransactionResult[] = []
  try {
    for (const n of [1, 2]) {
      if (s.client.closed) break
      results.push(await s.client.send({from: 'ops@example.org', to, body: body(n), verifyReplyCount: true}))
    }
  } finally {
    await s.client.quit()
  }
  return results
}

describePeers('the LHLO marker against Cyrus lmtpd', ['cyrus'], () => {
  let cyrus: Cyrus
  beforeAll(async () => {
    cyrus = await startCyrus()
  })
  afterAll(async () => {
    await cyrus?.stop()
  })

  test('two transactions on one session: no violation, the session goes on, both delivered', async () => {
    const before = await cyrus.countMessages('alice')
    const results = await twoTransactions(`127.0.0.1:${cyrus.lmtpPort}`, ['alice@example.com', 'nobody@example.com'])
    expect(results).toHaveLength(2)
    for (const r of results) {
      expect(r.violation).toBeUndefined()
      expect(r.sessionEnded).toBeUndefined()
      expect(r.recipients.map((x) => [x.outcome, x.code, x.enhanced])).toEqual([
        ['delivered', 250, '2.1.5'],
        ['rejected', 550, '5.1.1'],
      ])
    }
    expect(await cyrus.countMessages('alice')).toBe(before + 2)
  })
})

describePeers('the LHLO marker against GNU Mailutils lmtpd', ['mailutils'], () => {
  let mu: Mailutils
  beforeAll(async () => {
    mu = await startMailutils()
  })
  afterAll(async () => {
    await mu?.stop()
  })

  test('its 503 to the marker is resolved by one QUIT: no violation, session over, one transaction per session', async () => {
    const before = await mu.countMessages('mail')
    const results = await twoTransactions(`127.0.0.1:${mu.port}`, ['mail@example.com'])
    expect(results).toHaveLength(1)
    expect(results[0]!.violation).toBeUndefined()
    expect(results[0]!.recipients.map((x) => x.outcome)).toEqual(['delivered'])
    expect(results[0]!.sessionEnded).toBe(true)
    expect(results[0]!.markerRefused?.code).toBe(503)
    expect(await mu.countMessages('mail')).toBe(before + 1)
  })
})
