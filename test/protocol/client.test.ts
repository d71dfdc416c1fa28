/**
 * The LMTP client against a scripted fake server (transcripts: what the client must send, what the server
 * answers), then once against the real server over TCP and a Unix socket.
 */
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, describe, expect, test} from 'vitest'
import {connectTarget, parseTarget} from '../../src/net/target.js'
import {
  type ClientOptions,
  LmtpClient,
  LmtpClientError,
  type TransactionRequest,
  type TransactionResult,
} from '../../src/protocol/client.js'
import {EventBus} from '../../src/protocol/events.js'
import {perRecipient} from '../../src/protocol/replies.js'
import {reply} from '../../src/protocol/reply.js'
import {LmtpServer} from '../../src/server/server.js'
import {
  type FakeServer,
  type FakeSession,
  FAKE_KEYWORDS,
  greetAndLhlo,
  lhloReply,
  parseScript,
  startFakeServer,
} from '../support/fake-server.js'
import {MemoryBackend} from '../support/memory-backend.js'

let fake: FakeServer | undefined
afterEach(async () => {
  await fake?.close()
  fake = undefined
})

async function* pieces(...parts: string[]): AsyncIterable<Buffer> {
  for (const p of parts) yield Buffer.from(p)
}

async function connect(target: string, options: ClientOptions = {}): Promise<LmtpClient> {
  const socket = await connectTarget(parseTarget(target))
  const client = new LmtpClient(socket, {timeouts: {greeting: 3000, command: 3000, dataInit: 3000, dataBlock: 3000, dataEnd: 3000}, ...options})
  await client.start()
  await client.lhlo('client.test')
  return client
}

/** Runs one transaction against a fake server following `script` (after greeting and LHLO). */
async function run(
  script: string,
  request: Partial<TransactionRequest>,
  options: {keywords?: string[]; client?: ClientOptions} = {},
): Promise<{result: TransactionResult; session: FakeSession}> {
  fake = await startFakeServer([...greetAndLhlo(options.keywords), ...parseScript(script)], {expectTimeoutMs: 3000})
  const client = await connect(fake.target, options.client)
  const result = await client.send({from: 'sender@example.org', to: ['a@example.com'], body: pieces('Subject: t\r\n\r\nhi\r\n'), ...request})
  await client.quit()
  const session = await fake.session(0)
  await session.closed
  return {result, session}
}

const lhlo = (keywords = FAKE_KEYWORDS): string => lhloReply(keywords).map((l) => `S: ${l}`).join('\n')

/** [outcome, stage, code, synthetic] per recipient. */
type Row = [string, string, number, boolean]
const rows = (r: TransactionResult): Row[] => r.recipients.map((x) => [x.outcome, x.stage, x.code, x.synthetic === true])

describe('client transcripts against the fake server', () => {
  test.each([
    {
      name: 'pipelined MAIL and RCPTs: every command is on the wire before the first reply',
      to: ['a@example.com', 'b@example.com'],
      script: `
        C: MAIL FROM:<sender@example.org>
        C: RCPT TO:<a@example.com>
        C: RCPT TO:<b@example.com>
        S: 250 2.1.0 ok
        S: 250 2.1.5 ok
        S: 250 2.1.5 ok
        C: DATA
        S: 354 go ahead
        C: <body>
        C: LHLO client.test
        S: 250 2.0.0 <a@example.com> saved
        S: 250 2.0.0 <b@example.com> saved
        ${lhlo()}
        C: QUIT
        S: 221 2.0.0 bye`,
      expect: [
        ['delivered', 'DATA', 250, false],
        ['delivered', 'DATA', 250, false],
      ],
    },
    {
      name: 'without PIPELINING each command waits for its reply',
      keywords: ['ENHANCEDSTATUSCODES'],
      to: ['a@example.com', 'b@example.com'],
      script: `
        C: MAIL FROM:<sender@example.org>
        S: 250 2.1.0 ok
        C: RCPT TO:<a@example.com>
        S: 250 2.1.5 ok
        C: RCPT TO:<b@example.com>
        S: 250 2.1.5 ok
        C: DATA
        S: 354 go ahead
        C: <body>
        C: LHLO client.test
        S: 250 2.0.0 ok
        S: 250 2.0.0 ok
        ${lhlo(['ENHANCEDSTATUSCODES'])}
        C: QUIT
        S: 221 2.0.0 bye`,
      expect: [
        ['delivered', 'DATA', 250, false],
        ['delivered', 'DATA', 250, false],
      ],
    },
    {
      name: 'mixed outcomes: refused at RCPT, delivered, deferred after DATA, in RCPT order',
      to: ['a@example.com', 'nobody@example.com', 'full@example.com'],
      script: `
        C: MAIL FROM:<sender@example.org>
        C: RCPT TO:<a@example.com>
        C: RCPT TO:<nobody@example.com>
        C: RCPT TO:<full@example.com>
        S: 250 2.1.0 ok
        S: 250 2.1.5 ok
        S: 550 5.1.1 <nobody@example.com> no such user
        S: 250 2.1.5 ok
        C: DATA
        S: 354 go ahead
        C: <body>
        C: LHLO client.test
        S: 250 2.0.0 <a@example.com> saved
        S: 452 4.2.2 <full@example.com> mailbox full
        ${lhlo()}
        C: QUIT
        S: 221 2.0.0 bye`,
      expect: [
        ['delivered', 'DATA', 250, false],
        ['rejected', 'RCPT', 550, false],
        ['deferred', 'DATA', 452, false],
      ],
    },
    {
      name: 'duplicates: the same address twice is two RCPTs and two results',
      to: ['a@example.com', 'a@example.com'],
      script: `
        C: MAIL FROM:<sender@example.org>
        C: RCPT TO:<a@example.com>
        C: RCPT TO:<a@example.com>
        S: 250 2.1.0 ok
        S: 250 2.1.5 ok
        S: 250 2.1.5 ok
        C: DATA
        S: 354 go ahead
        C: <body>
        C: LHLO client.test
        S: 250 2.0.0 <a@example.com> saved
        S: 552 5.2.2 <a@example.com> mailbox full
        ${lhlo()}
        C: QUIT
        S: 221 2.0.0 bye`,
      expect: [
        ['delivered', 'DATA', 250, false],
        ['rejected', 'DATA', 552, false],
      ],
    },
    {
      name: 'a multi-line per-recipient reply counts once',
      to: ['a@example.com', 'b@example.com'],
      script: `
        C: MAIL FROM:<sender@example.org>
        C: RCPT TO:<a@example.com>
        C: RCPT TO:<b@example.com>
        S: 250 2.1.0 ok
        S: 250 2.1.5 ok
        S: 250 2.1.5 ok
        C: DATA
        S: 354 go ahead
        C: <body>
        C: LHLO client.test
        S: 452-4.2.2 <a@example.com> mailbox full
        S: 452-4.2.2 the user is over quota
        S: 452 4.2.2 try again later
        S: 250 2.0.0 <b@example.com> saved
        ${lhlo()}
        C: QUIT
        S: 221 2.0.0 bye`,
      expect: [
        ['deferred', 'DATA', 452, false],
        ['delivered', 'DATA', 250, false],
      ],
      check: (r: TransactionResult) =>
        expect(r.recipients[0]!.text).toBe('<a@example.com> mailbox full the user is over quota try again later'),
    },
    {
      name: '503 to DATA: no body is sent, every accepted recipient gets the 503',
      to: ['a@example.com', 'b@example.com'],
      script: `
        C: MAIL FROM:<sender@example.org>
        C: RCPT TO:<a@example.com>
        C: RCPT TO:<b@example.com>
        S: 250 2.1.0 ok
        S: 250 2.1.5 ok
        S: 250 2.1.5 ok
        C: DATA
        S: 503 5.5.1 no valid recipients
        C: QUIT
        S: 221 2.0.0 bye`,
      expect: [
        ['rejected', 'DATA', 503, false],
        ['rejected', 'DATA', 503, false],
      ],
      checkSession: (s: FakeSession) => expect(s.bodies).toEqual([]),
    },
    {
      name: 'every recipient refused: no DATA at all, RSET instead',
      to: ['x@example.com'],
      script: `
        C: MAIL FROM:<sender@example.org>
        C: RCPT TO:<x@example.com>
        S: 250 2.1.0 ok
        S: 550 5.1.1 no such user
        C: RSET
        S: 250 2.0.0 ok
        C: QUIT
        S: 221 2.0.0 bye`,
      expect: [['rejected', 'RCPT', 550, false]],
    },
    {
      name: 'connection lost after 1 of 3 replies: the first is kept, the other two are deferred',
      to: ['a@example.com', 'b@example.com', 'c@example.com'],
      script: `
        C: MAIL FROM:<sender@example.org>
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
        C: LHLO client.test
        S: 250 2.0.0 <a@example.com> saved
        !close`,
      expect: [
        ['delivered', 'DATA', 250, false],
        ['deferred', 'DATA', 421, true],
        ['deferred', 'DATA', 421, true],
      ],
      check: (r: TransactionResult) => {
        expect(r.recipients[1]!.text).toBe('connection lost after 1 of 3 replies')
        expect(r.violation).toBeUndefined()
      },
    },
    {
      name: 'garbage instead of a reply after the body: a protocol violation, the rest deferred',
      to: ['a@example.com', 'b@example.com'],
      script: `
        C: MAIL FROM:<sender@example.org>
        C: RCPT TO:<a@example.com>
        C: RCPT TO:<b@example.com>
        S: 250 2.1.0 ok
        S: 250 2.1.5 ok
        S: 250 2.1.5 ok
        C: DATA
        S: 354 go ahead
        C: <body>
        C: LHLO client.test
        S: 250 2.0.0 <a@example.com> saved
        S: hello, I am not an LMTP reply
        !stall`,
      expect: [
        ['delivered', 'DATA', 250, false],
        ['deferred', 'DATA', 421, true],
      ],
      check: (r: TransactionResult) => expect(r.violation).toMatch(/not a reply/),
    },
    {
      name: 'garbage right after the last reply, in the same packet: the reply counts, the garbage is a violation',
      to: ['a@example.com'],
      script: `
        C: MAIL FROM:<sender@example.org>
        C: RCPT TO:<a@example.com>
        S: 250 2.1.0 ok
        S: 250 2.1.5 ok
        C: DATA
        S: 354 go ahead
        C: <body>
        C: LHLO client.test
        S: 250 2.0.0 <a@example.com> saved
        S: +OK POP3 server ready
        !stall`,
      expect: [['delivered', 'DATA', 250, false]],
      check: (r: TransactionResult) => expect(r.violation).toMatch(/not a reply line: "\+OK POP3 server ready"/),
    },
    {
      name: 'one reply for two recipients: caught by the LHLO marker, not by a timeout',
      to: ['a@example.com', 'b@example.com'],
      script: `
        C: MAIL FROM:<sender@example.org>
        C: RCPT TO:<a@example.com>
        C: RCPT TO:<b@example.com>
        S: 250 2.1.0 ok
        S: 250 2.1.5 ok
        S: 250 2.1.5 ok
        C: DATA
        S: 354 go ahead
        C: <body>
        C: LHLO client.test
        S: 250 2.0.0 message accepted
        ${lhlo()}
        C: QUIT
        S: 221 2.0.0 bye`,
      expect: [
        ['delivered', 'DATA', 250, false],
        ['deferred', 'DATA', 421, true],
      ],
      check: (r: TransactionResult) =>
        expect(r.violation).toBe(
          'the server sent 1 replies after the body for 2 accepted recipients; RFC 2033 requires one per recipient',
        ),
    },
    {
      name: 'three replies for two recipients: a violation too',
      to: ['a@example.com', 'b@example.com'],
      script: `
        C: MAIL FROM:<sender@example.org>
        C: RCPT TO:<a@example.com>
        C: RCPT TO:<b@example.com>
        S: 250 2.1.0 ok
        S: 250 2.1.5 ok
        S: 250 2.1.5 ok
        C: DATA
        S: 354 go ahead
        C: <body>
        C: LHLO client.test
        S: 250 2.0.0 one
        S: 250 2.0.0 two
        S: 250 2.0.0 three
        ${lhlo()}
        C: QUIT
        S: 221 2.0.0 bye`,
      expect: [
        ['delivered', 'DATA', 250, false],
        ['delivered', 'DATA', 250, false],
      ],
      check: (r: TransactionResult) => expect(r.violation).toMatch(/more replies after the body than the 2 accepted/),
    },
    {
      name: 'the sender refused: every recipient shares the MAIL reply',
      to: ['a@example.com', 'b@example.com'],
      script: `
        C: MAIL FROM:<sender@example.org>
        C: RCPT TO:<a@example.com>
        C: RCPT TO:<b@example.com>
        S: 550 5.7.1 sender blocked
        S: 503 5.5.1 MAIL first
        S: 503 5.5.1 MAIL first
        C: RSET
        S: 250 2.0.0 ok
        C: QUIT
        S: 221 2.0.0 bye`,
      expect: [
        ['rejected', 'RCPT', 550, false],
        ['rejected', 'RCPT', 550, false],
      ],
    },
  ])('$name', async (c) => {
    const {result, session} = await run(
      c.script,
      {to: c.to, verifyReplyCount: true},
      {keywords: (c as {keywords?: string[]}).keywords},
    )
    expect(session.errors).toEqual([])
    expect(rows(result)).toEqual(c.expect)
    expect(result.recipients.map((r) => r.recipient)).toEqual(c.to)
    expect(result.recipients.map((r) => r.index)).toEqual(c.to.map((_, i) => i))
    ;(c as {check?: (r: TransactionResult) => void}).check?.(result)
    ;(c as {checkSession?: (s: FakeSession) => void}).checkSession?.(session)
  })

  test('dot-stuffing and line ends on the wire', async () => {
    const {result, session} = await run(
      `
      C: MAIL FROM:<sender@example.org>
      C: RCPT TO:<a@example.com>
      S: 250 2.1.0 ok
      S: 250 2.1.5 ok
      C: DATA
      S: 354 go ahead
      C: <body>
      S: 250 2.0.0 ok
      C: QUIT
      S: 221 2.0.0 bye`,
      // A chunk boundary right before a leading dot, bare LFs, a lone dot line and no final line end.
      {body: pieces('Subject: dots\n\n.one\r\n', '..two\n', '.\nlast')},
    )
    expect(session.errors).toEqual([])
    expect(session.bodies).toEqual([Buffer.from('Subject: dots\r\n\r\n..one\r\n...two\r\n..\r\nlast\r\n.\r\n')])
    expect(result.bytes).toBe(Buffer.byteLength('Subject: dots\r\n\r\n.one\r\n..two\r\n.\r\nlast\r\n'))
  })

  test('BDAT in several chunks: no stuffing, exact octet counts, LAST at the end', async () => {
    const body = ['Subject: bdat\r\n\r\n', `.dot ${'x'.repeat(40)}\n`, 'y'.repeat(30), '\nend']
    const {result, session} = await run(
      `
      C: MAIL FROM:<sender@example.org>
      C: RCPT TO:<a@example.com>
      C: RCPT TO:<b@example.com>
      S: 250 2.1.0 ok
      S: 250 2.1.5 ok
      S: 250 2.1.5 ok
      C: BDAT *
      C: BDAT *
      C: BDAT *
      S: 250 2.0.0 chunk 1 ok
      S: 250 2.0.0 chunk 2 ok
      S: 250 2.0.0 chunk 3 ok
      C: BDAT * LAST
      C: LHLO client.test
      S: 250 2.0.0 <a@example.com> saved
      S: 452 4.2.2 <b@example.com> mailbox full
      ${lhlo([...FAKE_KEYWORDS, 'CHUNKING'])}
      C: QUIT
      S: 221 2.0.0 bye`,
      {to: ['a@example.com', 'b@example.com'], bdat: true, chunkSize: 16, verifyReplyCount: true, body: pieces(...body)},
      {keywords: [...FAKE_KEYWORDS, 'CHUNKING']},
    )
    expect(session.errors).toEqual([])
    const wire = Buffer.from(`Subject: bdat\r\n\r\n.dot ${'x'.repeat(40)}\r\n${'y'.repeat(30)}\r\nend\r\n`)
    expect(session.chunks.map((c) => c.last)).toEqual([false, false, false, true])
    expect(session.chunks.every((c) => c.data.length === c.size)).toBe(true)
    expect(Buffer.concat(session.chunks.map((c) => c.data))).toEqual(wire)
    expect(result.bytes).toBe(wire.length)
    expect(rows(result)).toEqual([
      ['delivered', 'DATA', 250, false],
      ['deferred', 'DATA', 452, false],
    ])
  })

  test('a refused BDAT chunk: no LAST is sent, every accepted recipient gets the refusal, then RSET', async () => {
    const {result, session} = await run(
      `
      C: MAIL FROM:<sender@example.org>
      C: RCPT TO:<a@example.com>
      S: 250 2.1.0 ok
      S: 250 2.1.5 ok
      C: BDAT *
      C: BDAT *
      S: 552 5.3.4 message too big
      S: 552 5.3.4 message too big
      C: RSET
      S: 250 2.0.0 ok
      C: QUIT
      S: 221 2.0.0 bye`,
      {bdat: true, chunkSize: 10, body: pieces('0123456789\r\n', 'abcdefghij\r\n', 'tail\r\n')},
      {keywords: [...FAKE_KEYWORDS, 'CHUNKING']},
    )
    expect(session.errors).toEqual([])
    expect(session.chunks.some((c) => c.last)).toBe(false)
    expect(result.data?.code).toBe(552)
    expect(rows(result)).toEqual([['rejected', 'DATA', 552, false]])
  })

  test('a stalled server: the client times out and defers, it does not hang', async () => {
    const {result, session} = await run(
      `
      C: MAIL FROM:<sender@example.org>
      C: RCPT TO:<a@example.com>
      S: 250 2.1.0 ok
      S: 250 2.1.5 ok
      C: DATA
      S: 354 go ahead
      C: <body>
      !stall`,
      {},
      {client: {timeouts: {dataEnd: 300}}},
    ).then(async (r) => {
      await fake?.close()
      return r
    })
    expect(session.errors).toEqual([])
    expect(rows(result)).toEqual([['deferred', 'DATA', 421, true]])
    expect(result.recipients[0]!.text).toBe('no reply from the server for recipient 1 of 1 after the body within 0.3s')
  })

  test.each([
    {name: 'garbage greeting', greeting: ['SSH-2.0-OpenSSH_9.2'], kind: 'protocol'},
    {name: 'a 554 greeting', greeting: ['554 5.3.2 go away'], kind: 'refused'},
    {name: 'a stalled greeting', greeting: [], kind: 'timeout'},
  ])('$name: start() fails with kind $kind', async ({greeting, kind}) => {
    fake = await startFakeServer(greeting.length > 0 ? [{send: greeting}, {stall: true}] : [{stall: true}])
    const socket = await connectTarget(parseTarget(fake.target))
    const client = new LmtpClient(socket, {timeouts: {greeting: 300}})
    const err = await client.start().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(LmtpClientError)
    expect((err as LmtpClientError).kind).toBe(kind)
    client.close()
  })
})

describe('loopback: the real client against the real server', () => {
  test.each(['tcp', 'unix'] as const)('over %s: mixed outcomes in RCPT order, duplicates kept', async (kind) => {
    const dir = await mkdtemp(join(tmpdir(), 'lmtp-client-'))
    const backend = new MemoryBackend()
    backend.rcptFailures.set('nobody@example.com', reply(550, '5.1.1', 'no such user here'))
    backend.deliveryFailures.set('full@example.com', perRecipient.overQuotaTemp('full@example.com'))
    backend.delays.set('a@example.com', 30)
    const listen = kind === 'tcp' ? parseTarget('127.0.0.1:0') : parseTarget(`unix:${join(dir, 'lmtp.sock')}`)
    const server = new LmtpServer({listen: [listen], hostname: 'loopback.test'}, backend, new EventBus())
    try {
      const [info] = await server.start()
      const client = await connect(info!.address)
      const to = ['a@example.com', 'nobody@example.com', 'full@example.com', 'a@example.com']
      const result = await client.send({
        from: 'sender@example.org',
        to,
        params: {size: 24},
        body: pieces('Subject: loop\r\n\r\n.hi\r\n'),
        verifyReplyCount: true,
      })
      await client.quit()
      expect(result.violation).toBeUndefined()
      expect(rows(result)).toEqual([
        ['delivered', 'DATA', 250, false],
        ['rejected', 'RCPT', 550, false],
        ['deferred', 'DATA', 452, false],
        ['delivered', 'DATA', 250, false],
      ])
      expect(result.recipients.map((r) => r.recipient)).toEqual(to)
      expect(backend.delivered.map((d) => d.recipient)).toEqual(['a@example.com', 'a@example.com'])
      expect(backend.delivered[0]!.body.toString()).toBe('Subject: loop\r\n\r\n.hi\r\n')
    } finally {
      await server.stop(1000)
      await rm(dir, {recursive: true, force: true})
    }
  })
})
