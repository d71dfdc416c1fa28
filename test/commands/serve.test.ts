/**
 * The `lmtp serve` command as a user runs it: startup errors with their exit codes and next steps, the
 * listening line, SIGTERM -> exit 0 with the --json summary.
 */
import {type ChildProcess, spawn} from 'node:child_process'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, test} from 'vitest'

const repo = path.resolve(import.meta.dirname, '..', '..')
let dir = ''

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'lmtp-serve-cmd-'))
})
afterAll(async () => {
  await rm(dir, {recursive: true, force: true})
})

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

function serve(args: string[], opts: {untilOutput?: RegExp; signal?: NodeJS.Signals} = {}): Promise<Run & {child: ChildProcess}> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(repo, 'bin', 'run.js'), 'serve', '--no-events', ...args], {
      cwd: dir,
      env: {...process.env, NO_COLOR: '1'},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    let signalled = false
    const check = (): void => {
      if (!signalled && opts.untilOutput && opts.untilOutput.test(stdout + stderr)) {
        signalled = true
        child.kill(opts.signal ?? 'SIGTERM')
      }
    }
    child.stdout.on('data', (d) => {
      stdout += d
      check()
    })
    child.stderr.on('data', (d) => {
      stderr += d
      check()
    })
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`serve did not finish: ${stdout}${stderr}`))
    }, 30_000)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve({code, stdout, stderr, child})
    })
  })
}

describe('lmtp serve startup', () => {
  test('port 25 is refused with exit 64 and the reason', async () => {
    const r = await serve(['--maildir', 'M', '--listen', '127.0.0.1:25'])
    expect(r.code).toBe(64)
    expect(r.stderr).toMatch(/port 25 is the SMTP port.*LMTP must not run there/)
  })

  test('a malformed users file stops startup with file, line and exit 78', async () => {
    const users = path.join(dir, 'users')
    await writeFile(users, 'alice@example.com\nbob@example.com quota=lots\n')
    const r = await serve(['--maildir', 'M', '--listen', '127.0.0.1:0', '--users', users])
    expect(r.code).toBe(78)
    expect(r.stderr).toContain(`${users}:2`)
  })

  test('an address in use: exit 69 and what to do', async () => {
    const blocker = net.createServer()
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()))
    const port = (blocker.address() as net.AddressInfo).port
    try {
      const r = await serve(['--maildir', 'M', '--listen', `127.0.0.1:${port}`])
      expect(r.code).toBe(69)
      expect(r.stderr).toMatch(/already in use.*choose another --listen/)
    } finally {
      blocker.close()
    }
  })

  test('a bad size flag: exit 64 naming the accepted forms', async () => {
    const r = await serve(['--maildir', 'M', '--listen', '127.0.0.1:0', '--max-size', 'huge'])
    expect(r.code).toBe(64)
    expect(r.stderr).toMatch(/--max-size "huge"/)
  })

  test('an unknown flag is a usage error (64)', async () => {
    const r = await serve(['--maildir', 'M', '--no-such-flag'])
    expect(r.code).toBe(64)
  })

  test('SIGTERM: exit 0; --json prints the run summary on stdout, logs on stderr', async () => {
    const sock = path.join(dir, 'json.sock')
    const r = await serve(['--maildir', 'M', '--listen', `unix:${sock}`, '--json', '--log-format', 'json'], {untilOutput: /"event":"listening"/})
    expect(r.code).toBe(0)
    const summary = JSON.parse(r.stdout)
    expect(summary.listeners).toEqual([`unix:${sock}`])
    expect(summary.totals.connections).toBe(0)
    expect(r.stderr.split('\n').filter(Boolean).every((l) => JSON.parse(l).level !== undefined)).toBe(true)
  })

  test('SIGINT in text mode: exit 0, the readable listening line', async () => {
    const sock = path.join(dir, 'text.sock')
    const r = await serve(['--maildir', 'M', '--listen', `unix:${sock}`], {untilOutput: /listening on/, signal: 'SIGINT'})
    expect(r.code).toBe(0)
    expect(r.stdout).toContain(`lmtp serve: listening on unix:${sock}, delivering into M`)
  })
})
