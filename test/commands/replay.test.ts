/**
 * `lmtp replay` as a user runs it: the built CLI in its own process against the real `lmtp serve` code
 * in-process. Exit codes, --json, --report, piped output (no progress), load mode, and --compare end to end.
 */
import {spawn} from 'node:child_process'
import {mkdir, mkdtemp, readdir, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, test} from 'vitest'
import type {ReplaySummary} from '../../src/replay/summary.js'
import {ROOT, runCli, startServe} from '../client/run-cli.js'
import {startServe as startRecordingServe} from '../support/serve.js'
import {freePort} from '../support/peers.js'

let scratch: string
let emls: string
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'lmtp-replay-cli-'))
  emls = join(scratch, 'emls')
  await mkdir(emls)
  await writeFile(join(emls, 'a.eml'), 'To: alice@example.com\r\nSubject: a\r\n\r\nA\r\n')
  await writeFile(join(emls, 'b.eml'), 'Delivered-To: bob@example.com\nTo: someone@example.com\nSubject: b\n\nB\n')
  await writeFile(join(emls, 'broken.eml'), '\nno headers at all\n')
})
afterAll(async () => {
  await rm(scratch, {recursive: true, force: true})
})

function summaryOf(run: {stdout: string}): ReplaySummary {
  return JSON.parse(run.stdout) as ReplaySummary
}

describe('usage and input errors', () => {
  test.each([
    [[], /give at least one SOURCE/],
    [['--generate', '1K'], /--generate needs --to/],
    [['--generate', 'lots', '--to', 'a@x'], /--generate/],
    [['x', '--loop'], /--loop needs --count/],
    [['x', '--rate', '0'], /--rate "0"/],
    [['x', '--server', '127.0.0.1:25'], /port 25/],
    [['x', '--compare', '--to', 'a@x'], /--compare needs the recorded envelope/],
    [['--generate', '1K', '--to', 'a@x', '--resume', 'r'], /--resume .* cannot be used with --generate/],
  ])('%j exits 64', async (args, message) => {
    const run = await runCli(['replay', ...args])
    expect(run.stderr).toMatch(message)
    expect(run.code).toBe(64)
  })

  test('a SOURCE that does not exist exits 66', async () => {
    const run = await runCli(['replay', join(scratch, 'missing'), '--server', '127.0.0.1:2'])
    expect(run.stderr).toMatch(/cannot read SOURCE .*missing: no such file/)
    expect(run.code).toBe(66)
  })

  test('only bad items: nothing to send, exit 66, each problem listed', async () => {
    const serve = await startServe()
    try {
      const run = await runCli(['replay', join(emls, 'broken.eml'), '--server', serve.target, '--json'])
      expect(run.code).toBe(66)
      const s = summaryOf(run)
      expect(s.input.skipped).toBe(1)
      expect(s.input.problems[0]!.reason).toMatch(/no headers/)
    } finally {
      await serve.stop()
    }
  })

  test('--resume with a file that is not a resume file exits 64 and names it', async () => {
    const run = await runCli(['replay', emls, '--resume', join(emls, 'a.eml'), '--server', '127.0.0.1:2'])
    expect(run.stderr).toMatch(/a\.eml is not a resume file written by lmtp replay --resume/)
    expect(run.code).toBe(64)
  })

  test('connection refused exits 74 with the next step', async () => {
    const run = await runCli(['replay', emls, '--server', `127.0.0.1:${await freePort()}`])
    expect(run.stderr).toMatch(/connection refused \(is the LMTP server running/)
    expect(run.code).toBe(74)
  })
})

describe('against lmtp serve', () => {
  test('--json: the summary object only on stdout, nothing on stderr when piped; --report has one line per recipient', async () => {
    const serve = await startServe()
    const report = join(scratch, 'report.ndjson')
    try {
      const run = await runCli(['replay', emls, '--server', serve.target, '--json', '--concurrency', '2', '--report', report])
      expect(run.stderr).toBe('')
      // broken.eml was not sent: 65, although every message that was sent was delivered.
      expect(run.code).toBe(65)
      const s = summaryOf(run)
      expect(s.messages).toEqual({total: 2, delivered: 2, deferred: 0, rejected: 0})
      expect(s.input).toMatchObject({read: 3, skipped: 1})
      expect(s.codes).toEqual([{reply: '250 2.0.0', count: 2}])
      expect(Object.keys(s.latency)).toEqual(['connect', 'lhlo', 'mail', 'rcpt', 'data', 'message'])
      expect(s.latency.data.count).toBe(2)
      const lines = (await readFile(report, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as {recipient: string; code: number})
      expect(lines.map((l) => `${l.recipient} ${l.code}`).sort()).toEqual(['alice@example.com 250', 'bob@example.com 250'])
      expect(await readdir(join(serve.maildir, 'example.com'))).toEqual(expect.arrayContaining(['alice', 'bob']))
    } finally {
      await serve.stop()
    }
  })

  test('text output: the summary, no progress bar or escape codes when piped', async () => {
    const serve = await startServe()
    try {
      const run = await runCli(['replay', emls, '--server', serve.target])
      expect(run.code).toBe(65)
      expect(run.stdout).toMatch(/^lmtp replay -> 127\.0\.0\.1:\d+: closed loop, 1 session, 2 messages in/)
      expect(run.stdout).toMatch(/\nrecipients\s+2\s+delivered 2/)
      expect(run.stdout).toMatch(/\n {2}skipped\s+.*broken\.eml: the message has no headers/)
      expect(run.stdout + run.stderr).not.toMatch(/[\r\x1b]/)
    } finally {
      await serve.stop()
    }
  })

  test('a rejected recipient exits 69; --to overrides the corpus envelope', async () => {
    const serve = await startServe({users: 'alice@example.com\n'})
    try {
      const run = await runCli(['replay', join(emls, 'a.eml'), '--server', serve.target, '--json', '--to', 'alice@example.com,nobody@example.com'])
      const s = summaryOf(run)
      expect(s.recipients).toEqual({total: 2, delivered: 1, deferred: 0, rejected: 1})
      expect(run.code).toBe(69)
    } finally {
      await serve.stop()
    }
  })

  test('--generate: load mode with 4 sessions, exactly --count messages', async () => {
    const serve = await startServe()
    try {
      const run = await runCli(['replay', '--generate', '2K', '--to', 'load@example.com', '--count', '40', '--concurrency', '4', '--server', serve.target, '--json'])
      expect(run.code).toBe(0)
      const s = summaryOf(run)
      expect(s.messages.delivered).toBe(40)
      expect(s.connections.opened).toBe(4)
      expect(s.bytes).toBeGreaterThanOrEqual(40 * 2000)
      expect(await readdir(join(serve.maildir, 'example.com', 'load', 'new'))).toHaveLength(40)
    } finally {
      await serve.stop()
    }
  })

  test('record with serve --record, replay with --compare: unchanged exits 0, a changed outcome exits 76', async () => {
    const rec = join(scratch, 'rec')
    const a = await startRecordingServe({record: rec})
    const gen = await runCli(['replay', '--generate', '1K', '--to', 'alice@example.com', '--to', 'bob@example.com', '--count', '3', '--server', `127.0.0.1:${a.port}`])
    expect(gen.code).toBe(0)
    await a.stop()
    await a.cleanup()
    const same = await startServe()
    const changed = await startServe({users: 'alice@example.com\n'})
    try {
      const ok = await runCli(['replay', rec, '--compare', '--server', same.target])
      expect(ok.stdout).toMatch(/compare\s+6 compared, 6 unchanged, 0 changed/)
      expect(ok.code).toBe(0)
      const bad = await runCli(['replay', rec, '--compare', '--server', changed.target, '--json'])
      const s = summaryOf(bad)
      expect(s.compare!.changed).toBe(3)
      expect(new Set(s.compare!.changes.map((c) => `${c.recipient} ${c.recorded.code} -> ${c.now.code}`))).toEqual(new Set(['bob@example.com 250 -> 550']))
      expect(bad.code).toBe(76)
    } finally {
      await same.stop()
      await changed.stop()
    }
  })
})

describe('help', () => {
  test('the usage line shows SOURCE, and every example is one command that runs as written', async () => {
    const run = await runCli(['replay', '--help'])
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/USAGE\n\s+\$ lmtp replay SOURCE\.\.\. /)
    const examples = run.stdout.slice(run.stdout.indexOf('EXAMPLES'))
    // An example is a `$ ` line plus the lines oclif wrapped after a trailing backslash.
    const commands = examples.split(/\n\s*\n/).filter((b) => /^\s+\$ /.test(b)).map((b) => b.trim().replace(/\\\n\s*/g, ''))
    expect(commands.length).toBeGreaterThanOrEqual(5)
    for (const c of commands) expect(c.match(/(^|\s|\$ )lmtp (serve|replay)\b/g), c).toHaveLength(1)
  })
})

describe('interrupted and resumed', () => {
  test('Ctrl-C mid-run exits 130; a second run with the same --resume FILE sends only the rest, each message once', async () => {
    const maildir = join(scratch, 'migrate')
    for (const sub of ['cur', 'new', 'tmp']) await mkdir(join(maildir, sub), {recursive: true})
    for (let n = 1; n <= 60; n++) {
      await writeFile(join(maildir, 'cur', `${1000 + n}.M${n}.old:2,S`), `Delivered-To: m@example.com\nMessage-ID: <${n}@migrate.test>\nSubject: ${n}\n\nbody ${n}\n`)
    }
    const resume = join(scratch, 'migrate.resume')
    const serve = await startServe()
    try {
      // Slowly (10 messages per second), so that Ctrl-C comes mid-run.
      const child = spawn(process.execPath, [join(ROOT, 'bin/run.js'), 'replay', maildir, '--server', serve.target, '--rate', '10', '--resume', resume, '--json'], {
        cwd: ROOT,
        env: {...process.env, NO_COLOR: '1'},
      })
      let stdout = ''
      child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
      const exited = new Promise<number | null>((resolve) => child.on('close', resolve))
      // Wait until the resume file lists 3 messages, then interrupt.
      for (let tries = 0; tries < 400; tries++) {
        const text = await readFile(resume, 'utf8').catch(() => '')
        if (text.split('\n').filter((l) => l.includes('"key"')).length >= 3) break
        await new Promise((r) => setTimeout(r, 50))
      }
      child.kill('SIGINT')
      expect(await exited).toBe(130)
      const first = JSON.parse(stdout) as ReplaySummary
      expect(first.interrupted).toBe(true)
      expect(first.messages.delivered).toBeGreaterThanOrEqual(3)
      expect(first.messages.delivered).toBeLessThan(60)
      const second = await runCli(['replay', maildir, '--server', serve.target, '--resume', resume, '--json'])
      expect(second.code).toBe(0)
      const s = summaryOf(second)
      expect(s.resume!.alreadyDone).toBe(first.messages.delivered)
      expect(s.messages.delivered).toBe(60 - first.messages.delivered)
      const box = join(serve.maildir, 'example.com', 'm', 'new')
      const ids = await Promise.all((await readdir(box)).map(async (f) => /Message-ID: <(\d+)@/.exec(await readFile(join(box, f), 'utf8'))![1]))
      expect(ids.map(Number).sort((a, b) => a - b)).toEqual(Array.from({length: 60}, (_, i) => i + 1))
    } finally {
      await serve.stop()
    }
  })
})
