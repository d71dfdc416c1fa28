/**
 * OUR clients (`lmtp send`, `probe`, `replay`, the built CLI) against Cyrus IMAP 3.6's lmtpd, a real LMTP
 * server nobody on this team wrote (issue 13). Cyrus answers exactly one reply per accepted recipient, ends
 * its LHLO reply with `250 Ok SESSIONID=<...>` (a new id after every transaction), puts the enhanced code of
 * its unknown-user reply on the last of three lines, requires LMTP AUTH on a listener without `-a`, and is
 * open to SMTP smuggling. See client-runs.ts for why no test here can pass by waiting a timeout.
 */
import {afterAll, beforeAll, expect, test} from 'vitest'
import {runCli} from '../client/run-cli.js'
import {type Cyrus, describePeers, startCyrus} from '../support/peers.js'
import {RUN_LIMIT_MS, sendArgs} from './client-runs.js'

describePeers('lmtp send, probe, replay -> Cyrus IMAP lmtpd', ['cyrus'], () => {
  let cyrus: Cyrus
  let auth: string
  beforeAll(async () => {
    cyrus = await startCyrus({users: ['alice', 'bob', 'carol', 'dave']})
    auth = `127.0.0.1:${cyrus.authPort}`
  })
  afterAll(async () => {
    await cyrus?.stop()
  })

  test('send without --auth to the AUTH-required port: nothing delivered, and the message names --auth', async () => {
    const before = await cyrus.countMessages('dave')
    const run = await runCli(sendArgs(auth, ['dave@example.com']), {timeoutMs: RUN_LIMIT_MS})
    expect(`${run.stdout}${run.stderr}`).toMatch(/requires authentication[^\n]*--auth/i)
    expect(run.code).not.toBeNull()
    expect([0, 76]).not.toContain(run.code)
    expect(await cyrus.countMessages('dave')).toBe(before)
  })
})
