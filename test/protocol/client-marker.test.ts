/**
 * The reply-count marker after the body, against scripted servers that behave like the real ones it must be
 * right with: QUIT on the session's last transaction; LHLO mid-session, recognised by structure (Cyrus changes
 * the text of its last LHLO line every transaction), resolved by one synchronous QUIT when the server refuses it
 * (GNU Mailutils answers 503); no pipelined marker at all with pipelining off. Too few replies are caught at once
 * (the marker's reply sits in a recipient's slot), too many are caught, and a correct server never costs a
 * timeout: every wait below would fail the test at its 3 s timer.
 */
import {afterEach, describe, expect, test} from 'vitest'
import {connectTarget, parseTarget} from '../../src/net/target.js'
import {LmtpClient, type TransactionRequest, type TransactionResult} from '../../src/protocol/client.js'
import {type FakeServer, type FakeStep, parseScript, startFakeServer} from '../support/fake-server.js'

let fake: FakeServer | undefined
afterEach(async () => {
  await fake?.close()
  fake = undefined
})

const CYRUS_LHLO = (id: string): string =>
  ['250-cyrus.test', '250-8BITMIME', '250-ENHANCEDSTATUSCODES', '250-PIPELINING', '250-SIZE', '250-AUTH PLAIN LOGIN', '250-IGNOREQUOTA', `250 Ok SESSIONID=<cyrus-${id}>`].join('\n')
const MU_LHLO = ['250-mailutils.test', '250-PIPELINING', '250 ENHANCEDSTATUSCODES'].join('\n')
const S = (text: string): string => text.split('\n').map((l) => `S: ${l}`).join('\n')

const quick = {greeting: 3000, command: 3000, dataInit: 3000, dataBlock: 3000, dataEnd: 3000}

/** Greeting and LHLO, then `script`; runs `requests` in turn on one session. */
async function run(lhlo: string, script: string, requests: Partial<TransactionRequest>[]): Promise<{results: TransactionResult[]; client: LmtpClient; lines: string[]; errors: string[]}> {
  const steps: FakeStep[] = [...parseScript(`S: 220 peer.test LMTP\nC: LHLO client.test\n${S(lhlo)}`), ...parseScript(script)]
  fake = await startFakeServer(steps, {expectTimeoutMs: 3000, end: 'stall'})
  const client = new LmtpClient(await connectTarget(parseTarget(fake.target)), {timeouts: quick})
  await client.start()
  await client.lhlo('client.test')
  const results: TransactionResult[] = []
  for (const r of requests) {
    results.push(await client.send({from: 's@example.org', to: ['a@example.com'], body: [Buffer.from('Subject: t\r\n\r\nhi\r\n')], verifyReplyCount: true, ...r}))
  }
  await client.quit()
  const session = await fake.session(0)
  return {results, client, lines: session.lines, errors: session.errors}
}

const ENVELOPE_2 = `
  C: MAIL FROM:<s@example.org>
  C: RCPT TO:<a@example.com>
  C: RCPT TO:<b@example.com>
  S: 250 2.1.0 ok
  S: 250 2.1.5 ok
  S: 250 2.1.5 ok
  C: DATA
  S: 354 go
  C: <body>`
const two = {to: ['a@example.com', 'b@example.com']}

describe('QUIT marker (the session\'s last transaction)', () => {
  test('a correct server: no violation, the session is over, QUIT written once', async () => {
    const {results, lines, errors} = await run(MU_LHLO, `${ENVELOPE_2}\nC: QUIT\nS: 250 2.0.0 a ok\nS: 250 2.0.0 b ok\nS: 221 2.0.0 bye\n!close`, [{...two, lastInSession: true}])
    expect(errors).toEqual([])
    expect(results[0]!.violation).toBeUndefined()
    expect(results[0]!.sessionEnded).toBe(true)
    expect(results[0]!.recipients.map((r) => r.outcome)).toEqual(['delivered', 'delivered'])
    expect(lines.filter((l) => l === 'QUIT')).toHaveLength(1)
  })

  test('too few replies: the 221 in the second slot is caught at once, b deferred as unanswered', async () => {
    const {results} = await run(MU_LHLO, `${ENVELOPE_2}\nC: QUIT\nS: 250 2.0.0 both ok\nS: 221 2.0.0 bye\n!close`, [{...two, lastInSession: true}])
    expect(results[0]!.violation).toMatch(/1 replies after the body for 2/)
    expect(results[0]!.recipients.map((r) => `${r.outcome}${r.synthetic ? '*' : ''}`)).toEqual(['delivered', 'deferred*'])
    expect(results[0]!.recipients[1]!.text).toBe('the server sent no reply for this recipient')
  })

  test('too many replies: a violation, whatever came before the 221', async () => {
    const {results} = await run(MU_LHLO, `${ENVELOPE_2}\nC: QUIT\nS: 250 2.0.0 a\nS: 250 2.0.0 b\nS: 250 2.0.0 extra\nS: 221 2.0.0 bye\n!close`, [{...two, lastInSession: true}])
    expect(results[0]!.violation).toMatch(/more replies after the body than the 2 accepted/)
    expect(results[0]!.recipients.map((r) => r.outcome)).toEqual(['delivered', 'delivered'])
  })

  test('a server that closes after the replies without answering QUIT: no violation', async () => {
    const {results} = await run(MU_LHLO, `${ENVELOPE_2}\nC: QUIT\nS: 250 2.0.0 a\nS: 250 2.0.0 b\n!close`, [{...two, lastInSession: true}])
    expect(results[0]!.violation).toBeUndefined()
    expect(results[0]!.recipients.map((r) => r.outcome)).toEqual(['delivered', 'delivered'])
  })

  test('pipelining off: no marker before the replies; QUIT after them, its 221 checked', async () => {
    const script = `
      C: MAIL FROM:<s@example.org>
      S: 250 2.1.0 ok
      C: RCPT TO:<a@example.com>
      S: 250 2.1.5 ok
      C: DATA
      S: 354 go
      C: <body>
      S: 250 2.0.0 a ok
      C: QUIT
      S: 221 2.0.0 bye
      !close`
    const {results, errors} = await run(MU_LHLO, script, [{pipelining: false, lastInSession: true}])
    expect(errors).toEqual([])
    expect(results[0]!.violation).toBeUndefined()
    expect(results[0]!.sessionEnded).toBe(true)
  })

  test('pipelining off, an extra reply: the QUIT gets it instead of 221, a violation', async () => {
    const script = `
      C: MAIL FROM:<s@example.org>
      S: 250 2.1.0 ok
      C: RCPT TO:<a@example.com>
      S: 250 2.1.5 ok
      C: DATA
      S: 354 go
      C: <body>
      S: 250 2.0.0 a ok
      S: 250 2.0.0 extra
      C: QUIT
      S: 221 2.0.0 bye
      !close`
    const {results} = await run(MU_LHLO, script, [{pipelining: false, lastInSession: true}])
    expect(results[0]!.violation).toMatch(/more replies/)
  })
})

describe('LHLO marker (mid-session)', () => {
  test('Cyrus: the last LHLO line changes every transaction; recognised by structure, the session goes on', async () => {
    const one = (id: string): string => `
      C: MAIL FROM:<s@example.org>
      C: RCPT TO:<a@example.com>
      S: 250 2.1.0 ok
      S: 250 2.1.5 ok
      C: DATA
      S: 354 go
      C: <body>
      C: LHLO client.test
      S: 250 2.1.5 Ok SESSIONID=<cyrus-${id}>
      ${S(CYRUS_LHLO(id))}`
    const {results, errors} = await run(CYRUS_LHLO('0'), `${one('1')}\n${one('2')}\nC: QUIT\nS: 221 2.0.0 bye`, [{}, {}])
    expect(errors).toEqual([])
    for (const r of results) {
      expect(r.violation).toBeUndefined()
      expect(r.sessionEnded).toBeUndefined()
      expect(r.recipients.map((x) => x.outcome)).toEqual(['delivered'])
    }
  })

  test('Mailutils: LHLO after DATA gets 503; one synchronous QUIT gets 221: no violation, one transaction per session', async () => {
    const script = `
      C: MAIL FROM:<s@example.org>
      C: RCPT TO:<a@example.com>
      S: 250 2.1.0 ok
      S: 250 2.1.5 ok
      C: DATA
      S: 354 go
      C: <body>
      C: LHLO client.test
      S: 250 2.0.0 a delivered
      S: 503 5.0.0 Need MAIL command
      C: QUIT
      S: 221 2.0.0 bye
      !close`
    const {results, client, errors} = await run(MU_LHLO, script, [{}])
    expect(errors).toEqual([])
    expect(results[0]!.violation).toBeUndefined()
    expect(results[0]!.recipients.map((r) => r.outcome)).toEqual(['delivered'])
    expect(results[0]!.sessionEnded).toBe(true)
    expect(results[0]!.markerRefused).toMatchObject({code: 503, enhanced: '5.0.0'})
    expect(client.closed).toBe(true)
  })

  test('an extra reply before the LHLO reply: the synchronous QUIT gets the LHLO reply, not 221: a violation', async () => {
    const script = `
      C: MAIL FROM:<s@example.org>
      C: RCPT TO:<a@example.com>
      S: 250 2.1.0 ok
      S: 250 2.1.5 ok
      C: DATA
      S: 354 go
      C: <body>
      C: LHLO client.test
      S: 250 2.0.0 a delivered
      S: 250 2.0.0 smuggled
      ${S(MU_LHLO)}
      C: QUIT
      S: 221 2.0.0 bye
      !close`
    const {results} = await run(MU_LHLO, script, [{}])
    expect(results[0]!.violation).toMatch(/more replies after the body than the 1 accepted/)
    expect(results[0]!.markerRefused).toBeUndefined()
  })

  test('too few replies: the LHLO reply in a recipient slot is caught at once', async () => {
    const script = `${ENVELOPE_2}
      C: LHLO client.test
      S: 250 2.0.0 one for all
      ${S(MU_LHLO)}
      C: QUIT
      S: 221 2.0.0 bye`
    const {results} = await run(MU_LHLO, script, [two])
    expect(results[0]!.violation).toMatch(/1 replies after the body for 2/)
    expect(results[0]!.recipients.map((r) => `${r.outcome}${r.synthetic ? '*' : ''}`)).toEqual(['delivered', 'deferred*'])
  })

  test('pipelining off: no LHLO is written after the body', async () => {
    const script = `
      C: MAIL FROM:<s@example.org>
      S: 250 2.1.0 ok
      C: RCPT TO:<a@example.com>
      S: 250 2.1.5 ok
      C: DATA
      S: 354 go
      C: <body>
      S: 250 2.0.0 a ok
      C: QUIT
      S: 221 2.0.0 bye`
    const {results, errors, lines} = await run(MU_LHLO, script, [{pipelining: false}])
    expect(errors).toEqual([])
    expect(results[0]!.violation).toBeUndefined()
    expect(lines.filter((l) => l.startsWith('LHLO'))).toHaveLength(1)
  })
})

describe('enhanced codes on any line', () => {
  test("Cyrus's 3-line unknown-user reply at RCPT carries 5.1.1 from its last line", async () => {
    const script = `
      C: MAIL FROM:<s@example.org>
      C: RCPT TO:<a@example.com>
      S: 250 2.1.0 ok
      S: 550-Mailbox unknown.  Either there is no mailbox associated with this
      S: 550-name or you do not have authorization to see it.
      S: 550 5.1.1 User unknown
      C: RSET
      S: 250 2.0.0 ok
      C: QUIT
      S: 221 2.0.0 bye`
    const {results} = await run(MU_LHLO, script, [{}])
    expect(results[0]!.recipients[0]).toMatchObject({outcome: 'rejected', stage: 'RCPT', code: 550, enhanced: '5.1.1'})
    expect(results[0]!.recipients[0]!.text).toMatch(/^Mailbox unknown\..*User unknown$/)
  })
})
