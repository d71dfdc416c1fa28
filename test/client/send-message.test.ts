/** sendMessage() as a library against the scripted fake server: parameters, refusals, exit codes, no half-sends. */
import {afterEach, describe, expect, test} from 'vitest'
import {SendError} from '../../src/client/send-message.js'
import {type MessageSource, MessageSourceError, generatedSource} from '../../src/client/message-source.js'
import {type SendOptions, type TranscriptLine, exitCodeFor, sendMessage, summarize} from '../../src/client/send-message.js'
import {parseTarget} from '../../src/net/target.js'
import type {RecipientResult} from '../../src/protocol/client.js'
import {type FakeServer, type FakeStep, greetAndLhlo, parseScript, startFakeServer} from '../support/fake-server.js'

let fake: FakeServer | undefined
afterEach(async () => {
  await fake?.close()
  fake = undefined
})

function source(text: string): MessageSource {
  return {
    description: 'test',
    async *open() {
      yield Buffer.from(text)
    },
    scan: async () => {
      const size = Buffer.byteLength(text.replace(/\r?\n/g, '\r\n'))
      return {size, has8bit: /[^\x00-\x7f]/.test(text)}
    },
    dispose: async () => {},
  }
}

async function sendTo(steps: FakeStep[], options: Partial<SendOptions> = {}) {
  fake = await startFakeServer(steps, {expectTimeoutMs: 3000})
  return sendMessage({
    target: parseTarget(fake.target),
    from: 'ops@example.org',
    to: ['a@example.com'],
    source: source('Subject: t\n\nhi\n'),
    lhlo: 'client.test',
    timeoutMs: 3000,
    ...options,
  })
}

describe('sendMessage', () => {
  test('SIZE, BODY=8BITMIME and SMTPUTF8 when the message and addresses need them; the report says what happened', async () => {
    const keywords = ['PIPELINING', 'ENHANCEDSTATUSCODES', '8BITMIME', 'SMTPUTF8', 'SIZE 100000']
    const transcript: TranscriptLine[] = []
    const progress: string[] = []
    const report = await sendTo(
      [
        ...greetAndLhlo(keywords),
        ...parseScript(`
          C: MAIL FROM:<ops@example.org> SIZE=19 BODY=8BITMIME SMTPUTF8
          C: RCPT TO:<josé@example.com>
          S: 250 2.1.0 ok
          S: 250 2.1.5 ok
          C: DATA
          S: 354 go
          C: <body>
          C: QUIT
          S: 250 2.0.0 saved
          S: 221 2.0.0 bye`),
      ],
      {
        to: ['josé@example.com'],
        source: source('Subject: ü\n\nhi\n'),
        trace: (l) => transcript.push(l),
        onProgress: (t) => progress.push(t),
      },
    )
    expect((await fake!.session()).errors).toEqual([])
    expect(report.envelope.params).toEqual({size: 19, body: '8BITMIME', smtputf8: true})
    expect(report.message).toEqual({source: 'test', size: 19, eightBit: true})
    expect(report.capabilities).toMatchObject({size: 100000, smtputf8: true, chunking: false})
    expect(report.exitCode).toBe(0)
    expect(report.recipients).toEqual([expect.objectContaining({recipient: 'josé@example.com', outcome: 'delivered', code: 250})])
    expect(transcript.filter((l) => l.direction === 'C').map((l) => l.text)).toEqual([
      'LHLO client.test',
      'MAIL FROM:<ops@example.org> SIZE=19 BODY=8BITMIME SMTPUTF8',
      'RCPT TO:<josé@example.com>',
      'DATA',
      'QUIT',
    ])
    expect(transcript.some((l) => l.direction === '*' && /message body: 19 octets/.test(l.text))).toBe(true)
    expect(progress).toEqual([
      'reading the message (test)',
      expect.stringMatching(/^connecting to 127\.0\.0\.1:\d+$/),
      expect.stringMatching(/^waiting for the greeting/),
      'sending 19 octets to 1 recipient',
      'message sent, waiting for the per-recipient replies',
      'closing',
    ])
  })

  test('a read error in the middle of the body: no end of data is sent, the connection is closed, exit 66', async () => {
    const failing: MessageSource = {
      description: 'failing',
      async *open() {
        yield Buffer.from('Subject: t\r\n\r\nfirst part\r\n')
        throw new MessageSourceError('cannot read the message file m.eml: EIO')
      },
      scan: async () => ({size: 100, has8bit: false}),
      dispose: async () => {},
    }
    const err = await sendTo([...greetAndLhlo(), ...parseScript('C: MAIL *\nC: RCPT *\nS: 250 2.1.0 ok\nS: 250 2.1.5 ok\nC: DATA\nS: 354 go\n!stall')], {
      source: failing,
    }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(SendError)
    expect((err as SendError).exitCode).toBe(66)
    expect((err as SendError).message).toMatch(/EIO; the message was not delivered/)
    const session = await fake!.session()
    await session.closed
    expect(session.extra).toEqual(['Subject: t', '', 'first part'])
  })

  test.each([
    {name: 'a 421 greeting', steps: parseScript('S: 421 4.3.2 shutting down\n!stall'), code: 75, message: /refused the session: 421/},
    {name: 'a 554 greeting', steps: parseScript('S: 554 5.3.2 no service\n!stall'), code: 69, message: /refused the session: 554/},
    {
      name: 'LHLO refused (an SMTP server)',
      steps: parseScript('S: 220 smtp.test ESMTP\nC: LHLO *\nS: 500 5.5.1 unknown command\n!stall'),
      code: 69,
      message: /refused LHLO: 500 .*is this an SMTP server\?/,
    },
    {name: 'garbage greeting', steps: parseScript('S: SSH-2.0-OpenSSH\n!stall'), code: 76, message: /broke the protocol during the greeting/},
    {name: 'closed before the greeting', steps: parseScript('!close'), code: 74, message: /closed the connection during the greeting/},
    {
      name: '--starttls without STARTTLS offered',
      steps: [...greetAndLhlo(), ...parseScript('!stall')],
      options: {starttls: true},
      code: 69,
      message: /does not offer STARTTLS: configure TLS on the server, or drop --starttls/,
    },
    {
      name: '--bdat without CHUNKING',
      steps: [...greetAndLhlo(), ...parseScript('C: QUIT\nS: 221 bye')],
      options: {bdat: true},
      code: 69,
      message: /does not offer CHUNKING/,
    },
  ])('$name: SendError exit $code', async ({steps, options, code, message}) => {
    const err = await sendTo(steps, options).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(SendError)
    expect((err as SendError).exitCode).toBe(code)
    expect((err as SendError).message).toMatch(message)
  })
})

describe('exit codes', () => {
  const r = (outcome: RecipientResult['outcome']): RecipientResult => ({index: 0, recipient: 'a@b.c', stage: 'DATA', outcome, code: 250, text: '', latencyMs: 0})
  test.each([
    {outcomes: ['delivered', 'delivered'], violation: null, code: 0},
    {outcomes: ['delivered', 'deferred'], violation: null, code: 75},
    {outcomes: ['deferred', 'rejected'], violation: null, code: 69},
    {outcomes: ['rejected'], violation: null, code: 69},
    {outcomes: ['delivered', 'deferred'], violation: 'too few replies', code: 76},
    {outcomes: [], violation: null, code: 0},
  ] as const)('$outcomes, violation $violation -> $code', ({outcomes, violation, code}) => {
    const results = outcomes.map(r)
    expect(exitCodeFor(results, violation)).toBe(code)
    expect(summarize(results).total).toBe(outcomes.length)
  })
})

describe('generated source through sendMessage', () => {
  test('--size is what SIZE= declares', async () => {
    const keywords = ['PIPELINING', 'ENHANCEDSTATUSCODES', 'SIZE 0']
    const report = await sendTo(
      [
        ...greetAndLhlo(keywords),
        ...parseScript(`
          C: MAIL FROM:<ops@example.org> SIZE=5000
          C: RCPT TO:<a@example.com>
          S: 250 2.1.0 ok
          S: 250 2.1.5 ok
          C: DATA
          S: 354 go
          C: <body>
          C: QUIT
          S: 250 2.0.0 saved
          S: 221 2.0.0 bye`),
      ],
      {source: generatedSource({from: 'ops@example.org', to: ['a@example.com'], hostname: 'h', size: 5000})},
    )
    const session = await fake!.session()
    expect(session.errors).toEqual([])
    // On the wire: the 5000 octets (no dot at a line start to stuff) plus the terminating ".\r\n".
    expect(session.bodies[0]!.length).toBe(5003)
    expect(report.exitCode).toBe(0)
  })
})
