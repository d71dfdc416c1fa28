import {render} from 'ink-testing-library'
import {afterEach, describe, expect, it, vi} from 'vitest'
import {WatchApp} from '../../src/ui/watch-app.js'
import type {FeedLineListener, FeedSource, FeedStatus} from '../../src/watch/feed-client.js'
import type {FeedLine} from '../../src/protocol/feed-format.js'
import {EventScript} from '../watch/script.js'

/** A feed the test drives by hand. */
class ScriptedFeed implements FeedSource {
  private onLine: FeedLineListener | undefined
  private onStatus: ((s: FeedStatus) => void) | undefined
  subscribe(onLine: FeedLineListener, onStatus: (s: FeedStatus) => void): () => void {
    this.onLine = onLine
    this.onStatus = onStatus
    onStatus({state: 'connected', path: '/run/test/events.sock'})
    return () => {
      this.onLine = undefined
    }
  }
  push(...lines: FeedLine[]): void {
    for (const l of lines) this.onLine?.(l)
  }
  status(s: FeedStatus): void {
    this.onStatus?.(s)
  }
}

const KEY = {up: '\u001B[A', down: '\u001B[B', enter: '\r', escape: '\u001B'}

let unmount: (() => void) | undefined
afterEach(() => unmount?.())

/** A dashboard on a scripted feed: two sessions, a mix of outcomes. */
function setup(rows = 40) {
  const s = new EventScript(Date.parse('2026-03-01T12:00:00Z'))
  const feed = new ScriptedFeed()
  const app = render(<WatchApp source={feed} size={{columns: 100, rows}} now={() => s.at + 2000} intervalMs={0} />)
  unmount = app.unmount
  const frame = (): string => app.lastFrame() ?? ''
  return {s, feed, app, frame}
}

function fill({s, feed}: ReturnType<typeof setup>): void {
  feed.push(
    s.hello({hostname: 'mx1.example.net', listeners: ['127.0.0.1:2424', 'unix:/run/lmtp.sock']}),
    s.snapshot({totals: {startedAt: s.at - 65_000, connections: 40, openSessions: 0, messages: 100, bytes: 5 * 1024 * 1024, delivered: 150, deferred: 2, rejected: 1, refusedAtRcpt: 3}}),
    ...s.open('k1-a1', '192.0.2.10:41000'),
    ...s.lhlo('k1-a1', 'relay.example.org'),
    ...s.transaction('k1-a1', 'k1-a1.1', 'alice@example.org', [
      {to: 'bob@example.com', data: [250, '2.0.0', '<bob@example.com> delivered'], mailbox: 'example.com/bob', latencyMs: 12},
      {to: 'ghost@example.com', rcpt: [550, '5.1.1', 'no such user here']},
      {to: 'full@example.com', data: [452, '4.2.2', '<full@example.com> mailbox full'], latencyMs: 30},
    ]),
    ...s.open('k1-b2', 'unix'),
    ...s.lhlo('k1-b2', 'postfix.local'),
    ...s.transaction('k1-b2', 'k1-b2.1', 'carol@example.org', [{to: 'dave@example.com', data: [250, '2.0.0', 'ok']}], 0),
  )
}

describe('WatchApp', () => {
  it('shows the header numbers, the session rows and the outcome rows with codes', async () => {
    const t = setup()
    fill(t)
    await vi.waitFor(() => expect(t.frame()).toContain('k1-b2'.replace('k1-', '#')))
    const f = t.frame()
    expect(f).toContain('mx1.example.net pid 4242 · 127.0.0.1:2424, unix:/run/lmtp.sock · up 1m07s · ● live')
    expect(f).toContain('conn 2 now / 42 · msgs 101 · 5.0 MB · delivered 151 · deferred 3 · rejected 1 · refused at RCPT 4')
    expect(f).toMatch(/Sessions: 2 open/)
    const rows = f.split('\n')
    const a1 = rows.find((r) => r.includes('#a1'))!
    expect(a1).toMatch(/#a1\s+192\.0\.2\.10:41000\s+ready\s+relay\.exam…\s+<alice@example…\s+2\s+1000 B\s+2s\s+DATA/)
    const b2 = rows.find((r) => r.includes('#b2') && r.includes('unix'))!
    expect(b2).toMatch(/#b2\s+unix\s+rcpt\s+postfix.lo…\s+<carol@example…\s+1\s+0 B\s+2s\s+RCPT TO:<dave…/)
    const outcomes = rows.filter((r) => /@example\.com\s+[✓!✗]/.test(r))
    expect(outcomes.map((r) => r.replace(/\s+/g, ' ').trim())).toEqual([
      expect.stringMatching(/^▌ \d\d:\d\d:\d\d #a1 full@example\.com ! deferred 452 4\.2\.2 <full@example\.com> mailbox… 30ms$/),
      expect.stringMatching(/^\d\d:\d\d:\d\d #a1 bob@example\.com ✓ delivered 250 2\.0\.0 example\.com\/bob 12ms$/),
      expect.stringMatching(/^▌ \d\d:\d\d:\d\d #a1 ghost@example\.com ✗ rejected 550 5\.1\.1 at RCPT: no such user here 4ms$/),
    ])
  })

  it('selects a session with the arrow keys and shows its transcript on enter, esc goes back', async () => {
    const t = setup()
    fill(t)
    await vi.waitFor(() => expect(t.frame()).toContain('#b2'))
    t.app.stdin.write(KEY.down)
    await vi.waitFor(() => expect(t.frame()).toMatch(/▶ #a1/))
    t.app.stdin.write(KEY.down)
    await vi.waitFor(() => expect(t.frame()).toMatch(/▶ #b2/))
    t.app.stdin.write(KEY.up)
    await vi.waitFor(() => expect(t.frame()).toMatch(/▶ #a1/))
    t.app.stdin.write(KEY.enter)
    await vi.waitFor(() => expect(t.frame()).toContain('Session k1-a1 · 192.0.2.10:41000 via 127.0.0.1:2424 · ready'))
    const lines = t.frame().split('\n')
    const transcript = lines.filter((l) => /[CS]: /.test(l)).map((l) => l.replace(/\s+/g, ' ').trim())
    expect(transcript[0]).toMatch(/^\+1ms S: 220 mx\.test LMTP ready$/)
    expect(transcript).toContainEqual(expect.stringMatching(/^\+\d+ms Δ1 C: LHLO relay\.example\.org$/))
    expect(transcript).toContainEqual(expect.stringMatching(/Δ3 S: 550 5\.1\.1 no such user here$/))
    expect(transcript.at(-1)).toMatch(/S: 452 4\.2\.2 <full@example\.com> mailbox full$/)
    expect(t.frame()).not.toContain('Outcomes')
    t.app.stdin.write(KEY.escape)
    await vi.waitFor(() => expect(t.frame()).toContain('Outcomes'))
  })

  it('f shows failures only, and again shows everything', async () => {
    const t = setup()
    fill(t)
    await vi.waitFor(() => expect(t.frame()).toContain('bob@example.com'))
    t.app.stdin.write('f')
    await vi.waitFor(() => expect(t.frame()).toContain('Outcomes (failures only)'))
    expect(t.frame()).not.toContain('bob@example.com')
    expect(t.frame()).toContain('ghost@example.com')
    expect(t.frame()).toContain('full@example.com')
    t.app.stdin.write('f')
    await vi.waitFor(() => expect(t.frame()).toContain('bob@example.com'))
  })

  it('p freezes the display and counts what arrives; p again catches up', async () => {
    const t = setup()
    fill(t)
    await vi.waitFor(() => expect(t.frame()).toContain('bob@example.com'))
    t.app.stdin.write('p')
    await vi.waitFor(() => expect(t.frame()).toContain('PAUSED'))
    const late = t.s.transaction('k1-b2', 'k1-b2.2', 'carol@example.org', [{to: 'late@example.com', data: [250, '2.0.0', 'ok']}])
    t.feed.push(...late)
    await vi.waitFor(() => expect(t.frame()).toContain(`PAUSED +${late.length} new`))
    expect(t.frame()).not.toContain('late@example.com')
    t.app.stdin.write('p')
    await vi.waitFor(() => expect(t.frame()).toContain('late@example.com'))
    expect(t.frame()).not.toContain('PAUSED')
  })

  it('says when the server stopped, and shows ? help', async () => {
    const t = setup()
    fill(t)
    await vi.waitFor(() => expect(t.frame()).toContain('● live'))
    t.feed.push({type: 'bye', at: t.s.at, reason: 'server stopping'})
    t.feed.status({state: 'disconnected', path: '/run/test/events.sock', reason: 'server stopped (server stopping)', retryInMs: 2000})
    await vi.waitFor(() => expect(t.frame()).toContain('○ server gone'))
    expect(t.frame()).toContain('server stopped (server stopping); reconnecting in 2s (showing the last picture)')
    expect(t.frame()).toContain('ghost@example.com')
    t.app.stdin.write('?')
    await vi.waitFor(() => expect(t.frame()).toContain('Keys'))
    expect(t.frame()).toContain("show the selected session's transcript")
  })

  it.each([12, 20, 40])('never draws more lines than the terminal has (%d rows)', async (rows) => {
    const t = setup(rows)
    fill(t)
    for (let i = 0; i < 30; i++) {
      const id = `k2-s${i}`
      t.feed.push(...t.s.open(id), ...t.s.lhlo(id, 'h'), ...t.s.transaction(id, `${id}.1`, 'f@x', [{to: `r${i}@x`, data: [250, '2.0.0', 'ok']}]))
    }
    await vi.waitFor(() => expect(t.frame()).toContain('r29@x'))
    expect(t.frame().split('\n').length).toBeLessThan(rows)
    for (const line of t.frame().split('\n')) expect([...line].length).toBeLessThanOrEqual(100)
  })
})
