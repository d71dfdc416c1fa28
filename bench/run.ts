/**
 * `npm run bench`: the benchmark harness of issue 7. Starts every server itself (fresh Maildir each run),
 * drives it, stops it; each comparison runs all its sides in the same run, interleaved (the order rotates each
 * round), for several rounds, and reports per-round ratios and their median. Prints one table and writes
 * bench/results/<date>.json (or --out FILE) with the machine, Node and peer versions.
 *
 *   npm run bench -- [--messages 5000] [--rounds 3] [--sessions 1,16] [--sizes 1024,102400]
 *                    [--scenarios 0,1,2,3,4,5,6,7,8] [--baseline REF] [--big-message 200000000] [--idle 1000]
 *                    [--out FILE] [--quick]
 *
 * Scenario 7: serve into ONE mailbox with a quota (`--quota 10G`, never reached) beside the same without quota,
 * at the largest session count and the first size (with --baseline: before/after of the quota path).
 * Scenario 8: `serve --workers 1` vs `--workers 2`, largest session count, first size.
 *
 * --baseline REF also builds the git ref REF and measures it beside the working tree (before/after, one run).
 * --variant NAME=VALUE[,NAME=VALUE] (repeatable) also measures the working tree's serve with that environment
 * (e.g. `--variant LMTP_WRITER_THREADS=0`), as another `serve@...` side of the same comparisons.
 */
import {mkdir, writeFile} from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {findExecutable} from '../test/support/peers/gate.js'
import {runPeer} from '../test/support/peers/proc.js'
import {buildCli, type CliBuild, PROJECT_ROOT} from './lib/build.js'
import {
  type BenchResults,
  type Measurement,
  median,
  meets,
  type RatioResult,
  renderResults,
  type Unavailable,
} from './lib/report.js'
import {
  type BenchServer,
  durableLimitBinary,
  peerVersions,
  processMemory,
  runDurableLimit,
  runSmtpSourceLoad,
  sampleGroupRss,
  startDovecotBench,
  startServe,
  startSinkBench,
} from './lib/servers.js'

/** Parsed command line. */
export interface BenchOptions {
  messages: number
  rounds: number
  sessions: number[]
  sizes: number[]
  scenarios: number[]
  baseline?: string
  /** Environments of extra serve sides (`--variant`). */
  variants: Record<string, string>[]
  bigMessage: number
  idle: number
  /** Open-loop rate of scenario 5, messages/s. */
  latencyRate: number
  out?: string
}

function parseArgs(argv: string[]): BenchOptions {
  const o: BenchOptions = {
    messages: 5000,
    rounds: 3,
    sessions: [1, 16],
    sizes: [1024, 102_400],
    scenarios: [0, 1, 2, 3, 4, 5, 6, 7, 8],
    bigMessage: 200_000_000,
    idle: 1000,
    latencyRate: 100,
    variants: [],
  }
  const list = (v: string) => v.split(',').map((x) => Number(x.trim()))
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    const v = () => {
      const x = argv[++i]
      if (x === undefined) throw new Error(`${a} needs a value`)
      return x
    }
    if (a === '--messages') o.messages = Number(v())
    else if (a === '--rounds') o.rounds = Number(v())
    else if (a === '--sessions') o.sessions = list(v())
    else if (a === '--sizes') o.sizes = list(v())
    else if (a === '--scenarios') o.scenarios = list(v())
    else if (a === '--baseline') o.baseline = v()
    else if (a === '--variant') {
      const env: Record<string, string> = {}
      for (const kv of v().split(',')) {
        const eq = kv.indexOf('=')
        if (eq <= 0) throw new Error(`--variant expects NAME=VALUE[,NAME=VALUE], got ${kv}`)
        env[kv.slice(0, eq)] = kv.slice(eq + 1)
      }
      o.variants.push(env)
    }
    else if (a === '--big-message') o.bigMessage = Number(v())
    else if (a === '--idle') o.idle = Number(v())
    else if (a === '--latency-rate') o.latencyRate = Number(v())
    else if (a === '--out') o.out = v()
    else if (a === '--quick') Object.assign(o, {messages: 20, rounds: 1, sizes: [1024], bigMessage: 2_000_000, idle: 20, latencyRate: 20})
    else throw new Error(`unknown option ${a} (see the comment at the top of bench/run.ts)`)
  }
  for (const n of [o.messages, o.rounds, o.bigMessage, o.idle, ...o.sessions, ...o.sizes]) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`not a positive integer in the options: ${n}`)
  }
  return o
}

/** One side of a comparison: how to take one measurement (a fresh server each time). */
interface Side {
  name: string
  unit: string
  /** Takes one measurement in round `round` (0-based). */
  measure: (round: number) => Promise<number>
}

/** A comparison: sides measured in the same rounds, and the ratios between them. */
interface Comparison {
  scenario: number
  case: string
  sides: Side[]
  ratios: {a: string; b: string; target?: RatioResult['target']}[]
  /** Called once after every round (stops a server shared by the rounds). */
  cleanup?: () => Promise<unknown>
}

const KB = (n: number) => (n >= 1_000_000 ? `${Math.round(n / 1_000_000)} MB` : `${Math.round(n / 1024)} KB`)

/** Peak RSS seen during serve/Dovecot runs at the largest session count (scenario 4). */
const memoryPeaks = new Map<string, {bytes: number; processes: number}>()

function log(line: string): void {
  process.stderr.write(`bench: ${line}\n`)
}

/**
 * Throughput of one server started by `start`: smtp-source load, delivered files checked, returns
 * messages/s (or recipients/s when `perRecipient`). Samples memory when `memoryKey` is set.
 */
async function throughput(
  start: () => Promise<BenchServer>,
  load: {messages: number; sessions: number; size: number; recipients?: number},
  options: {perRecipient?: boolean; memoryKey?: string; verify: boolean},
): Promise<number> {
  const server = await start()
  try {
    const sampler = options.memoryKey ? sampleGroupRss(server.pid) : undefined
    const ms = await runSmtpSourceLoad({port: server.port, ...load})
    const peak = await sampler?.stop()
    if (peak && options.memoryKey) {
      const prev = memoryPeaks.get(options.memoryKey)
      if (!prev || peak.peakBytes > prev.bytes) memoryPeaks.set(options.memoryKey, {bytes: peak.peakBytes, processes: peak.peakProcesses})
    }
    const rcpts = load.messages * (load.recipients ?? 1)
    if (options.verify) {
      const delivered = await server.countDelivered()
      if (delivered !== rcpts) throw new Error(`expected ${rcpts} delivered files, found ${delivered}`)
    }
    return ((options.perRecipient ? rcpts : load.messages) * 1000) / ms
  } finally {
    await server.stop()
  }
}

function comparisons(o: BenchOptions, builds: CliBuild[], have: Record<string, boolean>, unavailable: Unavailable[]): Comparison[] {
  const out: Comparison[] = []
  const maxSessions = Math.max(...o.sessions)
  const serveName = (b: CliBuild, i: number) => (i === 0 ? 'serve' : `serve@${b.label}`)
  for (const size of o.sizes) {
    for (const sessions of o.sessions) {
      const name = `${KB(size)}, ${sessions} session${sessions > 1 ? 's' : ''}`
      const load = {messages: o.messages, sessions, size}
      const sides: Side[] = []
      const ratios: Comparison['ratios'] = []
      const memKey = (who: string) => (sessions === maxSessions && size === o.sizes[0] ? who : undefined)
      if (o.scenarios.includes(1)) {
        for (const [i, b] of builds.entries()) {
          sides.push({
            name: serveName(b, i),
            unit: 'msg/s',
            measure: () => throughput(() => startServe(b), load, {verify: true, memoryKey: i === 0 ? memKey('serve') : undefined}),
          })
        }
        if (have.dovecot) {
          sides.push({
            name: 'dovecot',
            unit: 'msg/s',
            measure: () => throughput(startDovecotBench, load, {verify: true, memoryKey: memKey('dovecot')}),
          })
          ratios.push({a: 'serve', b: 'dovecot', target: {op: '>=', value: 2}})
        } else unavailable.push({scenario: 1, case: name, reason: 'dovecot is not installed (bash .ci/install-peers)'})
        if (have.sink) {
          sides.push({name: 'smtp-sink', unit: 'msg/s', measure: () => throughput(startSinkBench, load, {verify: false})})
          ratios.push({a: 'serve', b: 'smtp-sink'})
        }
        for (const [i, b] of builds.entries()) if (i > 0) ratios.push({a: 'serve', b: serveName(b, i)})
      }
      if (o.scenarios.includes(0)) {
        if (have.cc) {
          sides.push({name: 'durable limit (C)', unit: 'files/s', measure: () => runDurableLimit(sessions, o.messages, size + 300)})
          if (o.scenarios.includes(1)) {
            ratios.push({a: 'serve', b: 'durable limit (C)', target: sessions === 16 && size === 1024 ? {op: '>=', value: 0.7} : undefined})
          }
        } else unavailable.push({scenario: 0, case: name, reason: 'no C compiler to build bench/durable-limit.c'})
      }
      if (sides.length > 0) out.push({scenario: o.scenarios.includes(1) ? 1 : 0, case: name, sides, ratios})
    }
  }
  if (o.scenarios.includes(2)) {
    const recipients = 50
    const messages = Math.max(1, Math.ceil(o.messages / 25))
    for (const sessions of o.sessions) {
      const name = `50 recipients, 1 KB, ${sessions} session${sessions > 1 ? 's' : ''}, ${messages} messages`
      const load = {messages, sessions, size: 1024, recipients}
      const sides: Side[] = builds.map((b, i) => ({
        name: serveName(b, i),
        unit: 'rcpt/s',
        measure: () => throughput(() => startServe(b), load, {verify: true, perRecipient: true}),
      }))
      const ratios: Comparison['ratios'] = builds.slice(1).map((b, i) => ({a: 'serve', b: serveName(b, i + 1)}))
      if (have.dovecot) {
        sides.push({name: 'dovecot', unit: 'rcpt/s', measure: () => throughput(startDovecotBench, load, {verify: true, perRecipient: true})})
        ratios.push({a: 'serve', b: 'dovecot', target: {op: '>=', value: 2}})
      }
      if (have.sink) {
        sides.push({name: 'smtp-sink', unit: 'rcpt/s', measure: () => throughput(startSinkBench, load, {verify: false, perRecipient: true})})
        ratios.push({a: 'serve', b: 'smtp-sink'})
      }
      out.push({scenario: 2, case: name, sides, ratios})
    }
  }
  out.push(...scaleComparisons(o, builds, serveName))
  const cli = builds[0]!
  if (o.scenarios.includes(3) || o.scenarios.includes(5)) {
    if (!cli.hasCommand('replay')) {
      if (o.scenarios.includes(3)) unavailable.push({scenario: 3, case: 'replay vs smtp-source', reason: 'src/commands/replay.ts does not exist yet'})
      if (o.scenarios.includes(5)) unavailable.push({scenario: 5, case: 'latency at a fixed rate', reason: 'src/commands/replay.ts does not exist yet'})
    } else {
      if (o.scenarios.includes(3)) {
        if (have.sink) out.push(...replayComparisons(o, cli))
        else unavailable.push({scenario: 3, case: 'replay vs smtp-source', reason: 'smtp-sink is not installed'})
      }
      if (o.scenarios.includes(5)) out.push(latencyComparison(o, cli, have.dovecot))
    }
  }
  if (o.scenarios.includes(6)) {
    const send = builds[0]!
    if (!send.hasCommand('send')) unavailable.push({scenario: 6, case: 'one message', reason: 'src/commands/send.ts does not exist yet'})
    else if (!have.swaks) unavailable.push({scenario: 6, case: 'one message', reason: 'swaks is not installed'})
    else out.push(oneShotComparison(send))
  }
  return out
}

/**
 * Scenarios 7 and 8 (issue 12/15): one quota'd mailbox (every serve side with `--quota 10G`, plus the working
 * tree without quota), and `--workers 1` vs `--workers 2` (working tree), both at the largest session count and
 * the first size, into one mailbox (smtp-source sends every message to one recipient).
 */
function scaleComparisons(o: BenchOptions, builds: CliBuild[], serveName: (b: CliBuild, i: number) => string): Comparison[] {
  const out: Comparison[] = []
  const sessions = Math.max(...o.sessions)
  const size = o.sizes[0]!
  const load = {messages: o.messages, sessions, size}
  const side = (name: string, b: CliBuild, serveArgs: string[]): Side => ({
    name,
    unit: 'msg/s',
    measure: () => throughput(() => startServe(b, {serveArgs}), load, {verify: true}),
  })
  if (o.scenarios.includes(7)) {
    const sides = builds.map((b, i) => side(`${serveName(b, i)} --quota`, b, ['--quota', '10G']))
    sides.push(side('serve, no quota', builds[0]!, []))
    const ratios: Comparison['ratios'] = [{a: 'serve --quota', b: 'serve, no quota'}]
    for (const [i, b] of builds.entries()) if (i > 0) ratios.push({a: 'serve --quota', b: `${serveName(b, i)} --quota`})
    out.push({scenario: 7, case: `one quota'd mailbox, ${KB(size)}, ${sessions} sessions`, sides, ratios})
  }
  if (o.scenarios.includes(8)) {
    const cli = builds[0]!
    out.push({
      scenario: 8,
      case: `serve --workers, ${KB(size)}, ${sessions} sessions, one mailbox`,
      sides: [side('serve --workers 1', cli, ['--workers', '1']), side('serve --workers 2', cli, ['--workers', '2'])],
      ratios: [{a: 'serve --workers 2', b: 'serve --workers 1'}],
    })
  }
  return out
}

/** What `lmtp replay --json` prints (the part the benchmark reads). */
interface ReplayJson {
  elapsedMs: number
  recipients: {total: number; delivered: number}
  throughput: {messagesPerSec: number}
  latency: Record<string, {p50: number; p99: number}>
}

/** Runs `lmtp replay --generate SIZE` against a port and returns its JSON summary; throws unless all delivered. */
async function runReplay(build: CliBuild, port: number, args: string[], expected: number): Promise<ReplayJson> {
  const r = await runPeer(
    process.execPath,
    [build.bin, 'replay', '--server', `127.0.0.1:${port}`, '--from', 'sender@example.org', '--to', 'bench@example.com', '--no-progress', '--json', ...args],
    {timeoutMs: 30 * 60_000, env: {OCLIF_SKIP_NEW_VERSION_CHECK: 'true'}},
  )
  let summary: ReplayJson
  try {
    summary = JSON.parse(r.stdout) as ReplayJson
  } catch {
    throw new Error(`lmtp replay printed no JSON (${r.code}): ${r.stderr.trim().slice(0, 400)}`)
  }
  if (summary.recipients.delivered !== expected) {
    throw new Error(`lmtp replay: ${summary.recipients.delivered} of ${expected} recipients delivered`)
  }
  return summary
}

/**
 * Scenario 3: `lmtp replay` (generated messages) vs `smtp-source -L -d` as load tools against smtp-sink.
 * smtp-source is timed by wall clock (a C program starts in a millisecond); replay by its own elapsed time,
 * which leaves out Node's and oclif's start (reported apart by scenario 6).
 */
function replayComparisons(o: BenchOptions, build: CliBuild): Comparison[] {
  const sessions = Math.max(...o.sessions)
  return o.sizes.map((size) => ({
    scenario: 3,
    case: `load tool into smtp-sink, ${KB(size)}, ${sessions} sessions`,
    sides: [
      {
        name: 'lmtp replay',
        unit: 'msg/s',
        measure: async () => {
          const sink = await startSinkBench()
          try {
            const r = await runReplay(build, sink.port, ['--generate', String(size), '--count', String(o.messages), '--concurrency', String(sessions)], o.messages)
            return (o.messages * 1000) / r.elapsedMs
          } finally {
            await sink.stop()
          }
        },
      },
      {
        name: 'smtp-source',
        unit: 'msg/s',
        measure: () => throughput(startSinkBench, {messages: o.messages, sessions, size}, {verify: false}),
      },
    ],
    ratios: [{a: 'lmtp replay', b: 'smtp-source', target: {op: '>=', value: 1}}],
  }))
}

/** Scenario 5: p50 / p99 end-of-data latency at a fixed open-loop rate (`lmtp replay --rate`), serve vs Dovecot. */
function latencyComparison(o: BenchOptions, build: CliBuild, dovecot: boolean): Comparison {
  const count = Math.max(20, Math.min(o.messages, o.latencyRate * 20))
  const sessions = Math.max(...o.sessions)
  const runs = new Map<string, Promise<ReplayJson>>()
  const once = (who: string, round: number, start: () => Promise<BenchServer>) => {
    const key = `${who} ${round}`
    let p = runs.get(key)
    if (!p) {
      p = (async () => {
        const server = await start()
        try {
          const args = ['--generate', '1024', '--count', String(count), '--rate', String(o.latencyRate), '--concurrency', String(sessions)]
          return await runReplay(build, server.port, args, count)
        } finally {
          await server.stop()
        }
      })()
      runs.set(key, p)
    }
    return p
  }
  const servers: [string, () => Promise<BenchServer>][] = [['serve', () => startServe(build)]]
  if (dovecot) servers.push(['dovecot', startDovecotBench])
  const sides: Side[] = []
  for (const [who, start] of servers) {
    for (const q of ['p50', 'p99'] as const) {
      sides.push({name: `${who} ${q}`, unit: 'ms', measure: async (round) => (await once(who, round, start)).latency.data![q]})
    }
  }
  return {
    scenario: 5,
    case: `end-of-data latency, ${o.latencyRate} msg/s open loop, ${count} x 1 KB, up to ${sessions} sessions`,
    sides,
    ratios: dovecot ? [{a: 'serve p50', b: 'dovecot p50'}, {a: 'serve p99', b: 'dovecot p99'}] : [],
  }
}

/** Scenario 6: wall time of `lmtp send` of one message vs swaks, against the same running serve. */
function oneShotComparison(build: CliBuild): Comparison {
  let server: BenchServer | undefined
  const ensure = async () => (server ??= await startServe(build))
  const timed = async (cmd: string, args: string[]): Promise<number> => {
    const start = process.hrtime.bigint()
    const r = await runPeer(cmd, args, {timeoutMs: 60_000, env: {OCLIF_SKIP_NEW_VERSION_CHECK: 'true'}})
    const ms = Number(process.hrtime.bigint() - start) / 1e6
    if (r.code !== 0) throw new Error(`${path.basename(cmd)} failed (${r.code}): ${(r.stderr || r.stdout).trim().slice(0, 400)}`)
    return ms
  }
  const from = 'sender@example.org'
  const to = 'oneshot@example.com'
  return {
    scenario: 6,
    case: 'one message, wall time',
    sides: [
      {
        name: 'lmtp send',
        unit: 'ms',
        measure: async () => {
          const s = await ensure()
          return timed(process.execPath, [build.bin, 'send', '--server', `127.0.0.1:${s.port}`, '--from', from, '--to', to])
        },
      },
      {
        name: 'swaks',
        unit: 'ms',
        measure: async () => {
          const s = await ensure()
          const swaks = findExecutable('swaks') ?? 'swaks'
          return timed(swaks, ['--protocol', 'LMTP', '--server', '127.0.0.1', '--port', String(s.port), '--from', from, '--to', to, '--silent', '2'])
        },
      },
    ],
    ratios: [{a: 'lmtp send', b: 'swaks', target: {op: '<=', value: 1.2}}],
    cleanup: async () => server?.stop(),
  }
}

/** Scenario 4 parts measured once: one big message and many idle connections (serve only). */
async function memoryScenario(o: BenchOptions, build: CliBuild, measurements: Measurement[]): Promise<void> {
  const push = (c: string, side: string, bytes: number) =>
    measurements.push({scenario: 4, case: c, side, unit: 'MB', values: Array(o.rounds).fill(bytes / 2 ** 20), median: bytes / 2 ** 20})
  for (const [key, label] of [
    ['serve', 'serve (1 process)'],
    ['dovecot', 'dovecot (all processes)'],
  ] as const) {
    const peak = memoryPeaks.get(key)
    if (peak) push(`peak RSS under load, ${Math.max(...o.sessions)} sessions, ${KB(o.sizes[0]!)}`, `${label}, ${peak.processes} proc`, peak.bytes)
  }
  // One big message: RSS growth of a fresh server.
  {
    const server = await startServe(build, {maxSize: `${Math.ceil((o.bigMessage * 1.2) / 2 ** 20)}M`})
    try {
      const before = await processMemory(server.pid)
      await runSmtpSourceLoad({port: server.port, messages: 1, sessions: 1, size: o.bigMessage})
      const after = await processMemory(server.pid)
      push(`RSS growth with one ${KB(o.bigMessage)} message`, 'serve', after.hwm - before.rss)
    } finally {
      await server.stop()
    }
  }
  // Idle connections: RSS after all are greeted, minus before.
  {
    const server = await startServe(build, {maxConnections: o.idle + 16})
    const sockets: net.Socket[] = []
    try {
      await new Promise((r) => setTimeout(r, 200))
      const before = await processMemory(server.pid)
      await Promise.all(
        Array.from(
          {length: o.idle},
          () =>
            new Promise<void>((resolve, reject) => {
              const s = net.connect({port: server.port, host: '127.0.0.1'})
              sockets.push(s)
              s.once('data', () => resolve())
              s.once('error', reject)
            }),
        ),
      )
      await new Promise((r) => setTimeout(r, 200))
      const after = await processMemory(server.pid)
      push(`RSS extra with ${o.idle} idle connections`, 'serve', after.rss - before.rss)
    } finally {
      for (const s of sockets) s.destroy()
      await server.stop()
    }
  }
}

/** Runs the benchmark and returns the results (also written to disk and printed by main()). */
export async function runBench(o: BenchOptions, command: string): Promise<BenchResults> {
  const started = Date.now()
  const builds = [await buildCli()]
  for (const env of o.variants) {
    const label = Object.entries(env)
      .map(([k, val]) => `${k}=${val}`)
      .join(',')
    builds.push({...builds[0]!, label, env, cleanup: async () => undefined})
  }
  if (o.baseline) builds.push(await buildCli(o.baseline))
  const have = {
    dovecot: findExecutable('dovecot') !== undefined && process.getuid?.() === 0,
    sink: findExecutable('smtp-sink') !== undefined,
    source: findExecutable('smtp-source') !== undefined,
    swaks: findExecutable('swaks') !== undefined,
    cc: (await durableLimitBinary().catch(() => undefined)) !== undefined,
  }
  const unavailable: Unavailable[] = []
  const measurements: Measurement[] = []
  const ratios: RatioResult[] = []
  try {
    if (!have.source) throw new Error('smtp-source is not installed: run `bash .ci/install-peers`')
    const comps = comparisons(o, builds, have, unavailable)
    const values = comps.map((c) => c.sides.map(() => [] as number[]))
    const errors = comps.map((c) => c.sides.map(() => [] as string[]))
    for (let round = 0; round < o.rounds; round++) {
      for (const [ci, c] of comps.entries()) {
        // Rotate who goes first so that drift over a round does not always favour the same side.
        const order = c.sides.map((_, i) => (i + round) % c.sides.length)
        for (const si of order) {
          const side = c.sides[si]!
          log(`round ${round + 1}/${o.rounds}: scenario ${c.scenario}, ${c.case}: ${side.name}`)
          try {
            values[ci]![si]![round] = await side.measure(round)
          } catch (err) {
            values[ci]![si]![round] = Number.NaN
            errors[ci]![si]!.push((err as Error).message)
            log(`  failed: ${(err as Error).message}`)
          }
        }
      }
    }
    for (const c of comps) await c.cleanup?.()
    for (const [ci, c] of comps.entries()) {
      c.sides.forEach((s, si) => {
        const v = values[ci]![si]!
        const m: Measurement = {scenario: s.name === 'durable limit (C)' ? 0 : c.scenario, case: c.case, side: s.name, unit: s.unit, values: v, median: median(v)}
        if (errors[ci]![si]!.length > 0) m.errors = errors[ci]![si]
        measurements.push(m)
      })
      for (const r of c.ratios) {
        const a = c.sides.findIndex((s) => s.name === r.a)
        const b = c.sides.findIndex((s) => s.name === r.b)
        if (a < 0 || b < 0) continue
        const per = values[ci]![a]!.map((x, i) => x / values[ci]![b]![i]!)
        const med = median(per)
        ratios.push({scenario: r.b === 'durable limit (C)' ? 0 : c.scenario, case: c.case, name: `${r.a} / ${r.b}`, values: per, median: med, target: r.target, met: r.target ? meets(med, r.target) : undefined})
      }
    }
    if (o.scenarios.includes(4)) await memoryScenario(o, builds[0]!, measurements)
  } finally {
    for (const b of builds) await b.cleanup()
  }
  return {
    startedAt: new Date(started).toISOString(),
    command,
    machine: {
      cores: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      memoryBytes: os.totalmem(),
      node: process.version,
      os: `${os.type()} ${os.release()}`,
      loadAverage: os.loadavg(),
    },
    peers: await peerVersions(),
    builds: builds.map((b) => ({label: b.label, revision: b.revision})),
    settings: {messages: o.messages, rounds: o.rounds, sessions: o.sessions, sizes: o.sizes, scenarios: o.scenarios},
    measurements,
    ratios,
    unavailable,
    durationMs: Date.now() - started,
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2)
  const o = parseArgs(argv)
  const command = `npm run bench${argv.length ? ` -- ${argv.join(' ')}` : ''}`
  const results = await runBench(o, command)
  const out = o.out ?? path.join(PROJECT_ROOT, 'bench', 'results', `${results.startedAt.replace(/[:]/g, '-').replace(/\..*/, '')}.json`)
  await mkdir(path.dirname(out), {recursive: true})
  await writeFile(out, `${JSON.stringify(results, null, 2)}\n`)
  process.stdout.write(renderResults(results))
  process.stdout.write(`\nresults: ${out}\n`)
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  main().catch((err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`)
    process.exit(1)
  })
}
