import {describe, expect, it} from 'vitest'
import type {FeedLine} from '../../src/protocol/feed-format.js'
import {RateCounter, SERVER_LIMITS, WatchModel} from '../../src/protocol/feed-model.js'
import {buildView} from '../../src/watch/view.js'
import {EventScript} from './script.js'

function feed(model: WatchModel, lines: FeedLine[]): void {
  for (const l of lines) model.apply(l)
}

describe('WatchModel', () => {
  it('tracks a session through its phases and keeps its transcript', () => {
    const s = new EventScript()
    const m = new WatchModel()
    feed(m, [s.hello(), s.snapshot(), ...s.open('x-1', '10.0.0.1:4000')])
    expect(m.open.get('x-1')?.phase).toBe('connected')
    feed(m, s.lhlo('x-1', 'relay.example'))
    expect(m.open.get('x-1')).toMatchObject({phase: 'ready', lhlo: 'relay.example'})
    feed(m, s.transaction('x-1', 'x-1.1', 'a@b.example', [{to: 'u@example.com', data: [250, '2.0.0', 'ok']}], 0))
    expect(m.open.get('x-1')).toMatchObject({phase: 'rcpt', from: 'a@b.example', recipients: 1, lastCommand: 'RCPT TO:<u@example.com>'})
    feed(m, s.transaction('x-1', 'x-1.2', 'c@d.example', [{to: 'v@example.com', data: [250, '2.0.0', 'ok']}], 321))
    const rec = m.open.get('x-1')!
    expect(rec).toMatchObject({phase: 'ready', from: 'c@d.example', recipients: 1, bytes: 321, messages: 1})
    expect(rec.transcript.map((t) => `${t.dir}: ${t.text}`).slice(0, 3)).toEqual([
      'S: 220 mx.test LMTP ready',
      'C: LHLO relay.example',
      'S: 250 mx.test PIPELINING ENHANCEDSTATUSCODES',
    ])
    feed(m, s.quitAndClose('x-1'))
    expect(m.open.size).toBe(0)
    expect(m.closedSessions()).toHaveLength(1)
    expect(m.closedSessions()[0]).toMatchObject({sessionId: 'x-1', phase: 'closed', closeReason: 'client QUIT'})
    expect(m.findSession('x-1')?.transcript.at(-1)?.text).toBe('221 2.0.0 closing connection')
  })

  it('records outcomes newest first, refusals at RCPT included, and keeps totals', () => {
    const s = new EventScript()
    const m = new WatchModel()
    feed(m, [s.hello(), s.snapshot(), ...s.open('x-1'), ...s.lhlo('x-1', 'h')])
    feed(
      m,
      s.transaction('x-1', 'x-1.1', 'f@example.org', [
        {to: 'a@example.com', data: [250, '2.0.0', 'delivered'], mailbox: 'example.com/a'},
        {to: 'nobody@example.com', rcpt: [550, '5.1.1', 'no such user here']},
        {to: 'full@example.com', data: [452, '4.2.2', 'mailbox full']},
        {to: 'a@example.com', data: [250, '2.0.0', 'delivered'], mailbox: 'example.com/a'},
      ]),
    )
    const rows = m.outcomes().map((o) => [o.recipient, o.stage, o.outcome, o.code, o.enhanced])
    expect(rows).toEqual([
      ['a@example.com', 'DATA', 'delivered', 250, '2.0.0'],
      ['full@example.com', 'DATA', 'deferred', 452, '4.2.2'],
      ['a@example.com', 'DATA', 'delivered', 250, '2.0.0'],
      ['nobody@example.com', 'RCPT', 'rejected', 550, '5.1.1'],
    ])
    expect(m.outcomes().at(-1)?.latencyMs).toBe(4)
    expect(m.totals).toMatchObject({connections: 1, openSessions: 1, messages: 1, bytes: 1000, delivered: 2, deferred: 1, rejected: 0, refusedAtRcpt: 1})
  })

  it.each([
    ['transcript', {transcript: 10, outcomes: 1000, closed: 1000, openSessions: 1000}],
    ['outcomes', {transcript: 1000, outcomes: 10, closed: 1000, openSessions: 1000}],
    ['closed sessions', {transcript: 1000, outcomes: 1000, closed: 10, openSessions: 1000}],
    ['open sessions', {transcript: 1000, outcomes: 1000, closed: 1000, openSessions: 10}],
  ])('stays bounded: %s', (_what, limits) => {
    const s = new EventScript()
    const m = new WatchModel(limits)
    feed(m, [s.hello(), s.snapshot()])
    for (let i = 0; i < 200; i++) {
      const id = `s-${i}`
      feed(m, [...s.open(id), ...s.lhlo(id, 'h')])
      for (let j = 0; j < 3; j++) feed(m, s.transaction(id, `${id}.${j}`, 'f@x', [{to: 'a@x', data: [250, '2.0.0', 'ok']}]))
      if (i % 2 === 0) feed(m, s.quitAndClose(id))
    }
    expect(m.outcomes().length).toBeLessThanOrEqual(limits.outcomes)
    expect(m.closedSessions().length).toBeLessThanOrEqual(limits.closed)
    expect(m.open.size).toBeLessThanOrEqual(limits.openSessions)
    for (const r of m.open.values()) expect(r.transcript.length).toBeLessThanOrEqual(limits.transcript * 1.5 + 8)
    const heldInternally = (m as unknown as {outcomeLog: unknown[]; closed: unknown[]})
    expect(heldInternally.outcomeLog.length).toBeLessThanOrEqual(limits.outcomes * 1.5 + 8)
    expect(heldInternally.closed.length).toBeLessThanOrEqual(limits.closed * 1.5 + 8)
    expect(m.totals.delivered).toBe(600)
  })

  it('a snapshot replaces open sessions and totals, retires the vanished ones and merges recent outcomes', () => {
    const s = new EventScript()
    const server = new WatchModel(SERVER_LIMITS)
    feed(server, [s.hello(), s.snapshot(), ...s.open('a'), ...s.open('b'), ...s.lhlo('b', 'bee')])
    feed(server, s.transaction('b', 'b.1', 'f@x', [{to: 'r@x', data: [250, '2.0.0', 'ok']}]))
    feed(server, s.quitAndClose('a'))

    const viewer = new WatchModel()
    feed(viewer, [s.hello(), ...s.open('a'), ...s.open('gone')])
    viewer.apply({type: 'snapshot', at: s.at, totals: {...server.totals}, sessions: server.sessionSnapshots(), recent: server.recentOutcomes()})
    expect([...viewer.open.keys()]).toEqual(['b'])
    expect(viewer.open.get('b')).toMatchObject({lhlo: 'bee', phase: 'ready', messages: 1})
    expect(viewer.open.get('b')!.transcript.length).toBeGreaterThan(5)
    expect(viewer.closedSessions().map((x) => x.sessionId).sort()).toEqual(['a', 'gone'])
    expect(viewer.outcomes().map((o) => o.recipient)).toEqual(['r@x'])
    expect(viewer.totals).toEqual(server.totals)
  })

  it('hello starts over; dropped and bye are remembered', () => {
    const s = new EventScript()
    const m = new WatchModel()
    feed(m, [s.hello(), s.snapshot(), ...s.open('a')])
    feed(m, [{type: 'dropped', at: s.at, count: 7, total: 7}, {type: 'bye', at: s.at, reason: 'server stopping'}])
    expect(m.dropped).toBe(7)
    expect(m.bye).toBe('server stopping')
    m.apply(s.hello({pid: 1}))
    expect(m.open.size).toBe(0)
    expect(m.dropped).toBe(0)
    expect(m.server?.pid).toBe(1)
  })

  it('the view lists open sessions, then closed ones, and filters failures', () => {
    const s = new EventScript()
    const m = new WatchModel()
    feed(m, [s.hello(), s.snapshot(), ...s.open('a'), ...s.open('b'), ...s.quitAndClose('a')])
    feed(m, s.transaction('b', 'b.1', 'f@x', [{to: 'ok@x', data: [250, '2.0.0', 'ok']}, {to: 'no@x', rcpt: [550, '5.1.1', 'unknown']}]))
    const v = buildView(m, {state: 'connected', path: '/x'}, s.at, {failuresOnly: true})
    expect(v.sessions.map((r) => [r.sessionId, r.phase])).toEqual([
      ['b', 'ready'],
      ['a', 'closed'],
    ])
    expect(v.outcomes.map((o) => o.recipient)).toEqual(['no@x'])
    expect(buildView(m, {state: 'connected', path: '/x'}, s.at).outcomes).toHaveLength(2)
  })
})

describe('RateCounter', () => {
  it.each([
    [[1000, 1500, 2100, 4999], 5000, 5, [2, 1, 0, 1, 0]],
    [[0, 61_000], 61_500, 3, [0, 0, 1]],
  ])('counts %j per second up to %d', (times, now, seconds, expected) => {
    const r = new RateCounter(60)
    for (const t of times) r.add(t)
    expect(r.series(now, seconds)).toEqual(expected)
  })

  it('ignores times older than its window and averages whole seconds', () => {
    const r = new RateCounter(10)
    r.add(100_000, 4)
    r.add(100_000 - 10_000, 99)
    expect(r.series(100_500, 1)).toEqual([4])
    r.add(101_000, 6)
    expect(r.average(102_000, 2)).toBe(5)
  })
})
