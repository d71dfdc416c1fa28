/**
 * Codec-style tests of the client core: a whole session (greeting, LHLO, AUTH, a pipelined envelope, DATA, the
 * body, the per-recipient replies and the QUIT marker) against an in-memory scripted server whose replies are
 * fed to the client split at every byte boundary (and one octet at a time). The outcome must never depend on
 * where a chunk ends.
 */
import {Duplex} from 'node:stream'
import {describe, expect, test} from 'vitest'
import {authenticate} from '../../src/client/auth.js'
import {LmtpClient, type TransactionResult} from '../../src/protocol/client.js'

/** One turn: once the client's output ends with `after`, the server answers `reply` (CRLF line ends). */
interface Turn {
  after: string
  reply: string
}

const CRLF = (lines: string[]): string => lines.map((l) => `${l}\r\n`).join('')

const GREETING = CRLF(['220 cyrus.test LMTP Cyrus v3.6.1 ready'])
const TURNS: Turn[] = [
  {after: 'LHLO client.test\r\n', reply: CRLF(['250-cyrus.test', '250-8BITMIME', '250-ENHANCEDSTATUSCODES', '250-PIPELINING', '250-AUTH PLAIN', '250 Ok SESSIONID=<x-1>'])},
  {after: `AUTH PLAIN ${Buffer.from('\0u\0p').toString('base64')}\r\n`, reply: CRLF(['235 2.7.0 Success'])},
  {
    after: 'RCPT TO:<c@example.com>\r\nRCPT TO:<a@example.com>\r\n',
    reply: CRLF(['250 2.1.0 ok', '250 2.1.5 ok', '250 2.1.5 ok', '550-Mailbox unknown.  Either there is no mailbox', '550-or you may not see it.', '550 5.1.1 User unknown', '250 2.1.5 ok']),
  },
  {after: 'DATA\r\n', reply: CRLF(['354 go ahead'])},
  {after: '\r\n.\r\nQUIT\r\n', reply: CRLF(['250 2.1.5 Ok SESSIONID=<x-2>', '452-4.2.2 Over quota', '452 4.2.2 try later', '250 2.1.5 Ok SESSIONID=<x-3>', '221 2.0.0 bye'])},
]

/** A duplex that plays the server: answers each turn by `split(reply)`, one chunk per event-loop turn. */
function scriptedServer(split: (reply: string) => Buffer[]): {stream: Duplex; written: () => string} {
  let out = ''
  let turn = 0
  const stream = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      out += chunk.toString('latin1')
      const t = TURNS[turn]
      if (t && out.endsWith(t.after)) {
        turn++
        feed(split(t.reply))
      }
      cb()
    },
  })
  const feed = (chunks: Buffer[]): void => {
    const [first, ...rest] = chunks
    if (!first) return
    setImmediate(() => {
      stream.push(first)
      feed(rest)
    })
  }
  feed(split(GREETING))
  return {stream, written: () => out}
}

async function session(split: (reply: string) => Buffer[]): Promise<{result: TransactionResult; written: string}> {
  const {stream, written} = scriptedServer(split)
  const t = 2000
  const client = new LmtpClient(stream, {timeouts: {greeting: t, command: t, dataInit: t, dataBlock: t, dataEnd: t}})
  await client.start()
  const caps = await client.lhlo('client.test')
  await authenticate(client, caps, {user: 'u', password: 'p'})
  const result = await client.send({
    from: 's@example.org',
    to: ['a@example.com', 'b@example.com', 'c@example.com', 'a@example.com'],
    body: [Buffer.from('Subject: t\n\n.dot\nhi\n')],
    verifyReplyCount: true,
    lastInSession: true,
  })
  client.close()
  return {result, written: written()}
}

const summary = (r: TransactionResult) => r.recipients.map((x) => [x.recipient, x.stage, x.code, x.enhanced ?? null, x.synthetic === true])

/** Three accepted recipients (a duplicate counts twice), one refused at RCPT with a 3-line reply: in RCPT order. */
const EXPECTED = [
  ['a@example.com', 'DATA', 250, '2.1.5', false],
  ['b@example.com', 'DATA', 452, '4.2.2', false],
  ['c@example.com', 'RCPT', 550, '5.1.1', false],
  ['a@example.com', 'DATA', 250, '2.1.5', false],
]

function check(result: TransactionResult, written: string): void {
  expect(result.violation).toBeUndefined()
  expect(result.sessionEnded).toBe(true)
  expect(summary(result)).toEqual(EXPECTED)
  // The body went dot-stuffed with CRLF line ends, then the end mark and the QUIT marker in the same write.
  expect(written).toContain('Subject: t\r\n\r\n..dot\r\nhi\r\n.\r\nQUIT\r\n')
}

describe('a whole session split at every byte boundary', () => {
  const longest = Math.max(GREETING.length, ...TURNS.map((t) => t.reply.length))
  const cuts = Array.from({length: longest + 1}, (_, i) => i)

  test.each(cuts)('every reply cut in two at octet %i', async (cut) => {
    const {result, written} = await session((reply) => {
      const b = Buffer.from(reply)
      const at = Math.min(cut, b.length)
      return [b.subarray(0, at), b.subarray(at)].filter((c) => c.length > 0)
    })
    check(result, written)
  })

  test('every reply fed one octet at a time', async () => {
    const {result, written} = await session((reply) => [...Buffer.from(reply)].map((o) => Buffer.from([o])))
    check(result, written)
  })
})
