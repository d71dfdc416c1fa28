/**
 * Test helpers for the client commands: run the built CLI (`node bin/run.js`) as a separate process, and
 * run `lmtp serve` (runServer, the code behind the command) in-process on port 0 or a Unix socket.
 */
import {spawn} from 'node:child_process'
import {existsSync} from 'node:fs'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {parseTarget} from '../../src/net/target.js'
import {type ServeOptions, type ServeSummary, runServer} from '../../src/server/run-server.js'

/** The project root. */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** What a CLI run produced. */
export interface CliRun {
  code: number | null
  stdout: string
  stderr: string
}

/**
 * Runs `node bin/run.js ...args` (the built CLI: `npm test` builds first) with NO_COLOR and without an
 * inherited LMTP_SERVER; kills it (by pid) after `timeoutMs`.
 */
export function runCli(
  args: string[],
  options: {input?: string | Buffer; env?: NodeJS.ProcessEnv; timeoutMs?: number} = {},
): Promise<CliRun> {
  if (!existsSync(join(ROOT, 'dist/commands/send.js'))) {
    throw new Error('dist/ is not built: run `npm run build` (npm test does it) before these tests')
  }
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = {...process.env, NO_COLOR: '1', ...options.env}
    if (!options.env || !('LMTP_SERVER' in options.env)) delete env.LMTP_SERVER
    const child = spawn(process.execPath, [join(ROOT, 'bin/run.js'), ...args], {cwd: ROOT, env, stdio: 'pipe'})
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({code, stdout, stderr})
    })
    child.stdin.end(options.input ?? '')
  })
}

/** A running in-process `lmtp serve`. */
export interface TestServe {
  /** What `--server` takes. */
  target: string
  maildir: string
  dir: string
  /** Stops the server and removes its temp dir; resolves with its summary. */
  stop(): Promise<ServeSummary>
}

/** Options for {@link startServe}: the serve options a test may set, plus a users file text. */
export interface TestServeOptions extends Partial<Omit<ServeOptions, 'listen' | 'usersFile'>> {
  /** Listen on a Unix socket in the temp dir instead of 127.0.0.1 port 0. */
  unix?: boolean
  /** Contents of a users file (written to the temp dir). */
  users?: string
}

/** Starts runServer (the code behind `lmtp serve`) with a Maildir in a fresh temp dir. */
export async function startServe(options: TestServeOptions = {}): Promise<TestServe> {
  const dir = await mkdtemp(join(tmpdir(), 'lmtp-send-serve-'))
  const maildir = join(dir, 'Maildir')
  let usersFile: string | undefined
  if (options.users !== undefined) {
    usersFile = join(dir, 'users')
    await writeFile(usersFile, options.users)
  }
  let stop: () => void = () => {}
  const until = new Promise<void>((r) => (stop = r))
  let ready: (address: string) => void = () => {}
  const listening = new Promise<string>((r) => (ready = r))
  const {unix, users: _users, ...rest} = options
  const running = runServer({
    maildir,
    listen: [parseTarget(unix ? `unix:${join(dir, 'lmtp.sock')}` : '127.0.0.1:0')],
    socketMode: 0o660,
    hostname: 'serve.test',
    overQuota: 'temporary',
    checkQuotaAtRcpt: false,
    maxSize: 50 * 1024 * 1024,
    maxRecipients: 1000,
    maxConnections: 64,
    idleTimeoutMs: 60_000,
    logFormat: 'text',
    shutdownGraceMs: 1000,
    log: () => {},
    ...rest,
    usersFile,
    until,
    onReady: (server) => ready(server.listeners[0]!.address),
  })
  const target = await Promise.race([listening, running.then(() => Promise.reject(new Error('serve stopped at once')))])
  return {
    target,
    maildir,
    dir,
    async stop() {
      stop()
      const summary = await running
      await rm(dir, {recursive: true, force: true})
      return summary
    },
  }
}
