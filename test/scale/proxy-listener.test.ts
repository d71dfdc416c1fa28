/**
 * `serve --proxy-listen`: a listener whose connections start with a PROXY protocol header (v1 or v2). The real
 * client named by the header shows in the Received header, the session.opened event (with the balancer as
 * proxiedBy) and the session log line; LOCAL (a balancer's health check) keeps the connection's own address;
 * a malformed header, no header, or a connection from an untrusted network is refused with a log line and
 * closed before any greeting. The ordinary --listen listener is unaffected.
 */
import {afterEach, describe, expect, test} from 'vitest'
import {CidrList, encodeProxyV2} from '../../src/net/proxy-protocol.js'
import type {SessionOpenedEvent} from '../../src/protocol/events.js'
import {deliveredFiles, RawSession, startServe, type TestServer} from '../support/serve.js'

let server: TestServer | undefined
afterEach(async () => {
  if (server) {
    await server.stop()
    await server.cleanup()
  }
  server = undefined
})

async function start(trusted = ['127.0.0.1'], headerTimeoutMs?: number): Promise<{s: TestServer; port: number}> {
  const s = await startServe({proxy: {listen: [{kind: 'tcp', host: '127.0.0.1', port: 0}], trusted: new CidrList(trusted), headerTimeoutMs}})
  server = s
  const l = s.server.listeners.find((x) => x.proxy)!
  return {s, port: l.target.kind === 'tcp' ? l.target.port : 0}
}

const TRANSACTION = 'LHLO balanced.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<rcpt@example.com>\r\nDATA\r\n'

/** Runs one delivery on a connection whose header was already sent; returns the stored file. */
async function deliver(c: RawSession, s: TestServer): Promise<string> {
  await c.waitReplies(1)
  expect(c.replies[0]!.code).toBe(220)
  c.write(TRANSACTION)
  await c.waitReplies(5)
  c.write('Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n')
  await c.waitReplies(7)
  expect(c.replies.map((r) => r.code)).toEqual([220, 250, 250, 250, 354, 250, 221])
  const files = await deliveredFiles(s.root)
  expect(files).toHaveLength(1)
  return files[0]!.content
}

function opened(s: TestServer): SessionOpenedEvent[] {
  return s.events.filter((e): e is SessionOpenedEvent => e.type === 'session.opened')
}

describe('PROXY protocol listener', () => {
  test('v2: the real client is in Received, the event (with the balancer) and the session log', async () => {
    const {s, port} = await start()
    const c = await RawSession.open(port)
    c.write(encodeProxyV2({command: 'PROXY', source: {address: '203.0.113.9', port: 4242}, destination: {address: '127.0.0.1', port}}))
    const file = await deliver(c, s)
    expect(file).toMatch(/^Received: from balanced\.example \(203\.0\.113\.9/m)
    await c.waitClosed()
    const ev = opened(s)
    expect(ev).toHaveLength(1)
    expect(ev[0]!.peer).toBe('203.0.113.9:4242')
    expect(ev[0]!.proxiedBy).toMatch(/^127\.0\.0\.1:\d+$/)
    await expect.poll(() => s.logs.find((l) => l.includes('"event":"session"'))).toContain('"client":"203.0.113.9:4242"')
  })

  test('v1 sent one byte per write, IPv6 client', async () => {
    const {s, port} = await start()
    const c = await RawSession.open(port)
    for (const b of Buffer.from(`PROXY TCP6 2001:db8::7 ::1 5555 ${port}\r\n`)) c.write(Buffer.from([b]))
    const file = await deliver(c, s)
    expect(file).toMatch(/^Received: from balanced\.example \(2001:db8::7/m)
    expect(opened(s)[0]!.peer).toBe('2001:db8::7:5555')
  })

  test('bytes after the header in the same packet reach the session', async () => {
    const {s, port} = await start()
    const c = await RawSession.open(port)
    c.write(Buffer.concat([encodeProxyV2({command: 'PROXY', source: {address: '198.51.100.1', port: 1}, destination: {address: '127.0.0.1', port}}), Buffer.from('NOOP\r\n')]))
    await c.waitReplies(2)
    expect(c.replies.map((r) => r.code)).toEqual([220, 250])
    expect(opened(s)[0]!.peer).toBe('198.51.100.1:1')
  })

  test('LOCAL (health check) keeps the connection address', async () => {
    const {s, port} = await start()
    const c = await RawSession.open(port)
    c.write(encodeProxyV2({command: 'LOCAL'}))
    await c.waitReplies(1)
    expect(c.replies[0]!.code).toBe(220)
    expect(opened(s)[0]!.peer).toMatch(/^127\.0\.0\.1:\d+$/)
  })

  test.each([
    ['an LMTP command instead of a header', Buffer.from('LHLO x\r\n'), /PROXY header from 127\.0\.0\.1:\d+ refused: no PROXY protocol header/],
    ['a malformed v1 line', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n'), /refused: PROXY v1 ports out of range/],
    ['a v2 header of version 1', Buffer.concat([encodeProxyV2({command: 'LOCAL'}).subarray(0, 12), Buffer.from([0x11, 0, 0, 0])]), /refused: PROXY v2 header with version 1/],
  ])('%s: refused with a log line, closed before any greeting', async (_name, bytes, logged) => {
    const {s, port} = await start()
    const c = await RawSession.open(port)
    c.write(bytes)
    await c.waitClosed()
    expect(c.replies).toEqual([])
    expect(s.logs.some((l) => logged.test(l))).toBe(true)
    expect(opened(s)).toEqual([])
  })

  test('a connection from an untrusted network is refused at once', async () => {
    const {s, port} = await start(['10.0.0.0/8'])
    const c = await RawSession.open(port)
    await c.waitClosed()
    expect(c.replies).toEqual([])
    expect(s.logs.some((l) => /connection from 127\.0\.0\.1:\d+ refused: not in --proxy-protocol-from \(10\.0\.0\.0\/8\)/.test(l))).toBe(true)
  })

  test('no header within the limit: refused and closed', async () => {
    const {s, port} = await start(['127.0.0.1'], 1)
    const c = await RawSession.open(port)
    await c.waitClosed()
    expect(c.replies).toEqual([])
    expect(s.logs.some((l) => /no PROXY header from 127\.0\.0\.1:\d+ within 1 ms/.test(l))).toBe(true)
  })

  test('the ordinary listener still greets at once and needs no header', async () => {
    const {s} = await start()
    const c = await RawSession.open(s.port)
    await c.waitReplies(1)
    expect(c.replies[0]!.code).toBe(220)
  })
})
