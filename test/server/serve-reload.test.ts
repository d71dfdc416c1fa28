/**
 * SIGHUP under load, on a real `lmtp serve` process: sessions deliver continuously while the users file is
 * reloaded again and again (every other new version broken: the old one must stay in force), and the TLS
 * certificate is replaced. No session may be dropped and no delivery lost: every 250 has its file, every session
 * ends with our QUIT and the server's 221. The figures are printed for the record.
 */
import {X509Certificate} from 'node:crypto'
import {mkdirSync, readdirSync, writeFileSync, copyFileSync} from 'node:fs'
import type net from 'node:net'
import path from 'node:path'
import tls from 'node:tls'
import {afterEach, beforeEach, expect, test} from 'vitest'
import {killAndWait, spawnServe} from '../reliability/serve-process.js'
import {LineWatch} from '../support/line-watch.js'
import {type TempDir, tempDir} from '../support/peers/proc.js'
import {RawSession} from '../support/serve.js'
import {makeTestCertificate} from '../support/tls-cert.js'

const SESSIONS = 8
const MESSAGES_PER_SESSION = 40
const RECIPIENTS = ['alice@example.com', 'bob@example.com']

let dir: TempDir
beforeEach(async () => {
  dir = await tempDir('lmtp-reload')
})
afterEach(async () => {
  await dir.cleanup()
})

/** One session: LHLO, MESSAGES_PER_SESSION transactions to both recipients, QUIT. Returns what it saw. */
async function deliverMany(socketPath: string, id: number): Promise<{delivered: number; failures: string[]; quitOk: boolean}> {
  const s = await RawSession.open(socketPath)
  let expected = 1
  await s.waitReplies(expected)
  s.write('LHLO load\r\n')
  await s.waitReplies(++expected)
  let delivered = 0
  const failures: string[] = []
  for (let m = 0; m < MESSAGES_PER_SESSION; m++) {
    s.write(`MAIL FROM:<load@example.org>\r\n${RECIPIENTS.map((r) => `RCPT TO:<${r}>\r\n`).join('')}DATA\r\n`)
    expected += 2 + RECIPIENTS.length
    const envelope = (await s.waitReplies(expected)).slice(-(2 + RECIPIENTS.length))
    if (envelope.some((r) => r.code >= 400)) {
      failures.push(`session ${id} message ${m}: ${envelope.map((r) => r.code).join(' ')}`)
      break
    }
    s.write(`Subject: load ${id}.${m}\r\n\r\nbody ${id}.${m}\r\n.\r\n`)
    expected += RECIPIENTS.length
    const results = (await s.waitReplies(expected)).slice(-RECIPIENTS.length)
    for (const r of results) {
      if (r.code === 250) delivered++
      else failures.push(`session ${id} message ${m}: ${r.code} ${r.lines[0]}`)
    }
  }
  s.write('QUIT\r\n')
  const last = (await s.waitReplies(++expected)).at(-1)
  s.close()
  return {delivered, failures, quitOk: last?.code === 221 && s.replies.length === expected}
}

/** The SHA-256 fingerprint of the certificate a fresh STARTTLS session gets. */
async function starttlsFingerprint(port: number): Promise<string> {
  const s = await RawSession.open(port)
  s.write('LHLO t\r\nSTARTTLS\r\n')
  const replies = await s.waitReplies(3)
  expect(replies[2]!.code).toBe(220)
  s.socket.removeAllListeners('data')
  const secure = tls.connect({socket: s.socket as net.Socket, rejectUnauthorized: false})
  await new Promise<void>((resolve, reject) => {
    secure.once('secureConnect', () => resolve())
    secure.once('error', reject)
  })
  const fp = secure.getPeerX509Certificate()!.fingerprint256
  secure.destroy()
  return fp
}

test('SIGHUP under load: users file and certificate reloaded, no session dropped, no delivery lost', async () => {
  const users = path.join(dir.path, 'users')
  writeFileSync(users, `${RECIPIENTS.join('\n')}\n`)
  const certDirs = ['c1', 'c2'].map((d) => path.join(dir.path, d))
  for (const d of certDirs) mkdirSync(d)
  const [first, second] = certDirs.map((d) => makeTestCertificate(d))
  const certFile = path.join(dir.path, 'cert.pem')
  const keyFile = path.join(dir.path, 'key.pem')
  copyFileSync(first!.certFile, certFile)
  copyFileSync(first!.keyFile, keyFile)
  const socket = path.join(dir.path, 'lmtp.sock')
  const maildir = path.join(dir.path, 'Maildir')
  const p = await spawnServe(['--maildir', maildir, '--listen', `unix:${socket}`, '--listen', '127.0.0.1:0', '--users', users, '--tls-cert', certFile, '--tls-key', keyFile, '--no-events'])
  const log = new LineWatch(p.child.stdout!)
  try {
    const port = Number(/127\.0\.0\.1:(\d+)/.exec(p.tail.find((l) => l.includes('"event":"listening"'))!)![1])
    expect(await starttlsFingerprint(port)).toBe(new X509Certificate(first!.cert).fingerprint256)

    let loadDone = false
    const load = Promise.all(Array.from({length: SESSIONS}, (_, i) => deliverMany(socket, i))).finally(() => {
      loadDone = true
    })
    // Reload as often as the load lasts (each waits for the previous one's log line), at least 4 times.
    let reloads = 0
    let broken = 0
    while (!loadDone || reloads < 4) {
      const bad = reloads % 2 === 1
      writeFileSync(users, bad ? `${RECIPIENTS.join('\n')}\nnot an address ===\n` : `${RECIPIENTS.join('\n')}\nextra${reloads}@example.com\n`)
      const from = log.lines.length
      process.kill(p.pid, 'SIGHUP')
      const line = await log.next((l) => l.includes('"message":"reloaded:'), from)
      if (bad) {
        expect(log.lines.slice(from).some((l) => l.includes('keeping the previous one') && l.includes(`${users}:3`))).toBe(true)
        expect(line).toContain('1 kept')
        broken++
      } else {
        expect(line).toContain(`users file ${users} (3 mailboxes)`)
      }
      reloads++
    }
    const results = await load

    // The certificate: replaced on disk, then SIGHUP; a new STARTTLS session gets the new one.
    copyFileSync(second!.certFile, certFile)
    copyFileSync(second!.keyFile, keyFile)
    const from = log.lines.length
    process.kill(p.pid, 'SIGHUP')
    expect(await log.next((l) => l.includes('"message":"reloaded:'), from)).toContain(`TLS certificate ${certFile}`)
    expect(await starttlsFingerprint(port)).toBe(new X509Certificate(second!.cert).fingerprint256)

    const delivered = results.reduce((n, r) => n + r.delivered, 0)
    const files = RECIPIENTS.reduce((n, r) => n + readdirSync(path.join(maildir, 'example.com', r.split('@')[0]!, 'new')).length, 0)
    const dropped = results.filter((r) => !r.quitOk).length
    console.log(
      `reload under load: ${SESSIONS} sessions, ${reloads} SIGHUP reloads during the load (${broken} with a broken users file kept out), ` +
        `${delivered} recipients acknowledged 250, ${files} files on disk, ${dropped} sessions dropped`,
    )
    expect(results.flatMap((r) => r.failures)).toEqual([])
    expect(dropped).toBe(0)
    expect(delivered).toBe(SESSIONS * MESSAGES_PER_SESSION * RECIPIENTS.length)
    expect(files).toBe(delivered)
  } finally {
    await killAndWait(p, 'SIGTERM')
  }
}, 240_000)
