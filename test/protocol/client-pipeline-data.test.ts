/**
 * The client's `pipelineData` mode (DATA sent in the same group as MAIL and the RCPTs, for load tools) against
 * the scripted fake server: the rules of the default mode still hold (no body after a refused DATA, every
 * recipient's outcome in RCPT order), and a server that answers 354 to a transaction it refused is a protocol
 * violation that closes the session. Also: a small message goes out in two writes (envelope group, body).
 */
import {afterEach, describe, expect, test} from 'vitest'
import {connectTarget, parseTarget} from '../../src/net/target.js'
import {LmtpClient, type TransactionRequest, type TransactionResult} from '../../src/protocol/client.js'
import {type FakeServer, type FakeSession, greetAndLhlo, parseScript, startFakeServer} from '../support/fake-server.js'

let fake: FakeServer | undefined
afterEach(async () => {
  await fake?.close()
  fake = undefined
})

async function* pieces(...parts: string[]): AsyncIterable<Buffer> {
  for (const p of parts) yield Buffer.from(p)
}

type Row = [string, string, number, boolean]
const rows = (r: TransactionResult): Row[] => r.recipients.map((x) => [x.outcome, x.stage, x.code, x.synthetic === true])

/** One pipelineData transaction against `script`; counts the client's socket writes during send(). */
async function run(
  script: string,
  request: Partial<TransactionRequest>,
): Promise<{result: TransactionResult; session: FakeSession; writes: number; closed: boolean}> {
  fake = await startFakeServer([...greetAndLhlo(), ...parseScript(script)], {expectTimeoutMs: 3000})
  const socket = await connectTarget(parseTarget(fake.target))
  const client = new LmtpClient(socket, {timeouts: {greeting: 3000, command: 3000, dataInit: 3000, dataBlock: 3000, dataEnd: 3000}})
  await client.start()
  await client.lhlo('client.test')
  let writes = 0
  const write = socket.write.bind(socket) as (chunk: Buffer | string) => boolean
  socket.write = ((chunk: Buffer | string) => {
    writes++
    return write(chunk)
  }) as typeof socket.write
  const result = await client.send({
    from: 'sender@example.org',
    to: ['a@example.com'],
    body: pieces('Subject: t\r\n', '\r\n', 'hi\r\n', '.dot\r\n'),
    pipelineData: true,
    ...request,
  })
  const sent = writes
  const closed = client.closed
  await client.quit()
  const session = await fake.session(0)
  await session.closed
  return {result, session, writes: sent, closed}
}

describe('pipelineData: DATA in the envelope group', () => {
  test.each([
    {
      name: 'every command is on the wire before the first reply; the body goes out in one write',
      to: ['a@example.com', 'b@example.com'],
      script: `
        C: MAIL FROM:<sender@example.org>
        C: RCPT TO:<a@example.com>
        C: RCPT TO:<b@example.com>
        C: DATA
        S: 250 2.1.0 ok
        S: 250 2.1.5 ok
        S: 250 2.1.5 ok
        S: 354 go
        C: <body>
        S: 250 2.0.0 a delivered
        S: 452 4.2.2 b over quota
        C: QUIT
        S: 221 2.0.0 bye`,
      expect: [
        ['delivered', 'DATA', 250, false],
        ['deferred', 'DATA', 452, false],
      ] as Row[],
      bodies: 1,
      writes: 2,
      violation: false,
    },
    {
      name: 'one recipient refused, one accepted: the body is sent for the accepted one',
      to: ['x@example.com', 'a@example.com'],
      script: `
        C: MAIL FROM:<sender@example.org>
        C: RCPT TO:<x@example.com>
        C: RCPT TO:<a@example.com>
        C: DATA
        S: 250 2.1.0 ok
        S: 550 5.1.1 no such user
        S: 250 2.1.5 ok
        S: 354 go
        C: <body>
        S: 250 2.0.0 a delivered
        C: QUIT
        S: 221 2.0.0 bye`,
      expect: [
        ['rejected', 'RCPT', 550, false],
        ['delivered', 'DATA', 250, false],
      ] as Row[],
      bodies: 1,
      writes: 2,
      violation: false,
    },
    {
      name: 'every recipient refused and DATA answered 503: no body, RSET, the RCPT outcomes stand',
      to: ['x@example.com'],
      script: `
        C: MAIL FROM:<sender@example.org>
        C: RCPT TO:<x@example.com>
        C: DATA
        S: 250 2.1.0 ok
        S: 550 5.1.1 no such user
        S: 503 5.5.1 no valid recipients
        C: RSET
        S: 250 2.0.0 ok
        C: QUIT
        S: 221 2.0.0 bye`,
      expect: [['rejected', 'RCPT', 550, false]] as Row[],
      bodies: 0,
      writes: 2,
      violation: false,
    },
    {
      name: '503 to DATA with accepted recipients: no body, every accepted recipient gets the 503',
      to: ['a@example.com', 'b@example.com'],
      script: `
        C: MAIL FROM:<sender@example.org>
        C: RCPT TO:<a@example.com>
        C: RCPT TO:<b@example.com>
        C: DATA
        S: 250 2.1.0 ok
        S: 250 2.1.5 ok
        S: 250 2.1.5 ok
        S: 554 5.3.0 no thanks
        C: QUIT
        S: 221 2.0.0 bye`,
      expect: [
        ['rejected', 'DATA', 554, false],
        ['rejected', 'DATA', 554, false],
      ] as Row[],
      bodies: 0,
      writes: 1,
      violation: false,
    },
    {
      name: 'sender refused: every recipient shares the MAIL reply, no body, RSET',
      to: ['a@example.com'],
      script: `
        C: MAIL FROM:<sender@example.org>
        C: RCPT TO:<a@example.com>
        C: DATA
        S: 550 5.7.1 sender refused
        S: 503 5.5.1 need MAIL
        S: 503 5.5.1 need MAIL
        C: RSET
        S: 250 2.0.0 ok
        C: QUIT
        S: 221 2.0.0 bye`,
      expect: [['rejected', 'RCPT', 550, false]] as Row[],
      bodies: 0,
      writes: 2,
      violation: false,
    },
  ])('$name', async ({to, script, expect: want, bodies, writes, violation}) => {
    const r = await run(script, {to})
    expect(r.session.errors).toEqual([])
    expect(rows(r.result)).toEqual(want)
    expect(r.session.bodies).toHaveLength(bodies)
    if (bodies > 0) expect(r.session.bodies[0]!.toString()).toBe('Subject: t\r\n\r\nhi\r\n..dot\r\n.\r\n')
    expect(r.writes).toBe(writes)
    expect(r.result.violation !== undefined).toBe(violation)
  })

  test.each([
    {
      name: 'every recipient refused',
      script: `
        C: MAIL FROM:<sender@example.org>
        C: RCPT TO:<x@example.com>
        C: DATA
        S: 250 2.1.0 ok
        S: 550 5.1.1 no such user
        S: 354 go ahead anyway
        !stall`,
      expect: [['rejected', 'RCPT', 550, false]] as Row[],
      code: 354,
    },
    {
      name: 'the sender refused',
      script: `
        C: MAIL FROM:<sender@example.org>
        C: RCPT TO:<x@example.com>
        C: DATA
        S: 550 5.7.1 sender refused
        S: 250 2.1.5 ok
        S: 354 go ahead anyway
        !stall`,
      expect: [['rejected', 'RCPT', 550, false]] as Row[],
      code: 354,
    },
    {
      name: 'every recipient refused, 250 to DATA',
      script: `
        C: MAIL FROM:<sender@example.org>
        C: RCPT TO:<x@example.com>
        C: DATA
        S: 250 2.1.0 ok
        S: 550 5.1.1 no such user
        S: 250 2.0.0 delivered?
        !stall`,
      expect: [['rejected', 'RCPT', 550, false]] as Row[],
      code: 250,
    },
  ])('a server that answers DATA with $code after $name: violation, no body, session closed', async ({script, expect: want, code}) => {
    const r = await run(script, {to: ['x@example.com']})
    expect(r.session.errors).toEqual([])
    expect(rows(r.result)).toEqual(want)
    expect(r.result.data?.code).toBe(code)
    expect(r.result.violation).toMatch(new RegExp(`answered DATA with ${code} after refusing`))
    expect(r.closed).toBe(true)
    // Nothing after DATA reached the server: no body, no RSET, no QUIT.
    expect(r.session.lines.slice(-1)).toEqual(['DATA'])
    expect(r.session.bodies).toEqual([])
  })

  test('a reply before the body was sent (after the 354): out of turn, nobody delivered', async () => {
    const r = await run(
      `
        C: MAIL FROM:<sender@example.org>
        C: RCPT TO:<a@example.com>
        C: DATA
        S: 250 2.1.0 ok
        S: 250 2.1.5 ok
        S: 354 go
        S: 250 2.0.0 delivered before the body
        !stall`,
      {},
    )
    expect(rows(r.result)).toEqual([['deferred', 'DATA', 421, true]])
    expect(r.result.violation).toMatch(/out of turn/)
    expect(r.closed).toBe(true)
  })

  test('without PIPELINING it is ignored: DATA waits for the envelope replies', async () => {
    fake = await startFakeServer(
      [
        ...greetAndLhlo(['ENHANCEDSTATUSCODES']),
        ...parseScript(`
          C: MAIL FROM:<sender@example.org>
          S: 250 2.1.0 ok
          C: RCPT TO:<a@example.com>
          S: 250 2.1.5 ok
          C: DATA
          S: 354 go
          C: <body>
          S: 250 2.0.0 delivered
          C: QUIT
          S: 221 2.0.0 bye`),
      ],
      {expectTimeoutMs: 3000},
    )
    const socket = await connectTarget(parseTarget(fake.target))
    const client = new LmtpClient(socket, {timeouts: {greeting: 3000, command: 3000, dataInit: 3000, dataBlock: 3000, dataEnd: 3000}})
    await client.start()
    await client.lhlo('client.test')
    const result = await client.send({from: 'sender@example.org', to: ['a@example.com'], body: pieces('hi\r\n'), pipelineData: true})
    await client.quit()
    const session = await fake.session(0)
    await session.closed
    expect(session.errors).toEqual([])
    expect(rows(result)).toEqual([['delivered', 'DATA', 250, false]])
  })
})
