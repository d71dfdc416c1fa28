/**
 * `lmtp watch` never shows a feed socket that another user planted as "live": the socket must belong to the
 * user running watch (or root), and the directories on the way must not be someone else's. The same check
 * (src/net/socket-file.ts checkTrustedPath) keeps serve from opening its feed in such a directory.
 * Needs root to hand files to `nobody`; CI runs as root (and fails here if it does not).
 */
import {chmod, chown, mkdir, mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {EventBus} from '../../src/protocol/events.js'
import {EventFeed, EventFeedError} from '../../src/server/event-feed.js'
import {ServerStats} from '../../src/server/stats.js'
import {type FeedStatus, SocketFeed} from '../../src/watch/feed-client.js'
import type {FeedLine} from '../../src/protocol/feed-format.js'
import {needRoot, requireHost} from '../support/host-gate.js'
import {systemUser} from '../support/peers/proc.js'

const nobody = systemUser('nobody')

const gate = requireHost('planted feed sockets', needRoot('to chown a planted socket to nobody'))

describe.skipIf(gate.skip)('a planted feed socket', () => {
  let dir = ''
  beforeEach(async () => {
    gate.check()
    dir = await mkdtemp(join(tmpdir(), 'lmtp-planted-'))
  })
  afterEach(async () => {
    await rm(dir, {recursive: true, force: true})
  })

  /** A real feed (it says hello, so an unchecked watch would show it live) at `path`; `owned` is chowned to nobody. */
  async function plant(path: string, owned: string): Promise<EventFeed> {
    const bus = new EventBus()
    const stats = new ServerStats(bus)
    const feed = new EventFeed({path, bus, totals: () => stats.totals, server: () => ({hostname: 'evil', pid: 1, listeners: [], startedAt: 0})})
    await feed.listen()
    await chown(owned, nobody!.uid, nobody!.gid)
    return feed
  }

  async function watchOnce(path: string): Promise<{lines: FeedLine[]; statuses: FeedStatus[]}> {
    const client = new SocketFeed({paths: [path], reconnect: false})
    const lines: FeedLine[] = []
    const statuses: FeedStatus[] = []
    client.subscribe(
      (l) => {
        lines.push(l)
        if (l.type === 'snapshot') client.stop()
      },
      (s) => statuses.push(s),
    )
    await client.done
    return {lines, statuses}
  }

  it.each([
    ['the socket belongs to nobody', false, /events\.sock is owned by nobody \(uid \d+\), not by root/],
    ['its directory (a /tmp/lmtp-<uid>/ made by nobody) belongs to nobody', true, /lmtp-0 \(on the way to .*events\.sock\) is owned by nobody/],
  ])('%s: refused with the path and the owner, never connected', async (_name, plantDir, message) => {
    const home = join(dir, 'lmtp-0')
    await mkdir(home, {mode: 0o700})
    const path = join(home, 'events.sock')
    const feed = await plant(path, plantDir ? home : path)
    const {lines, statuses} = await watchOnce(path)
    expect(statuses.some((s) => s.state === 'connected')).toBe(false)
    expect(lines).toEqual([])
    const failed = statuses.find((s) => s.state === 'failed')
    expect(failed && failed.state === 'failed' ? failed.reason : '').toMatch(message)
    await feed.stop()
  })

  it('a feed of our own in the same place is shown', async () => {
    const home = join(dir, 'lmtp-0')
    await mkdir(home, {mode: 0o700})
    const bus = new EventBus()
    const stats = new ServerStats(bus)
    const feed = new EventFeed({path: join(home, 'events.sock'), bus, totals: () => stats.totals, server: () => ({hostname: 'h', pid: 1, listeners: [], startedAt: 0})})
    await feed.listen()
    const {lines, statuses} = await watchOnce(join(home, 'events.sock'))
    expect(statuses.some((s) => s.state === 'connected')).toBe(true)
    expect(lines.map((l) => l.type)).toEqual(['hello', 'snapshot'])
    await feed.stop()
  })

  it('serve refuses a default feed directory that belongs to nobody, naming it and its owner', async () => {
    const home = join(dir, 'lmtp-0')
    await mkdir(home, {mode: 0o700})
    await chown(home, nobody!.uid, nobody!.gid)
    await chmod(home, 0o700)
    const bus = new EventBus()
    const stats = new ServerStats(bus)
    const feed = new EventFeed({path: join(home, 'events.sock'), privateDir: true, bus, totals: () => stats.totals, server: () => ({hostname: 'h', pid: 1, listeners: [], startedAt: 0})})
    const err = await feed.listen().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(EventFeedError)
    expect((err as Error).message).toMatch(/lmtp-0 is owned by nobody \(uid \d+\).*pass --events PATH/)
    await feed.stop()
  })
})
