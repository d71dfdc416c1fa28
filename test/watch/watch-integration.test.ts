/**
 * `lmtp watch` against a real `lmtp serve` (runServer in-process, the command's code path) with real traffic:
 * swaks sends to a known, an unknown and an over-quota recipient, and the built CLI's `watch --json` shows the
 * matching per-recipient events. A watcher that never reads does not stop 300 messages from being delivered,
 * and its feed is cut off (dropped) instead of buffered without bound.
 */
import {type ChildProcess, spawn} from 'node:child_process'
import {existsSync} from 'node:fs'
import {writeFile} from 'node:fs/promises'
import net from 'node:net'
import {join} from 'node:path'
import {afterEach, describe, expect, it} from 'vitest'
import {LmtpClient} from '../../src/protocol/client.js'
import type {FeedLine} from '../../src/protocol/feed-format.js'
import {ROOT} from '../client/run-cli.js'
import {describePeers, runSwaks, swaksTarget} from '../support/peers.js'
import {type TestServer, startServe} from '../support/serve.js'

const cleanups: (() => unknown)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function serveWithFeed(users?: string): Promise<{srv: TestServer; feedPath: string}> {
  const {mkdtemp} = await import('node:fs/promises')
  const {tmpdir} = await import('node:os')
  const dir = await mkdtemp(join(tmpdir(), 'lmtp-watch-'))
  const feedPath = join(dir, 'events.sock')
  let usersFile: string | undefined
  if (users) {
    usersFile = join(dir, 'users')
    await writeFile(usersFile, users)
  }
  const srv = await startServe({events: {path: feedPath, isDefault: false}, usersFile})
  cleanups.push(async () => {
    await srv.stop()
    await srv.cleanup()
    const {rm} = await import('node:fs/promises')
    await rm(dir, {recursive: true, force: true})
  })
  return {srv, feedPath}
}

/** `node bin/run.js watch --json ...`, its stdout parsed line by line as it arrives. */
function spawnWatch(args: string[]): {child: ChildProcess; lines: FeedLine[]; stderr: () => string; exited: Promise<number | null>} {
  if (!existsSync(join(ROOT, 'dist/commands/watch.js'))) throw new Error('dist/ is not built: run `npm run build` first (npm test does)')
  const child = spawn(process.execPath, [join(ROOT, 'bin/run.js'), 'watch', '--json', ...args], {
    cwd: ROOT,
    env: {...process.env, NO_COLOR: '1'},
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const lines: FeedLine[] = []
  let buf = ''
  let err = ''
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d
    let nl = buf.indexOf('\n')
    while (nl >= 0) {
      lines.push(JSON.parse(buf.slice(0, nl)) as FeedLine)
      buf = buf.slice(nl + 1)
      nl = buf.indexOf('\n')
    }
  })
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d
  })
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)))
  cleanups.push(() => {
    if (child.exitCode === null) child.kill('SIGKILL')
  })
  return {child, lines, stderr: () => err, exited}
}

describePeers('lmtp watch --json with swaks traffic', ['swaks'], () => {
  it('shows every recipient outcome of a real session: delivered, unknown at RCPT, over quota after DATA', async () => {
    const {srv, feedPath} = await serveWithFeed('a@example.com\nb@example.com\nsmall@example.com quota=10\n')
    const watch = spawnWatch(['--events', feedPath, '--no-reconnect'])
    await expect.poll(() => watch.lines.length, {timeout: 20_000}).toBeGreaterThanOrEqual(2)
    expect(watch.lines[0]).toMatchObject({type: 'hello', feed: 'lmtp-events', version: 1, server: {hostname: 'mx.test', pid: process.pid}})
    expect(watch.lines[1]).toMatchObject({type: 'snapshot', totals: {connections: 0}, sessions: []})

    const swaks = await runSwaks([
      ...swaksTarget({port: srv.port}),
      '--from',
      'sender@example.org',
      '--to',
      'a@example.com,nobody@example.com,small@example.com,b@example.com',
      '--body',
      'hello from swaks, long enough to exceed a ten byte quota',
    ])
    expect(swaks.code).toBe(0)
    const outcomes = (): FeedLine[] => watch.lines.filter((l) => l.type === 'recipient.result' || l.type === 'recipient.rejected')
    await expect.poll(() => outcomes().length, {timeout: 20_000}).toBe(4)
    await expect.poll(() => watch.lines.some((l) => l.type === 'session.closed'), {timeout: 20_000}).toBe(true)
    const sessionId = watch.lines.find((l) => l.type === 'session.opened')!.sessionId
    const view = outcomes().map((l) => {
      if (l.type === 'recipient.rejected') return {sessionId: l.sessionId, type: l.type, recipient: l.recipient, code: l.code, enhanced: l.enhanced}
      if (l.type !== 'recipient.result') throw new Error('unreachable')
      return {sessionId: l.sessionId, type: l.type, recipient: l.recipient, outcome: l.outcome, code: l.code, enhanced: l.enhanced, mailbox: l.mailbox}
    })
    expect(view).toEqual([
      {sessionId, type: 'recipient.rejected', recipient: 'nobody@example.com', code: 550, enhanced: '5.1.1'},
      {sessionId, type: 'recipient.result', recipient: 'a@example.com', outcome: 'delivered', code: 250, enhanced: '2.0.0', mailbox: 'example.com/a'},
      // The message is larger than this mailbox's whole quota: a permanent failure, for this recipient only.
      {sessionId, type: 'recipient.result', recipient: 'small@example.com', outcome: 'rejected', code: 552, enhanced: '5.2.3', mailbox: 'example.com/small'},
      {sessionId, type: 'recipient.result', recipient: 'b@example.com', outcome: 'delivered', code: 250, enhanced: '2.0.0', mailbox: 'example.com/b'},
    ])
    // The transcript is on the feed too: commands and replies of that session, in order.
    const transcript = watch.lines.filter(
      (l): l is Extract<FeedLine, {type: 'command' | 'reply'}> => (l.type === 'command' || l.type === 'reply') && l.sessionId === sessionId,
    )
    expect(transcript.map((l) => (l.type === 'command' ? `C: ${l.verb}` : `S: ${l.code}`)).join(' ')).toBe(
      'S: 220 C: LHLO S: 250 C: MAIL S: 250 C: RCPT S: 250 C: RCPT S: 550 C: RCPT S: 250 C: RCPT S: 250 C: DATA S: 354 S: 250 S: 552 S: 250 C: QUIT S: 221',
    )

    // The server stops: the watcher is told, and exits cleanly (--no-reconnect).
    await srv.stop()
    expect(await watch.exited).toBe(0)
    expect(watch.lines.at(-1)).toMatchObject({type: 'bye'})
  })
})

describe('a watcher that never reads', () => {
  it('does not hold up 300 messages; its feed is cut off and it is told how many events it missed', async () => {
    const {srv, feedPath} = await serveWithFeed()
    const stuck = net.connect({path: feedPath})
    await new Promise<void>((r, j) => {
      stuck.once('connect', () => r())
      stuck.once('error', j)
    })
    stuck.pause()
    cleanups.push(() => {
      stuck.destroy()
    })

    const socket = net.connect({host: '127.0.0.1', port: srv.port})
    const client = new LmtpClient(socket)
    await client.start()
    await client.lhlo('load.test')
    // Long addresses make the events large, so the feed overflows with fewer (slow, fsynced) deliveries.
    const recipients = Array.from({length: 8}, (_, i) => `recipient-with-a-long-local-part-${i}@a-long-domain-name-for-this-test.example.com`)
    let delivered = 0
    for (let m = 0; m < 300; m++) {
      const result = await client.send({from: 'load@example.org', to: recipients, body: [Buffer.from(`Subject: ${m}\r\n\r\nbody ${m}\r\n`)]})
      delivered += result.recipients.filter((r) => r.outcome === 'delivered').length
    }
    await client.quit()
    expect(delivered).toBe(300 * 8)

    // Now read what the stuck watcher was sent: a bounded prefix, then the `dropped` note and a fresh snapshot.
    let received = ''
    let bytesBeforeDrop = -1
    stuck.setEncoding('utf8')
    stuck.on('data', (d: string) => {
      received += d
      if (bytesBeforeDrop < 0) {
        const at = received.indexOf('{"type":"dropped"')
        if (at >= 0) bytesBeforeDrop = Buffer.byteLength(received.slice(0, at))
      }
    })
    stuck.resume()
    await expect.poll(() => bytesBeforeDrop >= 0 && /"type":"dropped".*\n.*"type":"snapshot"/.test(received), {timeout: 20_000}).toBe(true)
    const lines = received.split('\n').filter(Boolean).map((l) => JSON.parse(l) as FeedLine)
    const i = lines.findIndex((l) => l.type === 'dropped')
    const dropped = lines[i] as Extract<FeedLine, {type: 'dropped'}>
    const eventsSeen = lines.slice(2, i).length
    // Every message makes about 10 + 5 per recipient events; the watcher got only what fits in its buffer.
    expect(dropped.count).toBeGreaterThan(300 * 8 * 5 - eventsSeen)
    // 1 MiB of feed buffer, plus what the kernel's socket buffers hold (about 2 x 208 KiB here).
    expect(bytesBeforeDrop).toBeLessThan(2 * 1024 * 1024)
    expect(lines[i + 1]).toMatchObject({type: 'snapshot', totals: {messages: 300, delivered: 2400}})
  }, 180_000)
})
