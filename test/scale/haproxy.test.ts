/**
 * A real HAProxy (Debian's) in front of three `lmtp serve` instances on one Maildir, with send-proxy-v2 and the
 * configuration printed in the README (read from it here, ports replaced). 16 sessions deliver 2,000 messages,
 * each to a user with a 100K quota and to one with a large quota; after 600 acknowledged deliveries (an explicit
 * signal, no sleep) one instance is SIGKILLed and HAProxy must route around it (health check on each instance's /healthz,
 * redispatch on connect failure). Then the killed instance is restarted (its startup clean-up repairs what it left)
 * and one more message goes to each mailbox. Every acknowledged delivery is stored exactly once, the quota user is
 * within its quota, `maildirsize` adds up to the files, and the stored Received headers name the clients as HAProxy
 * saw them (the PROXY header), not HAProxy.
 */
import {readFile, rm, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {afterAll, expect, test} from 'vitest'
import {describePeers} from '../support/peers/gate.js'
import {freePort, PeerProcess, tempDir, waitForListening} from '../support/peers/proc.js'
import {cliBuilt, killAndWait, REPO_ROOT, type ServeProcess, spawnServe} from '../reliability/serve-process.js'
import {maildirsizeMismatches, newLedger, reconcile, runLoad, surveyMaildir} from './load.js'

const DOMAIN = 'example.com'
const QUOTA = 100 * 1024
const SESSIONS = 16
const PER_SESSION = Number(process.env.HAPROXY_PER_SESSION ?? 125)
const KILL_AFTER = Number(process.env.HAPROXY_KILL_AFTER ?? 600)

/** The HAProxy configuration block of the README (the one operators copy), with our ports. */
async function readmeConfig(ports: number[], metricsPorts: number[]): Promise<string> {
  const readme = await readFile(path.join(REPO_ROOT, 'README.md'), 'utf8')
  const m = /<!-- haproxy-example: test\/scale\/haproxy\.test\.ts -->\n```\n([\s\S]*?)```/.exec(readme)
  if (!m) throw new Error('README.md has no haproxy-example block')
  let cfg = m[1]!
  for (const [i, p] of [2424, 2425, 2426, 2427].entries()) {
    expect(cfg).toContain(`127.0.0.1:${p}`)
    cfg = cfg.replace(`127.0.0.1:${p}`, `127.0.0.1:${ports[i]}`)
  }
  // The health checks go to each instance's /healthz on its --metrics port.
  for (const [i, p] of [9125, 9126, 9127].entries()) {
    expect(cfg).toContain(`check port ${p}`)
    cfg = cfg.replace(`check port ${p}`, `check port ${metricsPorts[i]}`)
  }
  return cfg
}

describePeers('three serve instances behind a real HAProxy', ['haproxy'], () => {
  const cleanups: (() => Promise<unknown>)[] = []
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined)
  })

  test.skipIf(!cliBuilt())('2,000 messages, one instance SIGKILLed: nothing acknowledged lost, none twice, quota and maildirsize exact', {timeout: 240_000}, async () => {
    const dir = await tempDir('lmtp-scale-haproxy')
    cleanups.push(() => dir.cleanup())
    const root = path.join(dir.path, 'Maildir')
    const users = path.join(dir.path, 'users')
    await writeFile(users, `quota@${DOMAIN} quota=${QUOTA}\nbig@${DOMAIN} quota=1G\n`)
    const ports = [await freePort(), await freePort(), await freePort(), await freePort()]
    const metricsPorts = [await freePort(), await freePort(), await freePort()]
    const instanceArgs = (i: number) => [
      '--maildir', root, '--users', users, '--hostname', `lmtp${i + 1}.test`, '--no-events',
      '--proxy-listen', `127.0.0.1:${ports[i + 1]}`, '--proxy-protocol-from', '127.0.0.1', '--metrics', `127.0.0.1:${metricsPorts[i]}`,
    ]
    const instances: ServeProcess[] = []
    for (let i = 0; i < 3; i++) instances.push(await spawnServe(instanceArgs(i)))
    cleanups.push(() => Promise.all(instances.map((p) => killAndWait(p))))

    const cfgFile = path.join(dir.path, 'haproxy.cfg')
    await writeFile(cfgFile, await readmeConfig(ports, metricsPorts))
    const haproxy = new PeerProcess('haproxy', 'haproxy', ['-f', cfgFile, '-db'])
    cleanups.push(() => haproxy.stop())
    await waitForListening({port: ports[0]!}, {process: haproxy, greeting: true})

    const ledger = newLedger()
    let killedAt = -1
    let killing: Promise<unknown> | undefined
    await runLoad(
      SESSIONS,
      PER_SESSION,
      () => ({
        target: () => ({kind: 'tcp', host: '127.0.0.1', port: ports[0]!}),
        to: [`quota@${DOMAIN}`, `big@${DOMAIN}`],
        size: (n) => 300 + ((n * 397) % 1500),
        perConnection: 25,
        onAck: (l) => {
          if (killedAt < 0 && l.acked.length >= KILL_AFTER) {
            killedAt = l.acked.length
            killing = killAndWait(instances[1]!)
          }
        },
      }),
      ledger,
    )
    expect(((await killing) as {signal?: string} | undefined)?.signal).toBe('SIGKILL')
    const ackedAfterKill = ledger.acked.length - killedAt
    // HAProxy took the killed instance out through its health check (/healthz on the metrics port).
    expect(haproxy.output()).toMatch(/lmtp_serve\/lmtp2 is DOWN/)

    // An operator (or systemd) restarts the killed instance: its clean-up removes what it left in tmp/ and drops
    // the maildirsize it may have counted a message in; one more message per mailbox has it rebuilt.
    instances[1] = await spawnServe(instanceArgs(1))
    await runLoad(1, 1, () => ({target: () => ({kind: 'tcp', host: '127.0.0.1', port: ports[0]!}), to: [`quota@${DOMAIN}`, `big@${DOMAIN}`], size: () => 100, perConnection: 1}), ledger, 'final')

    const survey = await surveyMaildir(root, DOMAIN)
    const {lost, duplicates} = reconcile(ledger, survey)
    const mismatches = maildirsizeMismatches(survey)
    const quotaBox = survey.get(`quota@${DOMAIN}`)!
    console.log(
      `[haproxy] ${ledger.transactions} transactions, ${ledger.acked.length} acknowledged deliveries (${ackedAfterKill} after the kill at ${killedAt}), ` +
        `${ledger.overQuota} over quota, ${ledger.lostSessions} sessions cut; lost ${lost.length}, duplicates ${duplicates.length}; ` +
        `quota user ${quotaBox.files.bytes} B of ${QUOTA}; maildirsize mismatches ${mismatches.length}`,
    )
    expect(lost).toEqual([])
    expect(duplicates).toEqual([])
    expect(mismatches).toEqual([])
    expect(quotaBox.files.bytes).toBeLessThanOrEqual(QUOTA)
    expect(ledger.overQuota).toBeGreaterThan(0)
    // HAProxy kept delivering after the kill: most of the run came after it.
    expect(ackedAfterKill).toBeGreaterThan(1000)
    for (const s of survey.values()) expect(s.tmpLeft).toBe(0)
    // The Received headers name the client HAProxy saw (127.0.0.1 here) through the PROXY header, and each
    // surviving instance delivered.
    const big = path.join(root, DOMAIN, 'big', 'new')
    const names = await import('node:fs/promises').then((fs) => fs.readdir(big))
    const sample = await readFile(path.join(big, names[0]!), 'utf8')
    expect(sample).toMatch(/^Received: from s\d+\.scale\.test \(127\.0\.0\.1:\d+\)\n\tby lmtp\d\.test/m)
    const byInstance = new Set<string>()
    for (const n of names.slice(0, 400)) byInstance.add(/\tby (lmtp\d)\.test/.exec(await readFile(path.join(big, n), 'utf8'))?.[1] ?? '?')
    expect(byInstance.size).toBeGreaterThanOrEqual(2)
    await rm(path.join(dir.path, 'haproxy.cfg'))
  })
})
