import {mkdtempSync} from 'node:fs'
import {rm} from 'node:fs/promises'
import net from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {PassThrough} from 'node:stream'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {EventBus} from '../../src/protocol/events.js'
import {EventFeed} from '../../src/server/event-feed.js'
import {ServerStats} from '../../src/server/stats.js'
import {BusFeed, type FeedStatus, SocketFeed} from '../../src/watch/feed-client.js'
import type {FeedLine} from '../../src/protocol/feed-format.js'
import {streamJson} from '../../src/watch/json-stream.js'
import {EventScript} from './script.js'

let dir: string
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lmtp-feedc-'))
})
afterEach(async () => {
  await rm(dir, {recursive: true, force: true})
})

async function startFeed(path: string, pid = 1) {
  const bus = new EventBus()
  const stats = new ServerStats(bus)
  const feed = new EventFeed({path, bus, totals: () => stats.totals, server: () => ({hostname: 'h', pid, listeners: [], startedAt: 0})})
  await feed.listen()
  return {bus, feed}
}

describe('SocketFeed', () => {
  it('reconnects when the server stops and comes back, starting over with its hello', async () => {
    const path = join(dir, 'ev.sock')
    const client = new SocketFeed({paths: [join(dir, 'missing.sock'), path], retryMs: 20, maxRetryMs: 50})
    const lines: FeedLine[] = []
    const statuses: FeedStatus[] = []
    client.subscribe(
      (l) => lines.push(l),
      (s) => statuses.push(s),
    )
    // No server yet: it keeps trying.
    await expect.poll(() => statuses.filter((s) => s.state === 'disconnected').length).toBeGreaterThan(1)
    expect(statuses.find((s) => s.state === 'disconnected')).toMatchObject({reason: `no lmtp serve event feed at ${path}`})
    const first = await startFeed(path, 1)
    await expect.poll(() => lines.map((l) => l.type)).toEqual(['hello', 'snapshot'])
    expect(statuses.at(-1)).toEqual({state: 'connected', path})
    const s = new EventScript()
    first.bus.emit(s.open('a')[0]!)
    await expect.poll(() => lines.length).toBe(3)
    await first.feed.stop()
    await expect.poll(() => statuses.at(-1)).toMatchObject({state: 'disconnected', reason: 'server stopped (server stopping)'})
    expect(lines.at(-1)).toMatchObject({type: 'bye'})
    const second = await startFeed(path, 2)
    await expect.poll(() => lines.filter((l) => l.type === 'hello').length).toBe(2)
    expect(lines.filter((l) => l.type === 'hello').at(-1)).toMatchObject({server: {pid: 2}})
    client.stop()
    await client.done
    await second.feed.stop()
  })

  it.each([
    ['no server and no reconnect is an error', 'none', 'no lmtp serve event feed'],
    ['a server that says bye ends cleanly', 'bye', undefined],
    ['a socket that is not an event feed is refused', 'alien', 'is not an lmtp event feed'],
    ['a newer feed version is refused', 'future', 'speaks version 2'],
  ])('without reconnect: %s', async (_title, kind, error) => {
    const path = join(dir, 'ev.sock')
    let stop: () => Promise<void> = async () => {}
    if (kind === 'bye') {
      const {feed} = await startFeed(path)
      stop = () => feed.stop()
    } else if (kind === 'alien' || kind === 'future') {
      const line = kind === 'alien' ? '{"type":"greeting"}\n' : '{"type":"hello","feed":"lmtp-events","version":2}\n'
      const server = net.createServer((c) => c.end(line))
      await new Promise<void>((r) => server.listen(path, () => r()))
      stop = () => new Promise((r) => server.close(() => r()))
    }
    const client = new SocketFeed({paths: [path], reconnect: false})
    const lines: FeedLine[] = []
    client.subscribe(
      (l) => lines.push(l),
      () => {},
    )
    if (kind === 'bye') {
      await expect.poll(() => lines.length).toBe(2)
      await stop()
    }
    await client.done
    if (error) expect(client.error).toContain(error)
    else expect(client.error).toBeUndefined()
    if (kind !== 'bye') await stop()
  })
})

describe('streamJson', () => {
  it('copies the raw lines to its output, one per line', async () => {
    const path = join(dir, 'ev.sock')
    const {bus, feed} = await startFeed(path)
    const out = new PassThrough()
    let text = ''
    out.on('data', (c: Buffer) => {
      text += c.toString()
    })
    const notes: string[] = []
    const client = new SocketFeed({paths: [path], reconnect: false})
    const done = streamJson(client, {out, note: (n) => notes.push(n)})
    await expect.poll(() => text.split('\n').length).toBe(3)
    const s = new EventScript()
    for (const e of s.open('a')) bus.emit(e)
    await expect.poll(() => text.split('\n').length).toBe(5)
    await feed.stop()
    expect(await done).toBeUndefined()
    const parsed = text.trim().split('\n').map((l) => JSON.parse(l) as FeedLine)
    expect(parsed.map((l) => l.type)).toEqual(['hello', 'snapshot', 'session.opened', 'reply', 'bye'])
    expect(notes).toEqual([`lmtp watch: connected to ${path}`])
  })
})

describe('BusFeed', () => {
  it('folds what happened before subscribe into its snapshot, then forwards events', () => {
    const bus = new EventBus()
    const feed = new BusFeed(bus, () => ({hostname: 'h', pid: 1, listeners: ['x'], startedAt: 5}))
    const s = new EventScript()
    for (const e of [...s.open('early'), ...s.lhlo('early', 'h1')]) bus.emit(e)
    const lines: FeedLine[] = []
    const statuses: FeedStatus[] = []
    const stop = feed.subscribe(
      (l) => lines.push(l),
      (st) => statuses.push(st),
    )
    expect(statuses).toEqual([{state: 'in-process'}])
    expect(lines[0]).toMatchObject({type: 'hello', server: {listeners: ['x']}})
    expect(lines[1]).toMatchObject({type: 'snapshot', totals: {connections: 1}, sessions: [{sessionId: 'early', lhlo: 'h1'}]})
    const late = s.open('late')
    for (const e of late) bus.emit(e)
    expect(lines.slice(2)).toEqual(late)
    stop()
    bus.emit(s.open('after')[0]!)
    expect(lines).toHaveLength(2 + late.length)
  })
})
