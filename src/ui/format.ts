/**
 * Text formatting for the dashboard: sizes, durations, clock times, fixed-width cells and the sparkline.
 * Pure functions (no Ink), so frames are predictable and easy to test.
 */

/** `1,234` style counts. */
export function formatCount(n: number): string {
  return Math.round(n).toLocaleString('en-US')
}

/** `512 B`, `1.2 KB`, `3.4 MB`, `1.0 GB` (powers of 1024). */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`
  const units = ['KB', 'MB', 'GB', 'TB']
  let v = n / 1024
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`
}

/** `45s`, `3m12s`, `2h05m`, `3d04h`. */
export function formatDuration(ms: number): string {
  const s = Math.floor(Math.max(0, ms) / 1000)
  if (s < 60) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`
  const h = Math.floor(m / 60)
  if (h < 24) return `${h}h${String(m % 60).padStart(2, '0')}m`
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, '0')}h`
}

/** `12ms`, `1.4s`, `-` when unknown. */
export function formatLatency(ms: number | undefined): string {
  if (ms === undefined) return '-'
  if (ms < 1000) return `${Math.round(ms)}ms`
  return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)}s`
}

/** Local wall-clock time `HH:MM:SS`. */
export function formatClock(at: number): string {
  const d = new Date(at)
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((x) => String(x).padStart(2, '0')).join(':')
}

/** A rate per second: `0`, `4.2`, `120`. */
export function formatRate(perSec: number): string {
  if (perSec === 0) return '0'
  return perSec >= 100 ? perSec.toFixed(0) : perSec.toFixed(1)
}

/** Exactly `width` characters: cut with `…` when too long, padded (left- or right-aligned) when short. */
export function fit(text: string, width: number, align: 'left' | 'right' = 'left'): string {
  if (width <= 0) return ''
  const chars = [...text]
  if (chars.length > width) return width === 1 ? '…' : `${chars.slice(0, width - 1).join('')}…`
  return align === 'left' ? text.padEnd(width) : text.padStart(width)
}

/** A session id as rows show it: the per-server counter after the last dash (`lz8k1q-2f` -> `#2f`). */
export function shortSessionId(id: string): string {
  const dash = id.lastIndexOf('-')
  return dash >= 0 ? `#${id.slice(dash + 1)}` : id.slice(-6)
}

const BARS = '▁▂▃▄▅▆▇█'

/** A one-line bar chart, one character per value; zero is the lowest bar, the largest value the highest. */
export function sparkline(values: readonly number[]): string {
  const max = Math.max(0, ...values)
  return values
    .map((v) => {
      if (max === 0 || v <= 0) return BARS[0]
      return BARS[Math.min(BARS.length - 1, 1 + Math.floor(((v / max) * (BARS.length - 2)) + 0.5))]
    })
    .join('')
}

/** A column: a fixed width, or a share of what is left (`grow`) with a minimum. */
export type ColumnSpec = {width: number} | {min: number; grow: number}

/** Widths for `specs` in `total` columns, one space between columns; growing columns share the rest. */
export function layoutColumns(total: number, specs: readonly ColumnSpec[]): number[] {
  const gaps = Math.max(0, specs.length - 1)
  let fixed = gaps
  let growSum = 0
  for (const s of specs) {
    if ('width' in s) fixed += s.width
    else {
      fixed += s.min
      growSum += s.grow
    }
  }
  const spare = Math.max(0, total - fixed)
  let given = 0
  const widths = specs.map((s) => {
    if ('width' in s) return s.width
    const extra = Math.floor((spare * s.grow) / growSum)
    given += extra
    return s.min + extra
  })
  // Rounding leftovers go to the last growing column.
  const lastGrow = specs.map((s) => 'grow' in s).lastIndexOf(true)
  if (lastGrow >= 0) widths[lastGrow]! += spare - given
  return widths
}
