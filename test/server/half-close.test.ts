/**
 * A client that half-closes (shutdown(SHUT_WR), as `nc -N` does) right after the final dot still receives every
 * per-recipient reply: the server finishes the transaction and writes its replies before it closes its side.
 * Without that, the mail is stored but the client sees no reply, retries, and the mail is delivered twice.
 */
import net from 'node:net'
import {afterAll, beforeAll, expect, test} from 'vitest'
import {ReplyParser, type Reply} from '../../src/protocol/reply.js'
import {type TestServer, deliveredFiles, startServe} from '../support/serve.js'

let srv: TestServer
beforeAll(async () => {
  srv = await startServe()
})
afterAll(async () => {
  await srv.stop()
  await srv.cleanup()
})

/**
 * One session: LHLO, MAIL, two RCPTs and DATA pipelined; once the 354 arrived, the body, the final dot and at
 * once the end of our stream. Resolves with every reply read until the server closed.
 */
function halfCloseSession(target: number | string, subject: string): Promise<Reply[]> {
  return new Promise((resolve, reject) => {
    const socket = typeof target === 'number' ? net.connect({host: '127.0.0.1', port: target, allowHalfOpen: true}) : net.connect({path: target, allowHalfOpen: true})
    const parser = new ReplyParser()
    const replies: Reply[] = []
    let bodySent = false
    socket.on('data', (chunk) => {
      replies.push(...parser.push(chunk))
      if (replies.length === 1 && !bodySent) {
        socket.write(`LHLO half.test\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<one@example.com>\r\nRCPT TO:<two@example.com>\r\nDATA\r\n`)
      }
      if (!bodySent && replies.some((r) => r.code === 354)) {
        bodySent = true
        socket.end(`Subject: ${subject}\r\n\r\nhalf-closed after the dot\r\n.\r\n`)
      }
    })
    socket.on('error', reject)
    socket.on('close', () => resolve(replies))
  })
}

test.each(['tcp', 'unix'] as const)('over %s: 10 half-closed sessions, every reply received, each recipient stored once', async (transport) => {
  const before = (await deliveredFiles(srv.root)).length
  for (let run = 0; run < 10; run++) {
    const replies = await halfCloseSession(transport === 'tcp' ? srv.port : srv.socketPath, `${transport} run ${run}`)
    // 220, LHLO, MAIL, RCPT, RCPT, 354, then one reply per recipient.
    expect(replies.map((r) => `${r.code} ${r.enhanced ?? ''}`.trim()), `run ${run}`).toEqual([
      '220',
      '250',
      '250 2.1.0',
      '250 2.1.5',
      '250 2.1.5',
      '354',
      '250 2.0.0',
      '250 2.0.0',
    ])
  }
  const files = await deliveredFiles(srv.root)
  expect(files.length - before).toBe(20)
  for (const mailbox of ['example.com/one', 'example.com/two']) {
    const subjects = files.filter((f) => f.mailbox === mailbox && f.content.includes(`Subject: ${transport} run`))
    const runs = subjects.map((f) => Number(/Subject: \w+ run (\d+)/.exec(f.content)![1])).sort((a, b) => a - b)
    expect(runs, mailbox).toEqual(Array.from({length: 10}, (_, i) => i))
  }
})
