/**
 * The client against a scripted hostile server: connections closed mid-replies, replies without CRLF, a 10 MB
 * reply line, a drip of one byte per second, replies before the command, a greeting that never comes. The
 * client must give correct per-recipient outcomes (a recipient is delivered only on its own 2xx after the body;
 * anything unanswered is deferred), stay within bounded memory, fail with a clear error, and never hang past
 * its timeouts. No assertion here is on elapsed time: a wait that ends is identified by WHICH timer fired
 * (LmtpClientError.timer, or the text of a recipient's synthetic result), and a wait that must not happen is
 * shown not to by the outcome naming its real cause (a lost connection, the reply-count marker).
 */
import net from 'node:net'
import {afterEach, describe, expect, test} from 'vitest'
import {LmtpClient, LmtpClientError, type TransactionResult} from '../../src/protocol/client.js'
import {type HostileIo, type HostileServer, LHLO_OK, normalEnvelope, startHostileServer} from './hostile-server.js'

const T = 1500
const TIMEOUTS = {greeting: T, command: T, dataInit: T, dataBlock: T, dataEnd: T}
let srv: HostileServer | undefined
afterEach(async () => {
  await srv?.close()
  srv = undefined
})

async function connect(port: number): Promise<LmtpClient> {
  const socket = net.connect({host: '127.0.0.1', port})
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve())
    socket.once('error', reject)
  })
  return new LmtpClient(socket, {timeouts: TIMEOUTS})
}

/** Runs a whole session (greeting, LHLO, one transaction). */
async function session(script: (io: HostileIo) => Promise<void>, to = ['a@x.test', 'b@x.test', 'c@x.test'], body = Buffer.from('Subject: t\r\n\r\nhello\r\n')) {
  srv = await startHostileServer(script)
  const client = await connect(srv.port)
  let result: TransactionResult | undefined
  let error: LmtpClientError | undefined
  try {
    await client.start()
    await client.lhlo('client.test')
    result = await client.send({from: 's@x.test', to, body: [body], verifyReplyCount: true})
  } catch (err) {
    if (!(err instanceof LmtpClientError)) throw err
    error = err
  } finally {
    client.close()
  }
  return {result, error}
}

const outcomes = (r: TransactionResult | undefined) => r?.recipients.map((x) => `${x.outcome}${x.synthetic ? '*' : ''}`)

describe('hostile server: connection closed part-way', () => {
  test('closed after 1 of 3 replies after the body: 1 delivered, 2 deferred', async () => {
    const {result} = await session(async (io) => {
      await normalEnvelope(io, 3)
      await io.line()
      io.write('354 go\r\n')
      await io.dataBody()
      await io.writeAll('250 2.0.0 <a@x.test> delivered\r\n')
      io.socket.destroy()
    })
    expect(outcomes(result)).toEqual(['delivered', 'deferred*', 'deferred*'])
    // Ended by the close, not by a timer.
    expect(result!.recipients[1]!.text).toBe('connection lost after 1 of 3 replies')
  })

  test('closed in the middle of a reply line: the half line counts for nothing', async () => {
    const {result} = await session(async (io) => {
      await normalEnvelope(io, 2)
      await io.line()
      io.write('354 go\r\n')
      await io.dataBody()
      await io.writeAll('250 2.0.0 <a@x.test> deliv')
      io.socket.destroy()
    }, ['a@x.test', 'b@x.test'])
    expect(outcomes(result)).toEqual(['deferred*', 'deferred*'])
  })

  test('closed in the middle of a multi-line reply after the body', async () => {
    const {result} = await session(async (io) => {
      await normalEnvelope(io, 2)
      await io.line()
      io.write('354 go\r\n')
      await io.dataBody()
      await io.writeAll('250-2.0.0 first line\r\n250-2.0.0 second\r\n')
      io.socket.destroy()
    }, ['a@x.test', 'b@x.test'])
    expect(outcomes(result)).toEqual(['deferred*', 'deferred*'])
  })

  test('closed during the RCPT replies: every recipient deferred, nothing delivered', async () => {
    const {result, error} = await session(async (io) => {
      io.write('220 h\r\n')
      await io.line()
      io.write(LHLO_OK)
      await io.line()
      await io.writeAll('250 2.1.0 ok\r\n250 2.1.5 ok\r\n')
      io.socket.destroy()
    })
    expect(error).toBeUndefined()
    expect(outcomes(result)).toEqual(['deferred', 'deferred', 'deferred'].map((o) => `${o}*`))
  })

  test('closed right after 354: every recipient deferred', async () => {
    const {result} = await session(async (io) => {
      await normalEnvelope(io, 3)
      await io.line()
      await io.writeAll('354 go\r\n')
      io.socket.destroy()
    })
    expect(result!.recipients.every((r) => r.outcome === 'deferred')).toBe(true)
  })
})

describe('hostile server: malformed and oversized replies', () => {
  test('a greeting without CRLF, then silence: timeout error within the greeting timeout', async () => {
    const {error} = await session(async (io) => {
      io.write('220 no line end')
      await io.closed
    })
    expect(error?.kind).toBe('timeout')
    expect(error?.timer).toBe('greeting')
    expect(error?.message).toMatch(/greeting/)
  })

  test('a reply without CRLF, then close: connection-lost, recipients deferred', async () => {
    const {result} = await session(async (io) => {
      await normalEnvelope(io, 1)
      await io.line()
      io.write('354 go\r\n')
      await io.dataBody()
      await io.writeAll('250 2.0.0 delivered but no line end')
      io.socket.end()
    }, ['a@x.test'])
    expect(outcomes(result)).toEqual(['deferred*'])
  })

  test('replies ending in a bare LF are read as replies (lenient reading, strict writing)', async () => {
    const {result} = await session(async (io) => {
      io.write('220 h\n')
      await io.line()
      io.write(LHLO_OK.replace(/\r\n/g, '\n'))
      await io.line()
      io.write('250 2.1.0 ok\n')
      await io.line()
      io.write('250 2.1.5 ok\n')
      await io.line()
      io.write('354 go\n')
      await io.dataBody()
      io.write('250 2.0.0 ok\n')
      await io.line()
      io.write(LHLO_OK)
      await io.closed
    }, ['a@x.test'])
    expect(outcomes(result)).toEqual(['delivered'])
  })

  test('a 10 MB reply line: a protocol error after at most a few kilobytes are buffered', async () => {
    const before = process.memoryUsage().arrayBuffers
    const {error} = await session(async (io) => {
      io.write('220 h\r\n')
      await io.line()
      const chunk = Buffer.alloc(64 * 1024, 0x41)
      await io.writeAll('250-')
      for (let sent = 0; sent < 10 * 1024 * 1024 && !io.socket.destroyed; sent += chunk.length) await io.writeAll(chunk)
      await io.writeAll('\r\n250 end\r\n')
    })
    expect(error?.kind).toBe('protocol')
    expect(error?.message).toMatch(/longer than/)
    expect(error?.timer).toBeUndefined()
    // The client hung up early: the server could not push the whole 10 MB through.
    expect(srv!.bytesWritten()).toBeLessThan(10 * 1024 * 1024)
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(32 * 1024 * 1024)
  })

  test('an endless multi-line reply of short lines: a protocol error, not a growing buffer', async () => {
    const {error} = await session(async (io) => {
      io.write('220 h\r\n')
      await io.line()
      const chunk = Buffer.from('250-x\r\n'.repeat(10_000))
      for (let sent = 0; sent < 10 * 1024 * 1024 && !io.socket.destroyed; sent += chunk.length) await io.writeAll(chunk)
    })
    expect(error?.kind).toBe('protocol')
    expect(error?.message).toMatch(/lines/)
  })

  test('garbage instead of a reply: a protocol error naming it', async () => {
    const {error} = await session(async (io) => {
      io.write('HTTP/1.1 400 Bad Request\r\n\r\n')
      await io.closed
    })
    expect(error?.kind).toBe('protocol')
    expect(error?.message).toMatch(/not a reply/)
  })
})

describe('hostile server: slow and silent', () => {
  test('a greeting that never comes: timeout after the greeting timeout, not later', async () => {
    const {error} = await session(async (io) => {
      await io.closed
    })
    expect(error?.kind).toBe('timeout')
    expect(error?.timer).toBe('greeting')
  })

  test('a greeting dripped one byte per second: the client gives up at its timeout', async () => {
    const {error} = await session(async (io) => {
      for (const ch of '220 dripping greeting\r\n') {
        if (io.socket.destroyed) return
        io.write(ch)
        await new Promise((r) => setTimeout(r, 1000))
      }
    })
    expect(error?.kind).toBe('timeout')
    expect(error?.timer).toBe('greeting')
  })

  test('per-recipient replies dripped: the answered ones count, the rest are deferred at the timeout', async () => {
    const {result} = await session(async (io) => {
      await normalEnvelope(io, 2)
      await io.line()
      io.write('354 go\r\n')
      await io.dataBody()
      io.write('250 2.0.0 <a@x.test> delivered\r\n')
      for (const ch of '250 2.0.0 <b@x.test> delivered\r\n') {
        if (io.socket.destroyed) return
        io.write(ch)
        await new Promise((r) => setTimeout(r, 1000))
      }
    }, ['a@x.test', 'b@x.test'])
    expect(outcomes(result)).toEqual(['delivered', 'deferred*'])
    // The per-recipient timer (dataEnd, restarted after each reply) fired, for the second recipient.
    expect(result!.recipients[1]!.text).toBe(`no reply from the server for recipient 2 of 2 after the body within ${T / 1000}s`)
  })

  test('a server that never reads the body: the data-block timeout ends it', async () => {
    // Larger than any socket buffer, so a write stays blocked.
    const big = Buffer.alloc(32 * 1024 * 1024, 'x\r\n')
    const {result} = await session(async (io) => {
      await normalEnvelope(io, 1)
      await io.line()
      io.write('354 go\r\n')
      io.socket.pause()
      await io.closed
    }, ['a@x.test'], big)
    expect(outcomes(result)).toEqual(['deferred*'])
    expect(result!.recipients[0]!.text).toBe(`the server accepted no data for ${T / 1000}s`)
  })
})

describe('hostile server: replies out of turn', () => {
  test('a reply before LHLO was sent: a protocol error, never a delivery', async () => {
    const {result, error} = await session(async (io) => {
      // An extra 250 right behind the greeting, before any command.
      io.write('220 h\r\n250 2.0.0 early\r\n')
      for (;;) {
        const l = await io.line()
        if (l.startsWith('LHLO')) io.write(LHLO_OK)
        else if (l.startsWith('MAIL')) io.write('250 2.1.0 ok\r\n')
        else if (l.startsWith('RCPT')) io.write('250 2.1.5 ok\r\n')
        else if (l === 'DATA') io.write('354 go\r\n')
        else io.write('250 2.0.0 ok\r\n')
      }
    })
    expect(result?.recipients.some((r) => r.outcome === 'delivered') ?? false).toBe(false)
    expect(error?.kind ?? (result?.violation ? 'protocol' : undefined)).toBe('protocol')
  })

  test('per-recipient replies sent before the body was: a violation, every recipient deferred', async () => {
    const {result} = await session(async (io) => {
      await normalEnvelope(io, 2)
      await io.line()
      // "Delivered" before a single octet of the message arrived.
      io.write('354 go\r\n250 2.0.0 <a@x.test> delivered\r\n250 2.0.0 <b@x.test> delivered\r\n')
      await io.dataBody()
      io.write('451 4.3.0 failed\r\n451 4.3.0 failed\r\n')
      await io.line()
      io.write(LHLO_OK)
      await io.closed
    }, ['a@x.test', 'b@x.test'])
    expect(result!.violation).toBeDefined()
    expect(result!.recipients.map((r) => r.outcome)).toEqual(['deferred', 'deferred'])
  })

  test('250 to DATA instead of 354: a violation, nobody counted as delivered', async () => {
    const {result} = await session(async (io) => {
      await normalEnvelope(io, 2)
      await io.line()
      io.write('250 2.0.0 sure\r\n')
      await io.closed
    }, ['a@x.test', 'b@x.test'])
    expect(result!.recipients.map((r) => r.outcome)).toEqual(['deferred', 'deferred'])
    expect(result!.violation).toBeDefined()
  })

  test('more replies after the body than recipients: a violation is reported', async () => {
    const {result} = await session(async (io) => {
      await normalEnvelope(io, 1)
      await io.line()
      io.write('354 go\r\n')
      await io.dataBody()
      io.write('250 2.0.0 ok\r\n250 2.0.0 extra\r\n')
      await io.line()
      io.write(LHLO_OK)
      await io.closed
    }, ['a@x.test'])
    expect(result!.violation).toMatch(/more replies/)
  })

  test('fewer replies after the body than recipients: the missing one is deferred at once', async () => {
    const {result} = await session(async (io) => {
      await normalEnvelope(io, 2)
      await io.line()
      io.write('354 go\r\n')
      await io.dataBody()
      io.write('250 2.0.0 ok\r\n')
      await io.line()
      io.write(LHLO_OK)
      await io.closed
    }, ['a@x.test', 'b@x.test'])
    expect(outcomes(result)).toEqual(['delivered', 'deferred*'])
    expect(result!.violation).toMatch(/1 replies after the body for 2/)
    // Caught by the marker, not by a timer.
    expect(result!.recipients[1]!.text).toBe('the server sent no reply for this recipient')
  })
})
