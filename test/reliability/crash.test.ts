/**
 * Crash safety of `lmtp serve`: a separate server process under load (8 concurrent client sessions, mixed
 * recipients including a quota'd one and an unknown one, DATA and BDAT) is SIGKILLed at random moments, at
 * least 20 times, and restarted each time on the same Maildir and the same socket. The clients record every 250
 * they received together with the exact bytes they sent. Afterwards:
 * - every recipient that got a 250 has its message in new/ (or cur/), byte-identical to what was sent plus the
 *   three trace headers, stored with LF line ends;
 * - no file in new/ or cur/ is partial (each one is a whole message that some client sent);
 * - nothing is left in tmp/ or in the spool after a restart (cleanTmp at startup);
 * - the quota file (maildirsize) agrees with the files, or is rebuilt from them when read.
 * The seed is printed so that a failing run can be repeated with CRASH_SEED=<seed>.
 */
import {readdir, readFile, rm, mkdtemp, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {afterAll, describe, expect, test} from 'vitest'
import {readUsage, scanUsage} from '../../src/delivery/quota.js'
import {connectTarget} from '../../src/net/target.js'
import {LmtpClient, uniformTimeouts} from '../../src/protocol/client.js'
import {cliBuilt, killAndWait, prng, type ServeProcess, spawnServe} from './serve-process.js'

const KILLS = 20
const WORKERS = 8
const QUOTA = 4 * 1024 * 1024
const DOMAIN = 'example.com'
const KNOWN = ['alice', 'bob', 'carol', 'dave', 'erin']
const QUOTAED = 'quota'
const UNKNOWN = 'nobody'

const seed = Number(process.env.CRASH_SEED ?? Date.now() % 1_000_000)

/** What the clients sent and what they were told. */
interface Ledger {
  /** Message id -> the exact bytes given to the client (CRLF line ends). */
  sent: Map<string, Buffer>
  /** Every (message, recipient) that got a 250 after the body. */
  acked: {id: string; rcpt: string}[]
  transactions: number
  lostSessions: number
}

function makeMessage(id: string, rnd: () => number): Buffer {
  const lines = [`Message-ID: <${id}@crash.test>`, `Subject: crash test ${id}`, 'From: <sender@example.org>', '']
  // Mostly small messages, some large ones so that kills land inside long writes too.
  const big = rnd() < 0.25
  const target = big ? 50_000 + Math.floor(rnd() * 350_000) : 200 + Math.floor(rnd() * 4000)
  let size = 0
  let n = 0
  while (size < target) {
    const len = 1 + Math.floor(rnd() * 120)
    let line = `${id} ${n++} `.padEnd(len, String.fromCharCode(97 + Math.floor(rnd() * 26)))
    // Lines that start with a dot exercise dot-stuffing on the way in and un-stuffing on the way to disk.
    if (rnd() < 0.05) line = `.${line}`
    lines.push(line)
    size += line.length + 2
  }
  return Buffer.from(`${lines.join('\r\n')}\r\n`)
}

async function runWorker(
  w: number,
  socketPath: string,
  ledger: Ledger,
  stop: () => boolean,
  rnd: () => number,
  nextId: () => string,
): Promise<void> {
  while (!stop()) {
    let socket: import('node:net').Socket
    try {
      socket = await connectTarget({kind: 'unix', path: socketPath}, 2000)
    } catch {
      // The server is down (killed, restarting): try again shortly.
      await new Promise((r) => setTimeout(r, 25))
      continue
    }
    const client = new LmtpClient(socket, {timeouts: uniformTimeouts(20_000), sessionId: `w${w}`})
    try {
      await client.start()
      await client.lhlo(`worker${w}.crash.test`)
      for (let k = 0; k < 5 && !stop() && !client.closed; k++) {
        const id = nextId()
        const body = makeMessage(id, rnd)
        const pool = [...KNOWN, QUOTAED, QUOTAED, UNKNOWN]
        const to = new Set<string>()
        const want = 1 + Math.floor(rnd() * 4)
        while (to.size < want) to.add(`${pool[Math.floor(rnd() * pool.length)]}@${DOMAIN}`)
        ledger.sent.set(id, body)
        ledger.transactions++
        const res = await client.send({
          from: 'sender@example.org',
          to: [...to],
          body: [body],
          bdat: rnd() < 0.3,
          chunkSize: 16 * 1024,
        })
        for (const r of res.recipients) {
          if (r.stage === 'DATA' && r.code === 250) ledger.acked.push({id, rcpt: r.recipient})
        }
      }
      await client.quit()
    } catch {
      ledger.lostSessions++
      client.close()
    }
  }
}

/** Every message file in new/ and cur/ of every mailbox under the root, and what is left in tmp/. */
async function survey(root: string): Promise<{files: {mailbox: string; file: string}[]; tmpLeft: string[]}> {
  const files: {mailbox: string; file: string}[] = []
  const tmpLeft: string[] = []
  for (const local of await readdir(path.join(root, DOMAIN)).catch(() => [] as string[])) {
    const box = path.join(root, DOMAIN, local)
    for (const sub of ['new', 'cur']) {
      for (const f of await readdir(path.join(box, sub)).catch(() => [] as string[])) {
        files.push({mailbox: `${local}@${DOMAIN}`, file: path.join(box, sub, f)})
      }
    }
    for (const f of await readdir(path.join(box, 'tmp')).catch(() => [] as string[])) tmpLeft.push(path.join(box, 'tmp', f))
  }
  for (const f of await readdir(path.join(root, '.lmtp-spool')).catch(() => [] as string[])) tmpLeft.push(path.join('.lmtp-spool', f))
  return {files, tmpLeft}
}

const TRACE = /^Return-Path: <sender@example\.org>\nDelivered-To: ([^\n]+)\nReceived: from worker\d\.crash\.test \(unix\)\n\tby crash\.test with LMTP id [^\n]+\n\tfor <([^\n>]+)>; [^\n]+\n/

describe.skipIf(!cliBuilt())('crash safety: SIGKILL under load', () => {
  let dir = ''
  let current: ServeProcess | undefined
  afterAll(async () => {
    if (current) await killAndWait(current)
    if (dir) await rm(dir, {recursive: true, force: true})
  })

  test(`${KILLS} SIGKILLs under ${WORKERS} concurrent sessions lose nothing that was acknowledged`, {timeout: 300_000}, async () => {
    console.log(`[crash] seed ${seed} (repeat with CRASH_SEED=${seed})`)
    const rnd = prng(seed)
    dir = await mkdtemp(path.join(os.tmpdir(), 'lmtp-crash-'))
    const root = path.join(dir, 'Maildir')
    const socketPath = path.join(dir, 'lmtp.sock')
    const users = path.join(dir, 'users')
    await writeFile(users, `${KNOWN.map((u) => `${u}@${DOMAIN}`).join('\n')}\n${QUOTAED}@${DOMAIN} quota=${QUOTA}\n`)
    const args = ['--maildir', root, '--listen', `unix:${socketPath}`, '--users', users, '--hostname', 'crash.test', '--shutdown-grace', '5']

    const ledger: Ledger = {sent: new Map(), acked: [], transactions: 0, lostSessions: 0}
    let stopped = false
    let counter = 0
    current = await spawnServe(args)
    const workers = Array.from({length: WORKERS}, (_, w) =>
      runWorker(w, socketPath, ledger, () => stopped, prng(seed * 31 + w), () => `m${++counter}`),
    )
    const ackedBefore: number[] = []
    for (let k = 0; k < KILLS; k++) {
      // Progress first (at least 5 new acknowledgements since the last restart, however slow the machine),
      // so every kill lands under load; then a random moment on top.
      const base = ledger.acked.length
      for (let waited = 0; ledger.acked.length < base + 5 && waited < 60_000; waited += 20) {
        await new Promise((r) => setTimeout(r, 20))
      }
      await new Promise((r) => setTimeout(r, Math.floor(rnd() * 400)))
      const exit = await killAndWait(current)
      expect(exit.signal).toBe('SIGKILL')
      ackedBefore.push(ledger.acked.length)
      current = await spawnServe(args)
    }
    await new Promise((r) => setTimeout(r, 300))
    stopped = true
    await Promise.all(workers)
    console.log(
      `[crash] ${KILLS} kills, ${ledger.transactions} transactions, ${ledger.acked.length} acknowledged deliveries, ${ledger.lostSessions} sessions cut`,
    )
    // The run must have been under load across the kills, or it proves nothing.
    expect(ledger.acked.length).toBeGreaterThan(100)
    expect(new Set(ackedBefore).size).toBeGreaterThan(KILLS / 2)

    // Restart once more: cleanTmp must leave no temp file behind.
    await killAndWait(current)
    current = await spawnServe(args)
    const {files, tmpLeft} = await survey(root)
    expect(tmpLeft).toEqual([])

    // Every stored file is a whole message a client sent, with the trace headers and LF line ends.
    const stored = new Set<string>()
    for (const {mailbox, file} of files) {
      const content = await readFile(file)
      const text = content.toString('latin1')
      const m = TRACE.exec(text)
      expect(m, `${file} has no complete trace headers`).not.toBeNull()
      expect(m![1]).toBe(mailbox)
      expect(m![2]).toBe(mailbox)
      const body = content.subarray(m![0].length)
      const id = /^Message-ID: <([^@>]+)@crash\.test>/.exec(body.toString('latin1'))?.[1]
      expect(id, `${file} does not start with a Message-ID`).toBeDefined()
      const sent = ledger.sent.get(id!)
      expect(sent, `${file}: message ${id} was never sent`).toBeDefined()
      const expected = Buffer.from(sent!.toString('latin1').replace(/\r\n/g, '\n'), 'latin1')
      expect(body.equals(expected), `${file} is not byte-identical to message ${id} (partial or altered)`).toBe(true)
      stored.add(`${id} ${mailbox}`)
    }
    // Every acknowledged recipient has its message.
    const missing = ledger.acked.filter((a) => !stored.has(`${a.id} ${a.rcpt}`))
    expect(missing).toEqual([])

    // Quota accounting agrees with the files (readUsage rebuilds a maildirsize that was dropped as unreliable).
    const qbox = path.join(root, DOMAIN, QUOTAED)
    const onDisk = await scanUsage(qbox)
    expect(onDisk.count).toBeGreaterThan(0)
    const text = await readFile(path.join(qbox, 'maildirsize'), 'latin1').catch(() => undefined)
    const usage = await readUsage(qbox, QUOTA)
    expect({bytes: usage.bytes, count: usage.count}, `maildirsize was:\n${text}`).toEqual(onDisk)

    const exit = await killAndWait(current, 'SIGTERM')
    current = undefined
    expect(exit.code).toBe(0)
  })
})
