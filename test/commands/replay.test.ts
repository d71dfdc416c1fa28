/**
 * `lmtp replay` as a user runs it: the built CLI in its own process against the real `lmtp serve` code
 * in-process. Exit codes, --json, --report, piped output (no progress), load mode, and --compare end to end.
 */
import {mkdir, mkdtemp, readdir, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, test} from 'vitest'
import type {ReplaySummary} from '../../src/replay/driver.js'
import {runCli, startServe} from '../client/run-cli.js'
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
      expect(run.code).toBe(0)
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
      expect(run.code).toBe(0)
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
