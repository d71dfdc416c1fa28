/**
 * `lmtp serve` as a separate process (`node bin/run.js serve ...`, the built CLI): started, waited for until it
 * logs that it listens, and killed. Crash tests need a real process to SIGKILL; an in-process server cannot die.
 */
import {type ChildProcess, spawn} from 'node:child_process'
import {existsSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

/** The repository root (two levels above this file). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')

/** True when the CLI has been built (dist/ and the manifest exist), as `npm test` does before vitest. */
export function cliBuilt(): boolean {
  return existsSync(path.join(REPO_ROOT, 'dist', 'commands', 'serve.js'))
}

/** A running `lmtp serve` process. */
export interface ServeProcess {
  child: ChildProcess
  pid: number
  /** Resolves with the exit code (null when killed by a signal) and the signal. */
  exited: Promise<{code: number | null; signal: NodeJS.Signals | null}>
  /** The last lines the process printed (stdout and stderr), for failure messages. */
  tail: string[]
}

/** Keeps the last `max` lines of a stream, so a chatty server cannot fill the test's memory. */
function keepTail(tail: string[], max: number): (chunk: Buffer) => void {
  let partial = ''
  return (chunk) => {
    const text = partial + chunk.toString('utf8')
    const lines = text.split('\n')
    partial = lines.pop() ?? ''
    for (const l of lines) {
      tail.push(l)
      if (tail.length > max) tail.shift()
    }
  }
}

/**
 * Spawns `node bin/run.js serve <args>` and resolves once it printed its "listening" line (JSON log format);
 * rejects with its output when it exits first or does not come up within `timeoutMs`.
 */
export async function spawnServe(args: string[], timeoutMs = 30_000): Promise<ServeProcess> {
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin', 'run.js'), 'serve', '--log-format', 'json', ...args], {
    cwd: REPO_ROOT,
    env: {...process.env, NO_COLOR: '1', OCLIF_SKIP_NEW_VERSION_CHECK: 'true'},
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const tail: string[] = []
  const exited = new Promise<{code: number | null; signal: NodeJS.Signals | null}>((resolve) => {
    child.once('exit', (code, signal) => resolve({code, signal}))
  })
  const onOut = keepTail(tail, 200)
  let sawListening = false
  let signalReady: () => void = () => {}
  const ready = new Promise<void>((resolve) => {
    signalReady = resolve
  })
  child.stdout!.on('data', (chunk: Buffer) => {
    onOut(chunk)
    if (!sawListening && chunk.toString('utf8').includes('"event":"listening"')) {
      sawListening = true
      signalReady()
    }
  })
  child.stderr!.on('data', keepTail(tail, 200))
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      ready,
      exited.then((e) => {
        throw new Error(`serve exited (${e.code ?? e.signal}) before listening:\n${tail.join('\n')}`)
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`serve did not listen within ${timeoutMs} ms:\n${tail.join('\n')}`)), timeoutMs)
      }),
    ])
  } catch (err) {
    child.kill('SIGKILL')
    throw err
  } finally {
    clearTimeout(timer)
  }
  return {child, pid: child.pid!, exited, tail}
}

/** Sends a signal and waits for the process to be gone. */
export async function killAndWait(p: ServeProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<{code: number | null; signal: NodeJS.Signals | null}> {
  if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill(signal)
  return p.exited
}

/** A small seeded PRNG (mulberry32): the same seed gives the same run, and the seed is printed on failure. */
export function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
