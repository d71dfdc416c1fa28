/**
 * `npx tsx bench/cpu-cost.ts [--messages 2000] [--sessions 16] [--size 1024] [--rounds 2]`: CPU time per
 * delivered message of each durable side, which explains the throughput ratios on a small machine: `lmtp serve`
 * and Dovecot (user + system time of every process of the server, children included, read from /proc before
 * and after an smtp-source run) and the scenario-0 C program (its own and its writers' rusage). On a machine
 * where the kernel side of an fsync costs milliseconds of CPU, durable delivery is CPU-bound, and a ratio of
 * messages/s cannot exceed the inverse ratio of CPU per message. Prints one JSON object.
 */
import {execFile} from 'node:child_process'
import {readFileSync} from 'node:fs'
import path from 'node:path'
import {promisify} from 'node:util'
import {groupMembers, tempDir} from '../test/support/peers/proc.js'
import {buildCli} from './lib/build.js'
import {type BenchServer, durableLimitBinary, runSmtpSourceLoad, startDovecotBench, startServe} from './lib/servers.js'

const run = promisify(execFile)
const TICK = 100 // clock ticks per second (USER_HZ) on Linux

/** User and system CPU seconds of a process group: live members plus their reaped children. */
function groupCpu(pgid: number): {user: number; system: number} {
  let user = 0
  let system = 0
  for (const pid of groupMembers(pgid)) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      // Fields 14-17 of stat (utime, stime, cutime, cstime) are 11-14 after the command name.
      user += (Number(f[11]) + Number(f[13])) / TICK
      system += (Number(f[12]) + Number(f[14])) / TICK
    } catch {
      // Gone meanwhile.
    }
  }
  return {user, system}
}

interface Cost {
  side: string
  messagesPerSec: number
  cpuMsPerMessage: {user: number; system: number; total: number}
}

async function measureServer(side: string, start: () => Promise<BenchServer>, load: {messages: number; sessions: number; size: number}): Promise<Cost> {
  const server = await start()
  try {
    // Let start-up work (module loading, Dovecot's first processes) settle before the baseline reading.
    await new Promise((r) => setTimeout(r, 500))
    const before = groupCpu(server.pid)
    const ms = await runSmtpSourceLoad({port: server.port, ...load})
    const after = groupCpu(server.pid)
    const user = ((after.user - before.user) * 1000) / load.messages
    const system = ((after.system - before.system) * 1000) / load.messages
    return {side, messagesPerSec: (load.messages * 1000) / ms, cpuMsPerMessage: {user, system, total: user + system}}
  } finally {
    await server.stop()
  }
}

async function measureLimit(load: {messages: number; sessions: number; size: number}): Promise<Cost> {
  const bin = await durableLimitBinary()
  if (!bin) throw new Error('no C compiler')
  const dir = await tempDir('lmtp-bench-cpu')
  try {
    // bash's `times` prints the children's user and system time (the writers are the limit program's children).
    const script = `"$0" "$1" "$2" "$3" "$4"; times`
    const {stdout} = await run('bash', ['-c', script, bin, path.join(dir.path, 'box'), String(load.sessions), String(load.messages), String(load.size + 300)])
    const lines = stdout.trim().split('\n')
    const secs = (s: string) => {
      const m = /(\d+)m([\d.]+)s/.exec(s)
      return m ? Number(m[1]) * 60 + Number(m[2]) : 0
    }
    const [u, s] = (lines.at(-1) ?? '').split(/\s+/)
    const wall = (JSON.parse(lines[0] ?? '{}') as {files?: number; ms?: number}).ms ?? Number.NaN
    const user = (secs(u ?? '') * 1000) / load.messages
    const system = (secs(s ?? '') * 1000) / load.messages
    return {side: 'durable limit (C)', messagesPerSec: (load.messages * 1000) / wall, cpuMsPerMessage: {user, system, total: user + system}}
  } finally {
    await dir.cleanup()
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2)
  const opt = (name: string, def: number) => {
    const i = args.indexOf(`--${name}`)
    return i >= 0 ? Number(args[i + 1]) : def
  }
  const load = {messages: opt('messages', 2000), sessions: opt('sessions', 16), size: opt('size', 1024)}
  const rounds = opt('rounds', 2)
  const build = await buildCli()
  const results: Cost[] = []
  try {
    for (let r = 0; r < rounds; r++) {
      results.push(await measureServer('serve', () => startServe(build), load))
      results.push(await measureServer('dovecot', startDovecotBench, load))
      results.push(await measureLimit(load))
    }
  } finally {
    await build.cleanup()
  }
  process.stdout.write(`${JSON.stringify({load, results}, null, 1)}\n`)
}

main().catch((err: unknown) => {
  process.stderr.write(`cpu-cost: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
