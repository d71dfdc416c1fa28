import {readFileSync, readdirSync} from 'node:fs'
import path from 'node:path'
import {describe, expect, test} from 'vitest'
import {R} from '../../src/protocol/replies.js'
import {formatReply} from '../../src/protocol/reply.js'
import {ServerSession} from '../../src/protocol/server-session.js'
import {MemoryBackend} from '../support/memory-backend.js'
import {parseTranscript, runTranscript} from '../support/transcript.js'

const dir = path.join(import.meta.dirname, '..', 'fixtures', 'session')

function load(name: string): string {
  return readFileSync(path.join(dir, name), 'utf8').replace(/^@include (\S+)$/gm, (_m, f: string) =>
    readFileSync(path.join(dir, f), 'utf8').trimEnd(),
  )
}

const fixtures = readdirSync(dir).filter((f) => f.endsWith('.txt'))

describe('session transcripts', () => {
  for (const file of fixtures) {
    for (const split of ['whole', 'bytes'] as const) {
      test(`${file} (${split})`, async () => {
        const t = parseTranscript(load(file))
        const {outputs, closedAt} = await runTranscript(t, split)
        t.steps.forEach((step, i) => {
          expect(outputs[i], `step ${i}: after sending ${JSON.stringify(step.send.toString())}`).toEqual(step.expect)
        })
        const expectClosed = t.steps.map((s, i) => (s.closed ? i : -1)).filter((i) => i >= 0)
        expect(closedAt.slice(0, 1)).toEqual(expectClosed.slice(0, 1))
      })
    }
  }
})

describe('session behaviour beyond transcripts', () => {
  test('basic delivery stores the un-stuffed body for each recipient', async () => {
    const t = parseTranscript(load('basic-delivery.txt'))
    await runTranscript(t, 'whole')
    expect(t.backend.delivered.map((d) => d.recipient)).toEqual(['alice@example.com', 'bob@example.com'])
    expect(t.backend.delivered[0]!.body.toString()).toBe('Subject: hi\r\n\r\n.leading dot is un-stuffed\r\n')
  })

  test('smuggled content never yields a second delivery', async () => {
    const t = parseTranscript(load('smuggling.txt'))
    await runTranscript(t, 'whole')
    expect(t.backend.delivered).toEqual([])
    expect(t.backend.spools.every((s) => s.discarded)).toBe(true)
  })

  test('per-recipient replies go out in RCPT order even when results arrive out of order', async () => {
    const backend = new MemoryBackend()
    backend.delays.set('slow@example.com', 30)
    let out = ''
    const s = new ServerSession({sessionId: 's', hostname: 'mx.test', peer: 'p'}, backend, {
      write: (d) => {
        out += d
      },
      close: () => {},
    })
    await s.receive(
      Buffer.from(
        'LHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<slow@example.com>\r\nRCPT TO:<fast@example.com>\r\nDATA\r\nx\r\n.\r\n',
      ),
    )
    const lines = out.trimEnd().split('\r\n')
    expect(lines.slice(-2)).toEqual(['250 2.0.0 <slow@example.com> delivered', '250 2.0.0 <fast@example.com> delivered'])
  })

  test('a backend that throws still yields one temporary failure per recipient', async () => {
    const backend = new MemoryBackend()
    backend.throwOnDeliver = true
    let out = ''
    const s = new ServerSession({sessionId: 's', hostname: 'mx.test', peer: 'p'}, backend, {
      write: (d) => {
        out += d
      },
      close: () => {},
    })
    await s.receive(
      Buffer.from('LHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@d.e>\r\nRCPT TO:<y@d.e>\r\nDATA\r\nx\r\n.\r\nNOOP\r\n'),
    )
    const lines = out.trimEnd().split('\r\n')
    expect(lines.slice(-3)).toEqual([
      '451 4.3.0 <x@d.e> local error in delivery, try again later',
      '451 4.3.0 <y@d.e> local error in delivery, try again later',
      '250 2.0.0 ok',
    ])
  })

  test('recipients beyond the limit get 452 4.5.3 and the accepted ones are delivered', async () => {
    const backend = new MemoryBackend()
    let out = ''
    const s = new ServerSession({sessionId: 's', hostname: 'mx.test', peer: 'p', maxRecipients: 100}, backend, {
      write: (d) => {
        out += d
      },
      close: () => {},
    })
    let cmds = 'LHLO c\r\nMAIL FROM:<a@b.c>\r\n'
    for (let i = 0; i < 101; i++) cmds += `RCPT TO:<u${i}@d.e>\r\n`
    await s.receive(Buffer.from(`${cmds}DATA\r\nx\r\n.\r\n`))
    const lines = out.trimEnd().split('\r\n')
    expect(lines.filter((l) => l === formatReply(R.tooManyRecipients).trimEnd())).toHaveLength(1)
    expect(backend.delivered).toHaveLength(100)
  })

  test('an overlong command line is answered 500 and the session stays in step', async () => {
    let out = ''
    const s = new ServerSession({sessionId: 's', hostname: 'mx.test', peer: 'p'}, new MemoryBackend(), {
      write: (d) => {
        out += d
      },
      close: () => {},
    })
    await s.receive(Buffer.from(`NOOP ${'x'.repeat(100_000)}\r\nNOOP\r\n`))
    expect(out.trimEnd().split('\r\n').slice(-2)).toEqual(['500 5.5.2 line too long', '250 2.0.0 ok'])
  })

  test('shutdown closes an idle session with 421 4.3.2', () => {
    let out = ''
    let closed = false
    const s = new ServerSession({sessionId: 's', hostname: 'mx.test', peer: 'p'}, new MemoryBackend(), {
      write: (d) => {
        out += d
      },
      close: () => {
        closed = true
      },
    })
    expect(s.shutdown()).toBe(true)
    expect(out).toBe(formatReply(R.shuttingDown))
    expect(closed).toBe(true)
  })
})
