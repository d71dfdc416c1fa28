import {mkdtempSync} from 'node:fs'
import {chmod, lstat, mkdir, rm, stat, writeFile} from 'node:fs/promises'
import net from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {EventBus, type LmtpEvent} from '../../src/protocol/events.js'
import {EventFeed, EventFeedError, chooseDefaultEventsPath, openEventFeed} from '../../src/server/event-feed.js'
import {ServerStats} from '../../src/server/stats.js'
import {defaultEventsPaths, type FeedLine, parseFeedLine} from '../../src/protocol/feed-format.js'
import {EventScript} from './script.js'

let dir: string
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lmtp-feed-'))
})
afterEach(async () => {
  await rm(dir, {recursive: true, force: true})
})

/** A watcher that collects parsed lines. */
function watcher(path: string): {socket: net.Socket; lines: FeedLine[]; ready: Promise<void>} {
  const socket = net.connect({path})
  const lines: FeedLine[] = []
  let buf = ''
  socket.setEncoding('utf8')
  socket.on('data', (chunk: string) => {
    buf += chunk
    let nl = buf.indexOf('\n')
    while (nl >= 0) {
      const l = parseFeedLine(buf.slice(0, nl))
      if (l) lines.push(l)
      buf = buf.slice(nl + 1)
      nl = buf.indexOf('\n')
    }
  })
  const ready = new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve())
    socket.once('error', reject)
  })
  return {socket, lines, ready}
}

function makeFeed(path: string, extra: Partial<ConstructorParameters<typeof EventFeed>[0]> = {}) {
  const bus = new EventBus()
  const stats = new ServerStats(bus)
  const feed = new EventFeed({
    path,
    bus,
    totals: () => stats.totals,
    server: () => ({hostname: 'mx.test', pid: 1, listeners: ['127.0.0.1:2424'], startedAt: stats.totals.startedAt}),
    ...extra,
  })
  return {bus, stats, feed}
}

describe('EventFeed', () => {
  it('sends hello, a snapshot of what is open, then live events to every watcher; the socket is 0600', async () => {
    const path = join(dir, 'ev.sock')
    const {bus, feed} = makeFeed(path)
    await feed.listen()
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    const s = new EventScript(Date.now())
    for (const e of [...s.open('a', '10.1.1.1:5'), ...s.lhlo('a', 'relay.test')]) bus.emit(e)
    const w1 = watcher(path)
    const w2 = watcher(path)
    await Promise.all([w1.ready, w2.ready])
    await expect.poll(() => w1.lines.length + w2.lines.length).toBe(4)
    const live = s.transaction('a', 'a.1', 'f@x', [{to: 'u@x', data: [250, '2.0.0', 'ok']}, {to: 'no@x', rcpt: [550, '5.1.1', 'unknown']}])
    for (const e of live) bus.emit(e)
    for (const w of [w1, w2]) {
      await expect.poll(() => w.lines.length).toBe(2 + live.length)
      const [hello, snapshot, ...rest] = w.lines
      expect(hello).toMatchObject({type: 'hello', feed: 'lmtp-events', version: 1, server: {hostname: 'mx.test'}})
      expect(snapshot).toMatchObject({
        type: 'snapshot',
        totals: {connections: 1, openSessions: 1},
        sessions: [{sessionId: 'a', peer: '10.1.1.1:5', lhlo: 'relay.test', phase: 'ready'}],
      })
      expect(rest).toEqual(live)
    }
    expect(feed.watcherCount).toBe(2)
    await feed.stop()
    await expect.poll(() => w1.lines.at(-1)?.type).toBe('bye')
    await expect(lstat(path)).rejects.toThrow()
  })

  it('a watcher that never reads has a bounded buffer, loses events alone, and is told how many once it reads', async () => {
    const path = join(dir, 'ev.sock')
    const maxBufferBytes = 64 * 1024
    const {bus, stats, feed} = makeFeed(path, {maxBufferBytes})
    await feed.listen()
    const stuck = watcher(path)
    await stuck.ready
    stuck.socket.pause()
    const fast = watcher(path)
    await fast.ready
    await expect.poll(() => fast.lines.length).toBe(2)
    const s = new EventScript(Date.now())
    let emitted = 0
    let maxBuffered = 0
    for (let batch = 0; batch < 300; batch++) {
      const id = `s${batch}`
      const events: LmtpEvent[] = [
        ...s.open(id),
        ...s.lhlo(id, 'h'),
        ...s.transaction(id, `${id}.1`, 'f@x', [
          {to: 'a@x', data: [250, '2.0.0', 'ok']},
          {to: 'b@x', data: [452, '4.2.2', 'full']},
        ]),
        ...s.quitAndClose(id),
      ]
      for (const e of events) bus.emit(e)
      emitted += events.length
      maxBuffered = Math.max(maxBuffered, ...feed.watcherStats().map((w) => w.buffered))
      // Let the fast watcher read between batches, as a live server's event loop would.
      await new Promise((r) => setImmediate(r))
    }
    const statsNow = feed.watcherStats()
    const dropped = Math.max(...statsNow.map((w) => w.dropped))
    expect(dropped).toBeGreaterThan(0)
    expect(maxBuffered).toBeLessThanOrEqual(maxBufferBytes + 1024)
    // The fast watcher lost nothing.
    await expect.poll(() => fast.lines.length, {timeout: 10_000}).toBe(2 + emitted)
    expect(fast.lines.some((l) => l.type === 'dropped')).toBe(false)
    // The stuck one catches up: it is told how many it missed, and re-synced with a snapshot.
    stuck.socket.resume()
    await expect.poll(() => stuck.lines.some((l) => l.type === 'dropped'), {timeout: 10_000}).toBe(true)
    const i = stuck.lines.findIndex((l) => l.type === 'dropped')
    const note = stuck.lines[i] as Extract<FeedLine, {type: 'dropped'}>
    expect(note.count).toBe(dropped)
    expect(note.total).toBe(dropped)
    expect(stuck.lines[i + 1]).toMatchObject({type: 'snapshot', totals: {messages: stats.totals.messages, deferred: 300}})
    // hello, snapshot, dropped, snapshot: everything else is an event, each exactly once.
    expect(stuck.lines.length - 4).toBe(emitted - dropped)
    await feed.stop()
  })

  it('refuses more watchers than allowed with a bye line', async () => {
    const path = join(dir, 'ev.sock')
    const {feed} = makeFeed(path, {maxWatchers: 1})
    await feed.listen()
    const first = watcher(path)
    await expect.poll(() => first.lines.length).toBe(2)
    const second = watcher(path)
    await expect.poll(() => second.lines[0]).toMatchObject({type: 'bye', reason: 'too many watchers (1)'})
    await feed.stop()
  })

  it.each([
    ['a stale socket file is replaced', 'stale', undefined],
    ['a live socket is refused', 'live', 'EADDRINUSE'],
    ['a regular file is refused', 'file', 'EEXIST'],
  ])('%s', async (_title, kind, code) => {
    const path = join(dir, 'ev.sock')
    let other: net.Server | undefined
    if (kind === 'file') await writeFile(path, 'x')
    else {
      other = net.createServer()
      await new Promise<void>((r) => other!.listen(path, () => r()))
      if (kind === 'stale') {
        // Closing a listening server unlinks its file; recreate the situation of a crashed server.
        await new Promise<void>((r) => other!.close(() => r()))
        const leftover = net.createServer()
        await new Promise<void>((r) => leftover.listen(path, () => r()))
        ;(leftover as unknown as {_handle: {close(): void}})._handle.close()
        other = undefined
      }
    }
    const {feed} = makeFeed(path)
    if (code) await expect(feed.listen()).rejects.toMatchObject({name: 'EventFeedError', code})
    else {
      await feed.listen()
      const w = watcher(path)
      await expect.poll(() => w.lines.length).toBe(2)
    }
    await feed.stop()
    if (other) await new Promise<void>((r) => other!.close(() => r()))
  })

  it('makes the default directory private and refuses one that others can enter', async () => {
    const good = join(dir, 'mine', 'events.sock')
    const {feed} = makeFeed(good, {privateDir: true})
    await feed.listen()
    expect((await stat(join(dir, 'mine'))).mode & 0o777).toBe(0o700)
    await feed.stop()
    const open = join(dir, 'open')
    await mkdir(open)
    await chmod(open, 0o755)
    const bad = makeFeed(join(open, 'events.sock'), {privateDir: true})
    await expect(bad.feed.listen()).rejects.toBeInstanceOf(EventFeedError)
    await bad.feed.stop()
  })

  it('openEventFeed: a busy default path only warns; a busy --events path is an error', async () => {
    const path = join(dir, 'p', 'ev.sock')
    const first = makeFeed(path, {privateDir: true})
    await first.feed.listen()
    const {bus, stats} = makeFeed(join(dir, 'unused.sock'))
    const opts = {bus, totals: () => stats.totals, server: () => ({hostname: 'h', pid: 1, listeners: [], startedAt: 0})}
    const warnings: string[] = []
    expect(await openEventFeed({path, isDefault: true}, opts, (m) => warnings.push(m))).toBeUndefined()
    expect(warnings[0]).toMatch(/in use by another running lmtp serve.*--events PATH/)
    await expect(openEventFeed({path, isDefault: false}, opts, () => {})).rejects.toMatchObject({exitCode: 69})
    await first.feed.stop()
  })
})

describe('default feed paths', () => {
  it.each([
    [{XDG_RUNTIME_DIR: '/run/user/1000'}, 1000, ['/run/user/1000/lmtp/events.sock', '/tmp/lmtp-1000/events.sock']],
    [{}, 1000, ['/tmp/lmtp-1000/events.sock']],
    [{XDG_RUNTIME_DIR: 'relative'}, 0, ['/tmp/lmtp-0/events.sock']],
  ])('env %j uid %d -> %j', (env, uid, expected) => {
    expect(defaultEventsPaths(env, uid)).toEqual(expected)
  })

  it('the server skips a runtime dir that does not exist', () => {
    const uid = process.getuid?.() ?? 0
    expect(chooseDefaultEventsPath({XDG_RUNTIME_DIR: '/nonexistent/run'})).toBe(`/tmp/lmtp-${uid}/events.sock`)
    expect(chooseDefaultEventsPath({XDG_RUNTIME_DIR: dir})).toBe(join(dir, 'lmtp', 'events.sock'))
  })
})
