/**
 * The benchmark harness must not rot: run it for real with tiny counts (20 messages, one round, 2 sessions)
 * and check that it produced a well-formed results file and table. Never asserts a speed: speed is measured
 * by hand (npm run bench) and recorded in BENCHMARKS.md.
 */
import {spawn} from 'node:child_process'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, test} from 'vitest'
import {type BenchResults, validateResults} from '../../bench/lib/report.js'
import {findExecutable, requirePeers} from '../support/peers/gate.js'

const repo = path.resolve(import.meta.dirname, '..', '..')
const gate = requirePeers('smtp-source', 'smtp-sink', 'dovecot', 'swaks')

describe.skipIf(gate.skip)('bench harness smoke (tiny counts)', () => {
  let dir: string
  let results: BenchResults
  let stdout = ''
  let stderr = ''
  let code: number | null = null

  beforeAll(async () => {
    gate.check()
    dir = await mkdtemp(path.join(os.tmpdir(), 'lmtp-bench-smoke-'))
    const out = path.join(dir, 'results.json')
    const args = ['--import', 'tsx', 'bench/run.ts', '--quick', '--sessions', '2', '--scenarios', '0,1,3,4,5,6', '--out', out]
    code = await new Promise<number | null>((resolve) => {
      const child = spawn(process.execPath, args, {cwd: repo, env: {...process.env, OCLIF_SKIP_NEW_VERSION_CHECK: 'true'}})
      child.stdout.on('data', (c: Buffer) => {
        stdout += c.toString()
      })
      child.stderr.on('data', (c: Buffer) => {
        stderr += c.toString()
      })
      child.on('close', resolve)
    })
    if (code === 0) results = JSON.parse(await readFile(out, 'utf8')) as BenchResults
  }, 180_000)

  afterAll(async () => {
    if (dir) await rm(dir, {recursive: true, force: true})
  })

  test('exits 0 and writes a results file of the documented shape', () => {
    expect({code, stderr: code === 0 ? '' : stderr.slice(-2000)}).toEqual({code: 0, stderr: ''})
    expect(validateResults(results)).toEqual([])
    expect(results.settings).toMatchObject({messages: 20, rounds: 1, sessions: [2]})
  })

  // Scenario 0 needs a C compiler; without one the harness must say so instead of measuring.
  const cc = findExecutable('cc') !== undefined || findExecutable('gcc') !== undefined

  test('every side of scenario 1 was measured (no failed round), with the limit and Dovecot beside serve', () => {
    const sides = results.measurements.filter((m) => m.scenario <= 1).map((m) => `${m.scenario} ${m.side} ${m.unit}`)
    const limit = cc ? ['0 durable limit (C) files/s'] : []
    expect(sides.sort()).toEqual([...limit, '1 dovecot msg/s', '1 serve msg/s', '1 smtp-sink msg/s'])
    if (!cc) expect(results.unavailable.some((u) => u.scenario === 0)).toBe(true)
    for (const m of results.measurements) {
      expect(m.errors ?? [], `${m.side} in ${m.case}`).toEqual([])
      expect(Number.isFinite(m.median) && m.median > 0, `${m.side} in ${m.case}: ${m.median}`).toBe(true)
    }
    const names = ['lmtp send / swaks', 'serve / dovecot', ...(cc ? ['serve / durable limit (C)'] : []), 'serve / smtp-sink']
    expect(results.ratios.filter((r) => r.scenario <= 1 || r.scenario === 6).map((r) => r.name).sort()).toEqual(names)
  })

  test('scenario 4 reports memory; scenarios 3 and 5 run or say why not', () => {
    const memory = results.measurements.filter((m) => m.scenario === 4).map((m) => m.case)
    expect(memory.some((c) => c.startsWith('peak RSS under load'))).toBe(true)
    expect(memory.some((c) => c.startsWith('RSS growth with one'))).toBe(true)
    expect(memory.some((c) => c.startsWith('RSS extra with 20 idle'))).toBe(true)
    for (const s of [3, 5]) {
      const measured = results.measurements.some((m) => m.scenario === s)
      const explained = results.unavailable.some((u) => u.scenario === s && u.reason.length > 0)
      expect(measured || explained, `scenario ${s}`).toBe(true)
    }
  })

  test('prints one table with a row per measurement and per ratio', () => {
    const rows = stdout.split('\n').filter((l) => /^\| \d \|/.test(l))
    expect(rows.length).toBe(results.measurements.length + results.ratios.length + results.unavailable.length)
    expect(stdout).toContain('| scenario | case | measure | median | per round | target / note |')
    expect(stdout).toContain(`Node ${process.version}`)
  })
})
