import {describe, expect, test} from 'vitest'
import {formatSize, parseDuration, parseSize, UnitSyntaxError} from '../../src/util/units.js'

describe('parseSize', () => {
  test.each([
    ['1024', 1024],
    ['0', 0],
    ['4K', 4096],
    ['4k', 4096],
    ['4KB', 4096],
    ['4kib', 4096],
    ['500M', 500 * 1024 ** 2],
    ['500mb', 500 * 1024 ** 2],
    ['1G', 1024 ** 3],
    ['2T', 2 * 1024 ** 4],
    ['1.5M', 1.5 * 1024 ** 2],
    [' 10 M ', 10 * 1024 ** 2],
    ['100B', 100],
  ])('%j -> %d', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes)
  })

  test.each(['', 'M', '-1', '1.5', '10X', '1e6', '5 M B', '0x10', '10iB', '99999999999999999999'])('%j is refused with advice', (text) => {
    expect(() => parseSize(text)).toThrow(UnitSyntaxError)
    try {
      parseSize(text)
    } catch (err) {
      expect((err as Error).message).toMatch(/invalid size/)
      expect((err as Error).message).toMatch(/K, M, G|whole number|too large/)
    }
  })
})

describe('formatSize', () => {
  test.each([
    [0, '0 B'],
    [512, '512 B'],
    [1024, '1 KB'],
    [1536, '1.5 KB'],
    [1.5 * 1024 ** 2, '1.5 MB'],
    [500 * 1024 ** 2, '500 MB'],
    [1024 ** 3, '1 GB'],
    [-2048, '-2 KB'],
  ])('%d -> %s', (bytes, text) => {
    expect(formatSize(bytes)).toBe(text)
  })

  test('round-trips whole units through parseSize', () => {
    for (const s of ['4K', '500M', '1G']) expect(formatSize(parseSize(s))).toBe(s.replace(/([KMG])$/, ' $1B'))
  })
})

describe('parseDuration', () => {
  test.each([
    ['30', 30_000],
    ['30s', 30_000],
    ['5m', 300_000],
    ['36h', 36 * 3_600_000],
    ['1d', 86_400_000],
    ['250ms', 250],
    ['1.5s', 1500],
  ])('%j -> %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms)
  })

  test.each(['', 'h', '-5s', '5 weeks', '5x'])('%j is refused', (text) => {
    expect(() => parseDuration(text)).toThrow(/invalid duration.*ms, s, m, h or d/)
  })
})
