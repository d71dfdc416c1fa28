/**
 * The servers and drivers the benchmark runs: `lmtp serve` from a private build, Dovecot LMTP and smtp-sink
 * (through the interop harness in test/support/peers), smtp-source as the load driver, the scenario-0 durable
 * file writer, and memory sampling of a process group from /proc.
 */
import {execFile} from 'node:child_process'
import {readdir, readFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {promisify} from 'node:util'
import {findExecutable} from '../../test/support/peers/gate.js'
import {freePort, groupMembers, PeerProcess, runPeer, tempDir, waitForListening} from '../../test/support/peers/proc.js'
import type {CliBuild} from './build.js'
import {PROJECT_ROOT} from './build.js'

const run = promisify(execFile)

/** A server under test, started fresh with an empty Maildir. */
export interface BenchServer {
  /** TCP port on 127.0.0.1. */
  port: number
  /** Pid whose process group holds every process of the server. */
  pid: number
  /** Counts the message files in every `new/` below the Maildir root (0 for smtp-sink). */
  countDelivered(): Promise<number>
  /** Stops it and removes its temp dir. */
  stop(): Promise<void>
}

/** Options of a serve instance. */
export interface ServeStartOptions {
  maxSize?: string
  maxConnections?: number
  /** Extra node options (e.g. `--cpu-prof --cpu-prof-dir=DIR`). */
  nodeOptions?: string[]
  /** Extra `serve` flags (e.g. `--quota 10G`, `--workers 2`). */
  serveArgs?: string[]
}

/** Starts `node BUILD/bin/run.js serve` on a free loopback port with a fresh Maildir; logs go to a pipe. */
export async function startServe(build: CliBuild, options: ServeStartOptions = {}): Promise<BenchServer> {
  const dir = await tempDir('lmtp-bench-serve')
  const root = path.join(dir.path, 'Maildir')
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const args = [
      ...(options.nodeOptions ?? []),
      build.bin,
      'serve',
      '--maildir',
      root,
      '--listen',
      `127.0.0.1:${port}`,
      '--hostname',
      'bench.test',
      '--max-size',
      options.maxSize ?? '50M',
      '--max-connections',
      String(options.maxConnections ?? 256),
      ...(options.serveArgs ?? []),
    ]
    const proc = new PeerProcess('lmtp serve', process.execPath, args, {OCLIF_SKIP_NEW_VERSION_CHECK: 'true', ...build.env})
    try {
      await waitForListening({port}, {process: proc, greeting: true})
    } catch (err) {
      await proc.stop()
      if (attempt < 3) continue
      await dir.cleanup()
      throw new Error(`lmtp serve did not start: ${(err as Error).message}\n${proc.output()}`)
    }
    return {
      port,
      pid: proc.pid,
      countDelivered: () => countNew(root),
      async stop() {
        await proc.stop('SIGTERM', 15_000)
        await dir.cleanup()
      },
    }
  }
}

/** Starts a private Dovecot LMTP with `mail_fsync = always` (durability equal to serve). */
export async function startDovecotBench(): Promise<BenchServer> {
  const {startDovecot} = await import('../../test/support/peers/dovecot.js')
  const d = await startDovecot({fsync: 'always', users: []})
  return {port: d.port, pid: d.pid, countDelivered: () => countNew(d.root), stop: () => d.stop()}
}

/** Starts smtp-sink in LMTP mode (no storage: the protocol ceiling). */
export async function startSinkBench(): Promise<BenchServer> {
  const {startSmtpSink} = await import('../../test/support/peers/smtp-sink.js')
  const s = await startSmtpSink({backlog: 1024})
  return {port: s.port, pid: s.pid, countDelivered: async () => 0, stop: () => s.stop()}
}

/** Message files in `new/` directories up to three levels below root (serve: dom/local/new, Dovecot: user/new). */
export async function countNew(root: string): Promise<number> {
  let n = 0
  const walk = async (dir: string, depth: number): Promise<void> => {
    let entries: import('node:fs').Dirent[]
    try {
      entries = await readdir(dir, {withFileTypes: true})
    } catch {
      return
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue
      const p = path.join(dir, e.name)
      if (e.name === 'new') n += (await readdir(p)).length
      else if (depth < 3 && !e.name.startsWith('.')) await walk(p, depth + 1)
    }
  }
  await walk(root, 0)
  return n
}

/** One smtp-source run. */
export interface LoadSpec {
  port: number
  messages: number
  sessions: number
  size: number
  recipients?: number
}

/** Runs `smtp-source -L -d` and returns the wall time in ms; throws when it fails. */
export async function runSmtpSourceLoad(spec: LoadSpec): Promise<number> {
  const args = ['-L', '-d', '-m', String(spec.messages), '-s', String(spec.sessions), '-l', String(spec.size)]
  args.push('-f', 'sender@example.org', '-t', 'bench@example.com', '-M', 'bench.client')
  if (spec.recipients && spec.recipients > 1) args.push('-r', String(spec.recipients))
  args.push(`127.0.0.1:${spec.port}`)
  const start = process.hrtime.bigint()
  const r = await runPeer(findExecutable('smtp-source') ?? 'smtp-source', args, {timeoutMs: 30 * 60_000})
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  if (r.code !== 0) throw new Error(`smtp-source ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`)
  return ms
}

/** Compiles bench/durable-limit.c once (into the temp dir); undefined when no C compiler is installed. */
let limitBinary: Promise<string | undefined> | undefined
export function durableLimitBinary(): Promise<string | undefined> {
  limitBinary ??= (async () => {
    const cc = findExecutable('cc') ?? findExecutable('gcc')
    if (!cc) return undefined
    const out = path.join(tmpdir(), `lmtp-bench-durable-limit-${process.pid}`)
    await run(cc, ['-O2', '-o', out, path.join(PROJECT_ROOT, 'bench', 'durable-limit.c')])
    return out
  })()
  return limitBinary
}

/** Scenario 0: `files` durable deliveries by `writers` processes into one fresh Maildir; returns files/s. */
export async function runDurableLimit(writers: number, files: number, size: number): Promise<number> {
  const bin = await durableLimitBinary()
  if (!bin) throw new Error('no C compiler (cc) to build bench/durable-limit.c')
  const dir = await tempDir('lmtp-bench-limit')
  try {
    const {stdout} = await run(bin, [path.join(dir.path, 'box'), String(writers), String(files), String(size)])
    const r = JSON.parse(stdout) as {files: number; ms: number}
    return (r.files * 1000) / r.ms
  } finally {
    await dir.cleanup()
  }
}

/** Resident set size (VmRSS) and its peak (VmHWM) of one process, in bytes; zeros when it is gone. */
export async function processMemory(pid: number): Promise<{rss: number; hwm: number}> {
  try {
    const text = await readFile(`/proc/${pid}/status`, 'utf8')
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024
    return {rss: kb('VmRSS'), hwm: kb('VmHWM')}
  } catch {
    return {rss: 0, hwm: 0}
  }
}

/** Samples the summed RSS of a process group every `intervalMs` until stopped; reports the peak. */
export function sampleGroupRss(pgid: number, intervalMs = 100): {stop(): Promise<{peakBytes: number; peakProcesses: number}>} {
  let peakBytes = 0
  let peakProcesses = 0
  let running = true
  const loop = (async () => {
    while (running) {
      const members = groupMembers(pgid)
      const mems = await Promise.all(members.map((p) => processMemory(p)))
      const total = mems.reduce((s, m) => s + m.rss, 0)
      if (total > peakBytes) {
        peakBytes = total
        peakProcesses = members.length
      }
      await new Promise((r) => setTimeout(r, intervalMs))
    }
  })()
  return {
    async stop() {
      running = false
      await loop
      return {peakBytes, peakProcesses}
    },
  }
}

/** Versions of the peers, for the results file ('missing' when not installed). */
export async function peerVersions(): Promise<Record<string, string>> {
  const ask = async (cmd: string, args: string[], pick: (out: string) => string): Promise<string> => {
    const bin = findExecutable(cmd)
    if (!bin) return 'missing'
    try {
      const {stdout, stderr} = await run(bin, args, {timeout: 10_000})
      return pick(`${stdout}${stderr}`).trim()
    } catch {
      return 'unknown'
    }
  }
  return {
    dovecot: await ask('dovecot', ['--version'], (o) => o.split('\n')[0] ?? ''),
    postfix: await ask('postconf', ['-d', '-h', 'mail_version'], (o) => o),
    swaks: await ask('swaks', ['--version'], (o) => /version\s+(\S+)/i.exec(o)?.[1] ?? o.split('\n')[0] ?? ''),
  }
}
