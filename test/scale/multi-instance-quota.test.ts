/**
 * Several `lmtp serve` processes on one Maildir (issue 12, defect 6): three instances share --maildir and
 * --users, 3 x 8 sessions deliver every message to a user with a 100K quota and to a user with a large one.
 * Quota accounting must hold across processes: the quota'd user never ends over its quota, and every mailbox's
 * `maildirsize` adds up to exactly its files (no instance's rebuild may drop lines another one appended).
 * Nothing acknowledged is lost, nothing is stored twice.
 */
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {afterAll, describe, expect, test} from 'vitest'
import {cliBuilt, killAndWait, type ServeProcess, spawnServe} from '../reliability/serve-process.js'
import {maildirsizeMismatches, newLedger, reconcile, runLoad, surveyMaildir} from './load.js'

const INSTANCES = 3
const SESSIONS_PER_INSTANCE = 8
const MESSAGES_PER_SESSION = 40
const QUOTA = 100 * 1024
const DOMAIN = 'example.com'

describe.skipIf(!cliBuilt())('three serve processes on one Maildir', () => {
  let dir = ''
  const procs: ServeProcess[] = []
  afterAll(async () => {
    await Promise.all(procs.map((p) => killAndWait(p)))
    if (dir) await rm(dir, {recursive: true, force: true})
  })

  test('quota and maildirsize stay exact across processes', {timeout: 180_000}, async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'lmtp-scale-quota-'))
    const root = path.join(dir, 'Maildir')
    const users = path.join(dir, 'users')
    await writeFile(users, `quota@${DOMAIN} quota=${QUOTA}\nbig@${DOMAIN} quota=1G\n`)
    const sockets = Array.from({length: INSTANCES}, (_, i) => path.join(dir, `lmtp${i}.sock`))
    for (const s of sockets) {
      procs.push(await spawnServe(['--maildir', root, '--listen', `unix:${s}`, '--users', users, '--hostname', 'scale.test', '--no-events']))
    }
    const ledger = newLedger()
    await runLoad(
      INSTANCES * SESSIONS_PER_INSTANCE,
      MESSAGES_PER_SESSION,
      (s) => ({
        target: () => ({kind: 'unix', path: sockets[s % INSTANCES]!}),
        to: [`quota@${DOMAIN}`, `big@${DOMAIN}`],
        size: (n) => 600 + ((s * 131 + n * 977) % 2400),
        perConnection: 10,
      }),
      ledger,
    )
    const survey = await surveyMaildir(root, DOMAIN)
    const quotaBox = survey.get(`quota@${DOMAIN}`)!
    const largest = 600 + 2400 + 512
    const overBytes = Math.max(0, quotaBox.files.bytes - QUOTA)
    const mismatches = maildirsizeMismatches(survey)
    const {lost, duplicates} = reconcile(ledger, survey)
    console.log(
      `[scale] ${INSTANCES} instances, ${ledger.transactions} transactions, ${ledger.acked.length} acknowledged, ${ledger.overQuota} over quota; ` +
        `quota user ${quotaBox.files.bytes} B of ${QUOTA} (${(overBytes / largest).toFixed(1)} messages, ${((100 * overBytes) / QUOTA).toFixed(1)} % over); ` +
        `maildirsize mismatches: ${mismatches.length ? mismatches.join('; ') : 'none'}; lost ${lost.length}, duplicates ${duplicates.length}`,
    )
    // The run must have filled the quota and refused the rest, or it proves nothing.
    expect(ledger.overQuota).toBeGreaterThan(0)
    expect(ledger.lostSessions).toBe(0)
    expect(lost).toEqual([])
    expect(duplicates).toEqual([])
    expect(mismatches).toEqual([])
    expect(quotaBox.files.bytes).toBeLessThanOrEqual(QUOTA)
    for (const s of survey.values()) expect(s.tmpLeft).toBe(0)
  })
})
