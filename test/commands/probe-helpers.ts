/**
 * Helpers for the `lmtp probe` command tests: run the built CLI in its own process (asynchronously, so an
 * in-process server keeps answering), and run the real `lmtp serve` server code in-process on port 0 and a
 * Unix socket with a Maildir in a temp dir, optionally with an openssl-made certificate for STARTTLS.
 */
import {execFileSync, spawn} from 'node:child_process'
import {existsSync} from 'node:fs'
import {mkdtemp, readdir, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {MaildirBackend} from '../../src/delivery/maildir-backend.js'
import type {ProbeReport} from '../../src/probe/types.js'
import {EventBus} from '../../src/protocol/events.js'
import {LmtpServer} from '../../src/server/server.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** What one CLI run produced. */
export interface ProbeRun {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs `node bin/run.js probe ...args` with NO_COLOR (and `env`); killed (by its pid) after `timeoutMs`. */
export function runProbeCli(args: string[], timeoutMs = 60_000, env: NodeJS.ProcessEnv = {}): Promise<ProbeRun> {
  if (!existsSync(join(ROOT, 'dist/commands/probe.js'))) {
    throw new Error('dist/ is not built: run `npm run build` (npm test does it) before these tests')
  }
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/run.js'), 'probe', ...args], {
      cwd: ROOT,
      env: {...process.env, NO_COLOR: '1', ...env},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({code, stdout, stderr})
    })
  })
}

/** The --json report of a run. */
export function reportOf(run: ProbeRun): ProbeReport {
  return JSON.parse(run.stdout) as ProbeReport
}

/** Status of every check, by id, for compact assertions. */
export function statuses(report: ProbeReport): Record<string, string> {
  return Object.fromEntries(report.checks.map((c) => [c.id, c.status]))
}

/** A running in-process lmtp serve. */
export interface ServeUnderTest {
  tcp: string
  unix: string
  maildir: string
  /** Message files delivered to `local@domain`, contents. */
  delivered(address: string): Promise<string[]>
  stop(): Promise<void>
}

/** Starts LmtpServer + MaildirBackend (the code behind `lmtp serve`); with `tls`, a fresh self-signed cert. */
export async function startServeUnderTest(options: {tls?: boolean} = {}): Promise<ServeUnderTest> {
  const dir = await mkdtemp(join(tmpdir(), 'lmtp-probe-serve-'))
  const maildir = join(dir, 'Maildir')
  const unix = join(dir, 'lmtp.sock')
  let tls: {cert: Buffer; key: Buffer} | undefined
  if (options.tls) {
    const certFile = join(dir, 'cert.pem')
    const keyFile = join(dir, 'key.pem')
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=mx.test', '-addext', 'subjectAltName=DNS:mx.test'],
      {stdio: 'ignore'},
    )
    tls = {cert: await readFile(certFile), key: await readFile(keyFile)}
  }
  const server = new LmtpServer(
    {
      listen: [
        {kind: 'tcp', host: '127.0.0.1', port: 0},
        {kind: 'unix', path: unix},
      ],
      hostname: 'mx.test',
      tls,
    },
    new MaildirBackend({root: maildir, hostname: 'mx.test'}),
    new EventBus(),
  )
  const listeners = await server.start()
  const tcp = listeners.find((l) => l.target.kind === 'tcp')!.address
  return {
    tcp,
    unix: `unix:${unix}`,
    maildir,
    async delivered(address) {
      const [local, domain] = address.split('@') as [string, string]
      const box = join(maildir, domain, local, 'new')
      const names = await readdir(box).catch(() => [] as string[])
      return Promise.all(names.sort().map((n) => readFile(join(box, n), 'utf8')))
    },
    async stop() {
      await server.stop(1000)
      await rm(dir, {recursive: true, force: true})
    },
  }
}
