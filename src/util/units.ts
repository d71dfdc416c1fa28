/**
 * Sizes and durations as operators write them on the command line and in the users file (`500M`, `4K`, `36h`),
 * and sizes as people read them in logs and tables (`1.5 MB`). One parser, so every flag agrees on the syntax.
 */

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  K: 1024,
  M: 1024 ** 2,
  G: 1024 ** 3,
  T: 1024 ** 4,
}

/** What parseSize accepts, quoted in its error messages so the message tells the fix. */
export const SIZE_SYNTAX = 'a whole number of bytes with an optional K, M, G or T suffix (1024-based), e.g. 1048576, 4K, 500M, 1G'

/** A size or duration that could not be read; the message says what is accepted. */
export class UnitSyntaxError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'UnitSyntaxError'
  }
}

/**
 * Parses a size such as `1024`, `4K`, `500M`, `1.5G`, `2gb` or `10 MiB` into bytes (1024-based; case-insensitive;
 * an optional `B` or `iB` after the unit). Fractions are allowed with a unit and rounded down to whole bytes.
 * Throws UnitSyntaxError for anything else, including negative, empty and unsafe-integer values.
 */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$/i.exec(text)
  if (!m || (m[2] === '' && m[3] !== undefined && m[3].toLowerCase() === 'ib')) {
    throw new UnitSyntaxError(`invalid size ${JSON.stringify(text)}: expected ${SIZE_SYNTAX}`)
  }
  const unit = (m[2] ?? '').toUpperCase()
  const num = Number(m[1])
  if (unit === '' && !Number.isInteger(num)) {
    throw new UnitSyntaxError(`invalid size ${JSON.stringify(text)}: a size without a unit must be a whole number of bytes`)
  }
  const bytes = Math.floor(num * SIZE_UNITS[unit]!)
  if (!Number.isSafeInteger(bytes)) {
    throw new UnitSyntaxError(`invalid size ${JSON.stringify(text)}: too large`)
  }
  return bytes
}

/** Formats bytes for people: `512 B`, `4 KB`, `1.5 MB`, `120 GB` (1024-based, like parseSize). */
export function formatSize(bytes: number): string {
  if (!Number.isFinite(bytes)) return String(bytes)
  const sign = bytes < 0 ? '-' : ''
  let value = Math.abs(bytes)
  if (value < 1024) return `${sign}${Math.round(value)} B`
  const units = ['KB', 'MB', 'GB', 'TB', 'PB']
  let i = -1
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024
    i++
  }
  const shown = value >= 100 ? String(Math.round(value)) : value.toFixed(1).replace(/\.0$/, '')
  return `${sign}${shown} ${units[i]}`
}

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
}

/** What parseDuration accepts, quoted in its error messages. */
export const DURATION_SYNTAX = 'a number with a unit ms, s, m, h or d (e.g. 500ms, 30s, 5m, 36h); a bare number means seconds'

/**
 * Parses a duration such as `30s`, `5m`, `36h`, `1d`, `250ms` or a bare number of seconds into milliseconds.
 * Throws UnitSyntaxError otherwise.
 */
export function parseDuration(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/i.exec(text)
  if (!m) throw new UnitSyntaxError(`invalid duration ${JSON.stringify(text)}: expected ${DURATION_SYNTAX}`)
  const unit = (m[2] ?? 's').toLowerCase()
  const ms = Math.round(Number(m[1]) * DURATION_UNITS[unit]!)
  if (!Number.isSafeInteger(ms)) throw new UnitSyntaxError(`invalid duration ${JSON.stringify(text)}: too large`)
  return ms
}
