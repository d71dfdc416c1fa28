/**
 * The benchmark's results: the shape of the JSON file (bench/results/<date>.json), medians and ratios, and
 * the one table printed at the end. Kept apart from the runner so the smoke test can check the shape.
 */

/** One measured quantity of one side of a comparison, with one value per round. */
export interface Measurement {
  /** Scenario number from the issue (0-6). */
  scenario: number
  /** What was compared, e.g. `1 KB, 16 sessions`. */
  case: string
  /** Who was measured, e.g. `serve`, `dovecot (fsync always)`, `smtp-sink`, `durable limit (C)`. */
  side: string
  /** Unit of the values, e.g. `msg/s`, `rcpt/s`, `MB`, `ms`. */
  unit: string
  /** One value per round (NaN when that round failed). */
  values: number[]
  /** Median of the finite values (NaN when none). */
  median: number
  /** Why rounds failed, when some did. */
  errors?: string[]
}

/** A ratio of two sides, computed per round (same round, same conditions) and summarised by its median. */
export interface RatioResult {
  scenario: number
  case: string
  /** `A / B`. */
  name: string
  values: number[]
  median: number
  /** The issue's target, when it has one. */
  target?: {op: '>=' | '<=' | '<'; value: number}
  /** Whether the median meets the target (undefined without a target or a value). */
  met?: boolean
}

/** A scenario or case that could not run here, and why. */
export interface Unavailable {
  scenario: number
  case: string
  reason: string
}

/** The whole results file. */
export interface BenchResults {
  /** ISO time the run started. */
  startedAt: string
  /** The command line that produced it. */
  command: string
  machine: {cores: number; cpuModel: string; memoryBytes: number; node: string; os: string; loadAverage: number[]}
  peers: Record<string, string>
  /** The builds of `lmtp` measured (working tree, and the baseline ref when given). */
  builds: {label: string; revision: string}[]
  settings: {messages: number; rounds: number; sessions: number[]; sizes: number[]; scenarios: number[]}
  measurements: Measurement[]
  ratios: RatioResult[]
  unavailable: Unavailable[]
  durationMs: number
}

/** Median of the finite numbers (NaN when there are none). */
export function median(values: readonly number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return Number.NaN
  const mid = v.length >> 1
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2
}

/** Whether `value` meets `target`. */
export function meets(value: number, target: NonNullable<RatioResult['target']>): boolean | undefined {
  if (!Number.isFinite(value)) return undefined
  if (target.op === '>=') return value >= target.value
  if (target.op === '<=') return value <= target.value
  return value < target.value
}

function fmt(n: number): string {
  if (!Number.isFinite(n)) return '-'
  if (Math.abs(n) >= 100) return Math.round(n).toLocaleString('en-US')
  if (Math.abs(n) >= 10) return n.toFixed(1)
  return n.toFixed(2)
}

/** Renders rows as a Markdown table (also readable in a terminal). */
export function markdownTable(header: string[], rows: string[][]): string {
  const lines = [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`]
  for (const r of rows) lines.push(`| ${r.join(' | ')} |`)
  return lines.join('\n')
}

/** The one table: every measurement, then every ratio with its target, then what was not available. */
export function renderResults(r: BenchResults): string {
  const rows: string[][] = []
  for (const m of r.measurements) {
    const rounds = m.values.map(fmt).join(' / ')
    rows.push([String(m.scenario), m.case, m.side, `${fmt(m.median)} ${m.unit}`, rounds, m.errors?.length ? `${m.errors.length} failed` : ''])
  }
  for (const q of r.ratios) {
    const target = q.target ? `${q.target.op} ${q.target.value}` : 'report'
    const verdict = q.met === undefined ? '' : q.met ? 'met' : 'NOT met'
    rows.push([String(q.scenario), q.case, `ratio ${q.name}`, `${fmt(q.median)}x`, q.values.map(fmt).join(' / '), `${target} ${verdict}`.trim()])
  }
  for (const u of r.unavailable) rows.push([String(u.scenario), u.case, 'not available', '-', '-', u.reason])
  const table = markdownTable(['scenario', 'case', 'measure', 'median', 'per round', 'target / note'], rows)
  const m = r.machine
  const head = `${m.cores} cores (${m.cpuModel}), ${fmt(m.memoryBytes / 2 ** 30)} GiB, Node ${m.node}, load ${m.loadAverage.map((x) => x.toFixed(2)).join(' ')}; ${Object.entries(r.peers)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ')}`
  return `${head}\n${r.settings.rounds} rounds, ${r.settings.messages} messages per run\n\n${table}\n`
}

/** Checks that a parsed results file has the shape above (used by the smoke test); returns the problems. */
export function validateResults(r: unknown): string[] {
  const problems: string[] = []
  const o = r as Partial<BenchResults>
  if (typeof o !== 'object' || o === null) return ['not an object']
  if (typeof o.machine?.cores !== 'number' || o.machine.cores < 1) problems.push('machine.cores')
  if (typeof o.machine?.memoryBytes !== 'number') problems.push('machine.memoryBytes')
  if (typeof o.machine?.node !== 'string') problems.push('machine.node')
  if (typeof o.peers !== 'object') problems.push('peers')
  if (!Array.isArray(o.measurements)) problems.push('measurements')
  for (const m of o.measurements ?? []) {
    if (!Array.isArray(m.values) || m.values.length !== o.settings?.rounds) problems.push(`values of ${m.side} in ${m.case}`)
    if (typeof m.unit !== 'string' || typeof m.side !== 'string') problems.push('measurement fields')
  }
  if (!Array.isArray(o.ratios)) problems.push('ratios')
  if (!Array.isArray(o.unavailable)) problems.push('unavailable')
  return problems
}
