import {describe, expect, it} from 'vitest'
import {fit as fitCell, formatBytes, formatDuration, formatLatency, layoutColumns, shortSessionId, sparkline} from '../../src/ui/format.js'
import {keyAction} from '../../src/ui/hooks/use-watch-keys.js'
import {splitRows} from '../../src/ui/watch-app.js'
import {scrollStart} from '../../src/ui/components/sessions-table.js'

const noKey = {upArrow: false, downArrow: false, return: false, escape: false, backspace: false, delete: false}

describe('dashboard formatting', () => {
  it.each([
    [0, '0 B'],
    [1023, '1023 B'],
    [1536, '1.5 KB'],
    [5 * 1024 * 1024, '5.0 MB'],
    [300 * 1024 * 1024, '300 MB'],
  ])('formatBytes(%d) = %s', (n, s) => expect(formatBytes(n)).toBe(s))

  it.each([
    [0, '0s'],
    [59_999, '59s'],
    [192_000, '3m12s'],
    [2 * 3600_000 + 5 * 60_000, '2h05m'],
    [76 * 3600_000, '3d04h'],
  ])('formatDuration(%d) = %s', (ms, s) => expect(formatDuration(ms)).toBe(s))

  it.each([
    [undefined, '-'],
    [12.4, '12ms'],
    [1450, '1.4s'],
    [12_000, '12s'],
  ])('formatLatency(%s) = %s', (ms, s) => expect(formatLatency(ms)).toBe(s))

  it.each([
    ['abc', 5, 'left', 'abc  '],
    ['abc', 5, 'right', '  abc'],
    ['abcdef', 4, 'left', 'abc…'],
    ['abcdef', 1, 'left', '…'],
    ['abc', 0, 'left', ''],
  ] as const)('fit(%s, %d, %s)', (text, width, align, out) => expect(fitCell(text, width, align)).toBe(out))

  it.each([
    [[0, 0, 0], '▁▁▁'],
    [[0, 5, 10], '▁▅█'],
    [[1, 100], '▂█'],
  ])('sparkline(%j) = %s', (values, s) => expect(sparkline(values)).toBe(s))

  it.each([
    ['m0ab12-1f', '#1f'],
    ['plain', 'plain'],
  ])('shortSessionId(%s) = %s', (id, s) => expect(shortSessionId(id)).toBe(s))

  it('layoutColumns fills the width exactly and keeps minimums', () => {
    const specs = [{width: 5}, {min: 10, grow: 1}, {min: 10, grow: 3}]
    for (const total of [27, 50, 101]) {
      const w = layoutColumns(total, specs)
      expect(w[0]).toBe(5)
      expect(w[1]).toBeGreaterThanOrEqual(10)
      expect(w.reduce((a, b) => a + b, 0) + 2).toBe(total)
    }
    expect(layoutColumns(10, specs)).toEqual([5, 10, 10])
  })

  it.each([
    [30, 0, {sessions: 1, outcomes: 19}],
    [30, 3, {sessions: 3, outcomes: 17}],
    [30, 50, {sessions: 8, outcomes: 12}],
    [10, 50, {sessions: 1, outcomes: 1}],
  ])('splitRows(%d rows, %d sessions)', (rows, sessions, expected) => expect(splitRows(rows, sessions)).toEqual(expected))

  it.each([
    [10, 5, -1, 0],
    [10, 5, 3, 0],
    [10, 5, 7, 3],
    [10, 5, 9, 5],
    [3, 5, 2, 0],
  ])('scrollStart(%d rows, %d visible, selected %d) = %d', (count, height, selected, start) =>
    expect(scrollStart(count, height, selected)).toBe(start),
  )

  it.each([
    ['q', {}, 'quit'],
    ['p', {}, 'pause'],
    ['f', {}, 'failures'],
    ['?', {}, 'help'],
    ['', {upArrow: true}, 'up'],
    ['', {downArrow: true}, 'down'],
    ['', {return: true}, 'open'],
    ['', {escape: true}, 'back'],
    ['x', {}, undefined],
  ])('key %j %j -> %s', (input, key, action) => expect(keyAction(input, {...noKey, ...key})).toBe(action))
})
