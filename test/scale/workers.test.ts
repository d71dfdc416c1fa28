/**
 * `serve --workers 2`: two processes share one Unix socket and one TCP port. Deliveries are spread over both
 * (their pids are in the stored file names), quota and maildirsize stay exact between them, a worker SIGKILLed
 * mid-run (after K acknowledged deliveries, an explicit signal) is replaced and nothing acknowledged is lost, and
 * SIGTERM stops every worker gracefully and removes the socket file.
 */
import {existsSync} from 'node:fs'
import {mkdtemp, readdir, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {afterAll, describe, expect, test} from 'vitest'
import {isAlive} from '../support/peers/proc.js'
import {cliBuilt, killAndWait, type ServeProcess, spawnServe} from '../reliability/serve-process.js'
import {maildirsizeMismatches, newLedger, reconcile, runLoad, surveyMaildir} from './load.js'

const DOMAIN = 'example.com'
const QUOTA = 200 * 1024

describe.skipIf(!cliBuilt())('serve --workers 2', () => {
  let dir = ''
  let serve: ServeProcess | undefined
  afterAll(async () => {
    if (serve) await killAndWait(serve)
    if (dir) await rm(dir, {recursive: true, force: true})
  })

  test('two workers share the listeners, keep quotas exact, survive a killed worker, stop on SIGTERM', {timeout: 180_000}, async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'lmtp-scale-workers-'))
    const root = path.join(dir, 'Maildir')
    const socket = path.join(dir, 'lmtp.sock')
    const users = path.join(dir, 'users')
    await writeFile(users, `quota@${DOMAIN} quota=${QUOTA}\nbig@${DOMAIN} quota=1G\n`)
    serve = await spawnServe(['--maildir', root, '--listen', `unix:${socket}`, '--users', users, '--hostname', 'scale.test', '--no-events', '--workers', '2'])
    const listening = JSON.parse(serve.tail.find((l) => l.includes('"event":"listening"'))!) as {pids: number[]; workers: number}
    expect(listening.workers).toBe(2)
    expect(listening.pids).toHaveLength(2)
    const victim = listening.pids[0]!
    // The primary's log line saying it replaced the killed worker (an explicit signal, waited for below).
    let output = ''
    const restarted = new Promise<void>((resolve) => {
      serve!.child.stdout!.on('data', (chunk: Buffer) => {
        output += chunk.toString('utf8')
        if (new RegExp(`"event":"worker.restart","pid":${victim}\\b`).test(output)) resolve()
        output = output.slice(-4096)
      })
    })

    const ledger = newLedger()
    let killed = false
    await runLoad(
      8,
      20,
      () => ({
        target: () => ({kind: 'unix', path: socket}),
        to: [`quota@${DOMAIN}`, `big@${DOMAIN}`],
        size: (n) => 500 + ((n * 733) % 3000),
        perConnection: 5,
        onAck: (l) => {
          if (!killed && l.acked.length >= 40) {
            process.kill(victim, 'SIGKILL')
            killed = true
          }
        },
      }),
      ledger,
    )
    expect(killed).toBe(true)
    await restarted

    const survey = await surveyMaildir(root, DOMAIN)
    const {lost, duplicates} = reconcile(ledger, survey)
    expect(lost).toEqual([])
    expect(duplicates).toEqual([])
    expect(maildirsizeMismatches(survey)).toEqual([])
    expect(survey.get(`quota@${DOMAIN}`)!.files.bytes).toBeLessThanOrEqual(QUOTA)
    expect(ledger.overQuota).toBeGreaterThan(0)
    // Both workers (and the replacement) delivered: their pids are in the unique names.
    const pids = new Set((await readdir(path.join(root, DOMAIN, 'big', 'new'))).map((f) => /P(\d+)Q/.exec(f)?.[1]))
    expect(pids.size).toBeGreaterThanOrEqual(2)

    const exit = await killAndWait(serve, 'SIGTERM')
    expect(exit).toEqual({code: 0, signal: null})
    expect(existsSync(socket)).toBe(false)
    for (const pid of listening.pids) expect(isAlive(pid)).toBe(false)
    serve = undefined
  })
})
