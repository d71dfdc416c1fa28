/**
 * STARTTLS injection variants (CVE-2011-0411 class) beyond the basic case in test/server/serve-loopback: clear
 * text that follows STARTTLS in the same packet or in a later one, STARTTLS inside a transaction, out of
 * sequence, with arguments, and a second STARTTLS inside TLS. Nothing sent in clear text after STARTTLS may be
 * obeyed, and the session must start over after the handshake.
 */
import {mkdtemp, rm} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import {afterAll, beforeAll, describe, expect, test} from 'vitest'
import {RawSession, type TestServer, deliveredFiles, startServe} from '../support/serve.js'
import {makeTestCertificate} from '../support/tls-cert.js'
import {brief} from './helpers.js'

let srv: TestServer
let certDir = ''
beforeAll(async () => {
  certDir = await mkdtemp(path.join(os.tmpdir(), 'lmtp-tls-'))
  const cert = makeTestCertificate(certDir)
  srv = await startServe({tls: {cert: cert.cert, key: cert.key}})
})
afterAll(async () => {
  await srv.stop()
  await srv.cleanup()
  await rm(certDir, {recursive: true, force: true})
})

/** Upgrades a raw session and returns a line-collecting TLS socket, or the error the handshake ended with. */
async function upgrade(s: RawSession): Promise<{secure: tls.TLSSocket; text: () => string} | {error: Error}> {
  const secure = tls.connect({socket: s.socket, rejectUnauthorized: false})
  let got = ''
  secure.on('data', (d) => {
    got += d.toString()
  })
  try {
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve())
      secure.once('error', reject)
      secure.once('close', () => reject(new Error('closed during the handshake')))
    })
  } catch (err) {
    return {error: err as Error}
  }
  secure.on('error', () => {})
  return {secure, text: () => got}
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 10))
}

describe('STARTTLS injection variants', () => {
  test('a whole transaction pipelined behind STARTTLS is never obeyed', async () => {
    const s = await RawSession.open(srv.port)
    await s.waitReplies(1)
    s.write('LHLO t\r\n')
    await s.waitReplies(2)
    s.write('STARTTLS\r\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: injected\r\n\r\nx\r\n.\r\n')
    await s.waitReplies(3)
    expect(brief(s.replies.slice(2))).toEqual(['220 2.0.0'])
    const up = await upgrade(s)
    if ('error' in up) throw up.error
    up.secure.write('RSET\r\nQUIT\r\n')
    await until(() => up.text().includes('221'))
    expect(up.text().split('\r\n').filter(Boolean)).toEqual(['250 2.0.0 reset ok', '221 2.0.0 closing connection'])
    up.secure.destroy()
    expect(await deliveredFiles(srv.root)).toEqual([])
  })

  test('clear text arriving after the 220 but before the handshake breaks the handshake, obeys nothing', async () => {
    const s = await RawSession.open(srv.port)
    await s.waitReplies(1)
    s.write('LHLO t\r\n')
    await s.waitReplies(2)
    s.write('STARTTLS\r\n')
    await s.waitReplies(3)
    s.write('MAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.com>\r\n')
    await s.waitClosed(10_000)
    expect(s.replies).toHaveLength(3)
    expect(await deliveredFiles(srv.root)).toEqual([])
  })

  test('STARTTLS inside a transaction: the transaction is gone after the handshake', async () => {
    const s = await RawSession.open(srv.port)
    await s.waitReplies(1)
    s.write('LHLO t\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.com>\r\nSTARTTLS\r\n')
    await s.waitReplies(5)
    expect(brief(s.replies.slice(2))).toEqual(['250 2.1.0', '250 2.1.5', '220 2.0.0'])
    const up = await upgrade(s)
    if ('error' in up) throw up.error
    up.secure.write('DATA\r\nRCPT TO:<x@example.com>\r\nLHLO again\r\nSTARTTLS\r\nDATA\r\nQUIT\r\n')
    await until(() => up.text().includes('221 '))
    const lines = up.text().split('\r\n').filter((l) => !/^250[- ](?!2\.)/.test(l) && l !== '')
    // DATA and RCPT need LHLO first, LHLO no longer offers STARTTLS, a second STARTTLS is refused, DATA needs MAIL.
    expect(lines).toEqual([
      '503 5.5.1 send LHLO first',
      '503 5.5.1 send LHLO first',
      '503 5.5.1 TLS already active',
      '503 5.5.1 send MAIL FROM first',
      '221 2.0.0 closing connection',
    ])
    expect(up.text()).not.toContain('STARTTLS')
    up.secure.destroy()
  })

  test.each([
    ['before LHLO', 'STARTTLS\r\n', '503 5.5.1'],
    ['with an argument', 'LHLO t\r\nSTARTTLS now\r\n', '501 5.5.4'],
  ])('STARTTLS %s is refused and the session stays in clear text', async (_name, send, code) => {
    const s = await RawSession.open(srv.port)
    await s.waitReplies(1)
    s.write(`${send}NOOP\r\n`)
    const n = send.startsWith('LHLO') ? 4 : 3
    const r = await s.waitReplies(n)
    expect(brief(r.slice(n - 2))).toEqual([code, '250 2.0.0'])
    s.close()
  })
})
