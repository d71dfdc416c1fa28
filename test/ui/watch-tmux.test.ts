/**
 * A real terminal, once: `lmtp watch` (the built CLI) runs inside tmux against a running `lmtp serve` while
 * traffic flows, and `tmux capture-pane` shows what a person would see: the live session row and the
 * per-recipient outcome rows with their codes. Then the server stops (the screen says so) and a new one
 * starts on the same feed path (the watcher reconnects by itself).
 * Gated on tmux: skipped locally when missing, failing in CI (where .ci/install-peers installs it).
 * LMTP_SAVE_SCREEN=1 writes the captured screen to docs/watch-screen.txt (the README shows it).
 */
import {spawnSync} from 'node:child_process'
import {existsSync} from 'node:fs'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import net from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {LmtpClient} from '../../src/protocol/client.js'
import {ROOT} from '../client/run-cli.js'
import {findExecutable, inCi} from '../support/peers.js'
import {type TestServer, startServe} from '../support/serve.js'

const tmux = findExecutable('tmux')
const skip = tmux === undefined && !inCi()
if (skip) console.warn('[tmux] skipping the real-terminal dashboard test: tmux is not installed (sudo bash .ci/install-peers)')

/** A private tmux server, so the test never touches the user's own sessions. */
const SOCKET = `lmtp-watch-test-${process.pid}`

function tmuxRun(...args: string[]): string {
  const r = spawnSync(tmux ?? 'tmux', ['-L', SOCKET, ...args], {encoding: 'utf8', timeout: 10_000})
  if (r.status !== 0) throw new Error(`tmux ${args.join(' ')} failed: ${r.stderr}`)
  return r.stdout
}

function screen(): string {
  return tmuxRun('capture-pane', '-p', '-t', 'watch')
    .split('\n')
    .map((l) => l.trimEnd())
    .join('\n')
    .trimEnd()
}

async function client(port: number, name: string): Promise<LmtpClient> {
  const c = new LmtpClient(net.connect({host: '127.0.0.1', port}))
  await c.start()
  await c.lhlo(name)
  return c
}

describe.skipIf(skip)('lmtp watch in a real terminal (tmux)', () => {
  let dir = ''
  const servers: TestServer[] = []
  beforeAll(async () => {
    if (!tmux) throw new Error('tmux is not installed: run `sudo bash .ci/install-peers` (CI=true: this test is mandatory)')
    if (!existsSync(join(ROOT, 'dist/commands/watch.js'))) throw new Error('dist/ is not built: run `npm run build` first (npm test does)')
    dir = await mkdtemp(join(tmpdir(), 'lmtp-tmux-'))
  })
  afterAll(async () => {
    if (tmux) spawnSync(tmux, ['-L', SOCKET, 'kill-server'], {timeout: 10_000})
    for (const s of servers) {
      await s.stop()
      await s.cleanup()
    }
    if (dir) await rm(dir, {recursive: true, force: true})
  })

  it('shows the live session and every recipient outcome with its code; says when the server stops; reconnects', async () => {
    const feedPath = join(dir, 'events.sock')
    const usersFile = join(dir, 'users')
    await writeFile(usersFile, 'alice@example.com\nbob@example.com\ntiny@example.com quota=2K\n')
    const first = await startServe({events: {path: feedPath, isDefault: false}, usersFile, hostname: 'mx1.example.net'})
    servers.push(first)
    const command = `NO_COLOR=1 ${process.execPath} ${join(ROOT, 'bin/run.js')} watch --events ${feedPath}`
    tmuxRun('new-session', '-d', '-s', 'watch', '-x', '118', '-y', '30', command)
    await expect.poll(screen, {timeout: 30_000, interval: 200}).toContain('● live')

    // Traffic: one session stays open (it must show in the table), one comes and goes.
    const body = (n: number): Iterable<Buffer> => [Buffer.from(`Subject: report ${n}\r\n\r\n${'x'.repeat(1200)}\r\n`)]
    const relay = await client(first.port, 'relay.example.org')
    await relay.send({from: 'billing@example.org', to: ['alice@example.com', 'nobody@example.com', 'bob@example.com'], body: body(1)})
    await relay.send({from: 'billing@example.org', to: ['tiny@example.com', 'alice@example.com'], body: body(2)})
    await relay.send({from: 'billing@example.org', to: ['tiny@example.com', 'bob@example.com'], body: body(3)})
    const once = await client(first.port, 'once.example.net')
    await once.send({from: '', to: ['bob@example.com', 'ghost@example.com'], body: body(4)})
    await once.quit()
    await relay.send({from: 'news@example.org', to: ['alice@example.com'], body: body(5), bdat: true})

    await expect.poll(screen, {timeout: 20_000, interval: 200}).toMatch(/news@example\.org/)
    await expect.poll(screen, {timeout: 20_000, interval: 200}).toMatch(/#\w+\s+127\.0\.0\.1:\d+\s+ready\s+relay\.exam/)
    const shot = screen()
    const lines = shot.split('\n')
    expect(shot).toMatch(/conn 1 now \/ 2 · msgs 5/)
    expect(shot).toMatch(/delivered 7 · deferred 1 · rejected 0 · refused at RCPT 2/)
    // Session rows: the open one and the one that closed.
    expect(lines.some((l) => /#\w+\s+127\.0\.0\.1:\d+\s+ready\s+relay\.exam\S*\s+<news@example\.org>\s+1\s+/.test(l))).toBe(true)
    expect(lines.some((l) => /#\w+\s+127\.0\.0\.1:\d+\s+closed\s+once\.exam/.test(l))).toBe(true)
    // Outcome rows with their codes, failures marked.
    const outcome = (recipient: string, rest: RegExp): boolean => lines.some((l) => l.includes(recipient) && rest.test(l))
    expect(outcome('nobody@example.com', /^▌ .*✗ rejected\s+550 5\.1\.1 at RCPT: /)).toBe(true)
    expect(outcome('ghost@example.com', /^▌ .*✗ rejected\s+550 5\.1\.1/)).toBe(true)
    expect(outcome('tiny@example.com', /^▌ .*! deferred\s+452 4\.2\.2/)).toBe(true)
    expect(outcome('alice@example.com', /^ {2}\d\d:\d\d:\d\d .*✓ delivered 250 2\.0\.0 example\.com\/alice/)).toBe(true)
    if (process.env.LMTP_SAVE_SCREEN) await writeFile(join(ROOT, 'docs/watch-screen.txt'), `${shot}\n`)

    // Select the open session and open its transcript.
    tmuxRun('send-keys', '-t', 'watch', 'Down', 'Enter')
    await expect.poll(screen, {timeout: 10_000, interval: 200}).toMatch(/Session \S+ · 127\.0\.0\.1:\d+ via 127\.0\.0\.1:\d+ · ready/)
    expect(screen()).toMatch(/C: BDAT \d+ LAST/)
    tmuxRun('send-keys', '-t', 'watch', 'Escape')
    await expect.poll(screen, {timeout: 10_000, interval: 200}).toContain('Outcomes')

    // The server stops: the screen says so and keeps the last picture.
    await relay.quit()
    await first.stop()
    await expect.poll(screen, {timeout: 20_000, interval: 200}).toContain('○ server gone')
    expect(screen()).toMatch(/server stopped \(server stopping\); reconnecting/)
    expect(screen()).toContain('nobody@example.com')

    // A new server on the same feed path: the watcher finds it by itself.
    const second = await startServe({events: {path: feedPath, isDefault: false}, usersFile, hostname: 'mx2.example.net'})
    servers.push(second)
    await expect.poll(screen, {timeout: 30_000, interval: 200}).toMatch(/mx2\.example\.net.*● live/)
    expect(screen()).toMatch(/conn 0 now \/ 0 · msgs 0/)

    // q quits: the pane's command ends, so tmux closes the session.
    tmuxRun('send-keys', '-t', 'watch', 'q')
    const sessionAlive = (): boolean => spawnSync(tmux ?? 'tmux', ['-L', SOCKET, 'has-session', '-t', 'watch'], {timeout: 10_000}).status === 0
    await expect.poll(sessionAlive, {timeout: 10_000, interval: 200}).toBe(false)
  })
})
