/**
 * Process and filesystem plumbing shared by the peer helpers: free ports, temp dirs other users can reach,
 * spawning a peer in its own process group, readiness by polling connect, and stopping by pid (then by the
 * process group the harness created) so nothing outlives a test run.
 */
import {type ChildProcess, spawn, spawnSync} from 'node:child_process'
import {chmodSync, readdirSync, readFileSync, rmSync} from 'node:fs'
import {chmod, mkdtemp, rm} from 'node:fs/promises'
import {createConnection, createServer, type Socket} from 'node:net'
import {tmpdir} from 'node:os'
import {dirname, join, resolve} from 'node:path'

/**
 * Where a peer listens or where a client connects: a loopback TCP port or an absolute Unix socket path.
 * Handles that carry both (a Dovecot handle has `port` and `socketPath`) count as TCP: an object with a
 * non-zero `port` is TCP, otherwise its `socketPath` is used. Pass `{socketPath: x.socketPath}` for the socket.
 */
export type PeerTarget = {port: number; host?: string} | {socketPath: string}

/** A target resolved to exactly one transport. */
export type ResolvedTarget = {kind: 'tcp'; host: string; port: number} | {kind: 'unix'; path: string}

/** Decides whether a target is TCP or a Unix socket (see {@link PeerTarget}). */
export function resolveTarget(target: PeerTarget): ResolvedTarget {
  const t = target as {port?: number; host?: string; socketPath?: string}
  if (typeof t.port === 'number' && t.port > 0) return {kind: 'tcp', host: t.host ?? '127.0.0.1', port: t.port}
  if (typeof t.socketPath === 'string') return {kind: 'unix', path: t.socketPath}
  throw new Error(`target has neither a port nor a socketPath: ${JSON.stringify(target)}`)
}

/** What every runner returns: the exit code (null when killed by a signal or a timeout) and its output. */
export interface RunResult {
  code: number | null
  stdout: string
  stderr: string
}

/** Options for {@link runPeer}. */
export interface RunOptions {
  /** Kill the process (by pid) if it has not finished after this long; default 30 s. */
  timeoutMs?: number
  /** Written to the process's stdin, which is then closed. */
  input?: string | Buffer
  /** Extra environment variables. */
  env?: NodeJS.ProcessEnv
  cwd?: string
}

/** Directories are made here, never under /root: the peers' unprivileged users must be able to reach them. */
function tempBase(): string {
  const base = resolve(tmpdir())
  return base === '/root' || base.startsWith('/root/') ? '/tmp' : base
}

/**
 * Reserves a free loopback TCP port by binding port 0 on 127.0.0.1 and releasing it. A small race remains
 * (another process may take it before the peer binds), which is why the start helpers retry on a bind failure.
 */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen({port: 0, host: '127.0.0.1', exclusive: true}, () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => (port > 0 ? resolvePort(port) : reject(new Error('could not read the bound port'))))
    })
  })
}

/** A temporary directory and the way to remove it. */
export interface TempDir {
  path: string
  /** Removes the directory and everything in it; safe to call twice. */
  cleanup(): Promise<void>
}

const liveTempDirs = new Set<string>()

/**
 * Makes a temporary directory (mode 0755, outside /root) so peers running as `mail`, `postfix` or `nobody`
 * can traverse it. `cleanup()` removes it; directories still present when the process exits are removed too,
 * unless LMTP_PEERS_KEEP=1 is set (handy to read a failed test's configs and logs).
 */
export async function tempDir(prefix: string): Promise<TempDir> {
  const path = await mkdtemp(join(tempBase(), `${prefix.replace(/[^\w.-]/g, '-')}-`))
  await chmod(path, 0o755)
  liveTempDirs.add(path)
  installExitHook()
  return {
    path,
    async cleanup() {
      liveTempDirs.delete(path)
      if (keepDirs()) return
      await rm(path, {recursive: true, force: true})
    },
  }
}

function keepDirs(): boolean {
  return process.env.LMTP_PEERS_KEEP === '1'
}

/**
 * Lets unprivileged peers (Postfix's lmtp client runs as `postfix`) connect to a Unix socket: makes the socket
 * mode 0666 and adds search permission to every parent directory up to the temp base. Only use it on paths the
 * test created.
 */
export function allowPeerAccess(socketPath: string): void {
  chmodSync(socketPath, 0o666)
  const stop = tempBase()
  for (let dir = dirname(socketPath); dir.startsWith(`${stop}/`); dir = dirname(dir)) {
    chmodSync(dir, 0o755)
  }
}

/** A user from /etc/passwd, for chown and for peers' configuration. */
export interface SystemUser {
  name: string
  uid: number
  gid: number
}

/** Looks a user up in /etc/passwd (no NSS: the peers' users are local system users). */
export function systemUser(name: string): SystemUser | undefined {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = line.split(':')
    if (f[0] === name && f.length >= 4) return {name, uid: Number(f[2]), gid: Number(f[3])}
  }
  return undefined
}

/** Looks a group's gid up in /etc/group. */
export function systemGroup(name: string): number | undefined {
  for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
    const f = line.split(':')
    if (f[0] === name && f.length >= 3) return Number(f[2])
  }
  return undefined
}

/** Polls `probe` until it returns a value other than undefined/false, or throws after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 15_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== undefined && value !== false) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await delay(intervalMs)
  }
}

/** Resolves after `ms` milliseconds (used only between polls, never as a readiness guess). */
export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

/** A human-readable form of a target, for messages. */
export function describeTarget(target: PeerTarget): string {
  const t = resolveTarget(target)
  return t.kind === 'unix' ? `unix:${t.path}` : `${t.host}:${t.port}`
}

/**
 * Connects once; resolves with the first chunk the server sends (the greeting) when `greeting` is true, or
 * with '' as soon as the connection is accepted. Rejects on refusal or after `timeoutMs`.
 */
export function connectOnce(target: PeerTarget, greeting: boolean, timeoutMs = 2_000): Promise<string> {
  return new Promise((resolveConn, reject) => {
    const t = resolveTarget(target)
    const socket: Socket =
      t.kind === 'unix' ? createConnection({path: t.path}) : createConnection({port: t.port, host: t.host})
    const timer = setTimeout(() => finish(new Error('no greeting in time')), timeoutMs)
    let done = false
    const finish = (err: Error | undefined, value = '') => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      if (err) reject(err)
      else resolveConn(value)
    }
    socket.once('error', (err) => finish(err))
    socket.once('connect', () => {
      if (!greeting) finish(undefined)
    })
    let buffered = ''
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1')
      if (buffered.includes('\n')) finish(undefined, buffered)
    })
    socket.once('close', () => finish(new Error('closed before a greeting')))
  })
}

/** Options for {@link waitForListening}. */
export interface ListenWaitOptions {
  timeoutMs?: number
  /** Also wait for a line from the server (the 220 greeting). */
  greeting?: boolean
  /** A peer process whose early exit means it will never listen: fail fast with its output. */
  process?: PeerProcess
}

/** Polls connect until `target` accepts (and greets, if asked); returns the greeting line(s) or ''. */
export async function waitForListening(target: PeerTarget, options: ListenWaitOptions = {}): Promise<string> {
  const {timeoutMs = 20_000, greeting = false, process: proc} = options
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    if (proc?.exitStatus) {
      throw new Error(
        `${proc.name} exited (${formatExit(proc.exitStatus)}) before listening on ${describeTarget(target)}\n${proc.output()}`,
      )
    }
    try {
      return await connectOnce(target, greeting)
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) {
      throw new Error(
        `${proc?.name ?? 'peer'} not listening on ${describeTarget(target)} after ${timeoutMs} ms: ${String(last)}${proc ? `\n${proc.output()}` : ''}`,
      )
    }
    await delay(50)
  }
}

/** How a process ended. */
export interface ExitStatus {
  code: number | null
  signal: NodeJS.Signals | null
}

function formatExit(s: ExitStatus): string {
  return s.signal ? `signal ${s.signal}` : `code ${s.code}`
}

const OUTPUT_LIMIT = 64 * 1024

/**
 * A long-running peer the harness spawned, in its own process group (so its children can be found and
 * stopped with it). Output is kept (the last 64 KB of each stream) for error messages.
 */
export class PeerProcess {
  readonly child: ChildProcess
  readonly pid: number
  readonly exited: Promise<ExitStatus>
  exitStatus: ExitStatus | undefined
  private out = ''
  private err = ''

  constructor(
    readonly name: string,
    command: string,
    args: readonly string[],
    env?: NodeJS.ProcessEnv,
  ) {
    this.child = spawn(command, args, {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {...process.env, ...env},
    })
    if (this.child.pid === undefined) throw new Error(`could not spawn ${command}`)
    this.pid = this.child.pid
    this.child.stdout?.on('data', (c: Buffer) => {
      this.out = (this.out + c.toString('utf8')).slice(-OUTPUT_LIMIT)
    })
    this.child.stderr?.on('data', (c: Buffer) => {
      this.err = (this.err + c.toString('utf8')).slice(-OUTPUT_LIMIT)
    })
    this.exited = new Promise((resolveExit) => {
      this.child.once('exit', (code, signal) => {
        this.exitStatus = {code, signal}
        resolveExit(this.exitStatus)
      })
      this.child.once('error', () => {
        this.exitStatus ??= {code: null, signal: null}
        resolveExit(this.exitStatus)
      })
    })
    liveGroups.add(this.pid)
    installExitHook()
  }

  /** What the process printed so far, labelled, for error messages. */
  output(): string {
    return [this.out && `stdout: ${this.out.trim()}`, this.err && `stderr: ${this.err.trim()}`]
      .filter(Boolean)
      .join('\n')
  }

  /** Everything it printed on stdout so far. */
  stdout(): string {
    return this.out
  }

  /**
   * Stops the process: `signal` to its pid, up to `graceMs` for it to exit, then SIGKILL to its process
   * group; finally waits until no live member of the group remains. Safe to call twice.
   */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 8_000): Promise<void> {
    if (!this.exitStatus) {
      try {
        process.kill(this.pid, signal)
      } catch {
        // already gone
      }
      const timedOut = await Promise.race([this.exited.then(() => false), delay(graceMs).then(() => true)])
      if (timedOut) killGroup(this.pid)
      await this.exited
    }
    await stopGroup(this.pid)
  }
}

/** Process groups the harness created and has not yet seen empty. */
const liveGroups = new Set<number>()
/** Extra synchronous last-resort stoppers (Postfix's master is not our child). */
const exitStoppers = new Set<() => void>()

/** Registers a synchronous stopper run if the test process exits with the peer still up; returns an unregister. */
export function onProcessExit(stopper: () => void): () => void {
  exitStoppers.add(stopper)
  installExitHook()
  return () => exitStoppers.delete(stopper)
}

let hookInstalled = false
function installExitHook(): void {
  if (hookInstalled) return
  hookInstalled = true
  process.once('exit', () => {
    for (const stopper of exitStoppers) {
      try {
        stopper()
      } catch {
        // best effort while exiting
      }
    }
    for (const pgid of liveGroups) killGroup(pgid)
    if (!keepDirs()) for (const dir of liveTempDirs) rmSync(dir, {recursive: true, force: true})
  })
}

/** SIGKILL to a whole process group; ignores a group that is already gone. */
export function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL')
  } catch {
    // no such group
  }
}

/** Live (non-zombie) processes whose process group is `pgid`, read from /proc. */
export function groupMembers(pgid: number): number[] {
  const members: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const stat = procStat(Number(entry))
    if (stat && stat.pgid === pgid && stat.state !== 'Z') members.push(Number(entry))
  }
  return members
}

/** True while `pid` exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  const stat = procStat(pid)
  return stat !== undefined && stat.state !== 'Z'
}

function procStat(pid: number): {state: string; pgid: number} | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name is in parentheses and may contain spaces: parse after the last ')'.
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ')
    return {state: rest[0]!, pgid: Number(rest[2])}
  } catch {
    return undefined
  }
}

/** Waits (up to `graceMs`) for a process group to empty, then SIGKILLs what is left and waits again. */
export async function stopGroup(pgid: number, graceMs = 3_000): Promise<void> {
  const empty = () => groupMembers(pgid).length === 0
  try {
    await waitFor(`process group ${pgid} to exit`, empty, graceMs)
  } catch {
    killGroup(pgid)
    await waitFor(`process group ${pgid} to die after SIGKILL`, empty, 5_000)
  }
  liveGroups.delete(pgid)
}

/**
 * Runs a command to completion and returns {code, stdout, stderr}; never throws for a non-zero exit.
 * A run that exceeds `timeoutMs` is killed (its pid, then its process group) and returns code null with a note
 * appended to stderr.
 */
export function runPeer(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const {timeoutMs = 30_000, input, env, cwd} = options
  return new Promise((resolveRun) => {
    const child = spawn(command, args, {
      detached: true,
      cwd,
      env: {...process.env, ...env},
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    })
    const pid = child.pid
    if (pid !== undefined) liveGroups.add(pid)
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout?.on('data', (c: Buffer) => {
      stdout += c.toString('utf8')
    })
    child.stderr?.on('data', (c: Buffer) => {
      stderr += c.toString('utf8')
    })
    const timer = setTimeout(() => {
      timedOut = true
      if (pid !== undefined) killGroup(pid)
    }, timeoutMs)
    child.once('error', (err) => {
      clearTimeout(timer)
      if (pid !== undefined) liveGroups.delete(pid)
      resolveRun({code: null, stdout, stderr: `${stderr}${String(err)}\n`})
    })
    child.once('close', (code) => {
      clearTimeout(timer)
      const finish = () => {
        if (timedOut) stderr += `[harness] ${command} killed after ${timeoutMs} ms\n`
        resolveRun({code: timedOut ? null : code, stdout, stderr})
      }
      if (pid === undefined) return finish()
      // Anything it left behind in its group (it should leave nothing) is stopped too.
      stopGroup(pid, 1_000).then(finish, finish)
    })
    if (input !== undefined) child.stdin?.end(input)
  })
}

/** Synchronous run for short admin commands (postfix stop/abort in exit hooks). */
export function runSync(command: string, args: readonly string[], timeoutMs = 20_000): RunResult {
  const r = spawnSync(command, args, {encoding: 'utf8', timeout: timeoutMs})
  return {code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? ''}
}
