/**
 * `serve --metrics`: a real Prometheus scrapes serve and a PromQL query through its HTTP API shows what was
 * sent; /healthz answers 200 while every listener is up and the Maildir is writable, 503 with the reason
 * otherwise.
 */
import {mkdir, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {afterEach, describe, expect, test} from 'vitest'
import {describePeers, startPrometheus, type PrometheusPeer, waitFor} from '../support/peers.js'
import {RawSession, type TestServer, startServe} from '../support/serve.js'
import type {MetricsEndpoint} from '../../src/server/metrics.js'

let srv: TestServer | undefined
let prom: PrometheusPeer | undefined
afterEach(async () => {
  await prom?.stop()
  prom = undefined
  if (srv) {
    await srv.stop()
    await srv.cleanup()
    srv = undefined
  }
})

/** Starts serve with --metrics on a free port and a users file knowing a and b. */
async function serveWithMetrics(): Promise<{srv: TestServer; endpoint: MetricsEndpoint}> {
  const usersFile = path.join(os.tmpdir(), `metrics-users-${process.pid}-${Date.now()}`)
  await writeFile(usersFile, 'a@example.com\nb@example.com\n')
  let endpoint: MetricsEndpoint | undefined
  const s = await startServe({usersFile, metrics: {host: '127.0.0.1', port: 0}, onMetrics: (e) => (endpoint = e)})
  return {srv: s, endpoint: endpoint!}
}

/** One transaction: RCPT a, b and nobody (refused 550 5.1.1), a small body; returns the replies' codes. */
async function sendOne(s: RawSession, n: number): Promise<number> {
  s.write('MAIL FROM:<s@example.org>\r\nRCPT TO:<a@example.com>\r\nRCPT TO:<nobody@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n')
  await s.waitReplies(n + 5)
  s.write('Subject: m\r\nMessage-ID: <m@test>\r\n\r\nhello\r\n.\r\n')
  await s.waitReplies(n + 7)
  return n + 7
}

describePeers('serve --metrics scraped by a real Prometheus', ['prometheus'], () => {
  test('the delivery counter in Prometheus matches what was sent', async () => {
    const started = await serveWithMetrics()
    srv = started.srv
    const s = await RawSession.open(srv.port)
    await s.waitReplies(1)
    s.write('LHLO c.test\r\n')
    let n = 2
    await s.waitReplies(n)
    for (let i = 0; i < 3; i++) n = await sendOne(s, n)
    expect(s.replies.slice(-2).map((r) => r.code)).toEqual([250, 250])
    s.write('QUIT\r\n')
    await s.waitClosed()

    prom = await startPrometheus(started.endpoint.address)
    const p = prom
    // Bounded poll of the API until a scrape taken after the sends is in (never a fixed sleep).
    const delivered = await waitFor(
      'Prometheus to scrape 6 deliveries',
      async () => {
        const r = await p.query('sum(lmtp_deliveries_total{outcome="delivered"})')
        return r.length === 1 && r[0]!.value === 6 ? r[0]!.value : undefined
      },
      60_000,
      250,
    )
    expect(delivered).toBe(6)
    expect(await p.query('lmtp_deliveries_total')).toEqual([
      {metric: expect.objectContaining({outcome: 'delivered', enhanced: '2.0.0', job: 'lmtp'}), value: 6},
    ])
    expect((await p.query('lmtp_rcpt_refusals_total{enhanced="5.1.1"}')).map((r) => r.value)).toEqual([3])
    expect((await p.query('lmtp_messages_total')).map((r) => r.value)).toEqual([3])
    expect((await p.query('lmtp_delivery_duration_seconds_count')).map((r) => r.value)).toEqual([6])
    expect((await p.query('lmtp_fsync_duration_seconds_count')).map((r) => r.value)).toEqual([6])
    expect((await p.query('lmtp_sessions_closed_total{reason="quit"}')).map((r) => r.value)).toEqual([1])
    expect((await p.query('lmtp_maildir_free_bytes > 0')).length).toBe(1)
    expect((await p.query('process_cpu_seconds_total')).length).toBe(1)
    expect((await p.query('up{job="lmtp"}')).map((r) => r.value)).toEqual([1])
  }, 120_000)
})

describe('serve --metrics /healthz', () => {
  test('200 while listeners are up and the Maildir writable; 503 with the reason when not', async () => {
    const started = await serveWithMetrics()
    srv = started.srv
    const url = `http://${started.endpoint.address}/healthz`
    let r = await fetch(url)
    expect(r.status).toBe(200)
    expect(await r.text()).toMatch(/^ok: 2 listener\(s\) up, Maildir writable/)
    // Several checkers at once (two HAProxies, Prometheus' blackbox) must not trip over each other's probe file.
    const together = await Promise.all(Array.from({length: 20}, () => fetch(url).then((x) => x.status)))
    expect(together).toEqual(Array.from({length: 20}, () => 200))

    // The spool directory replaced by a file: nothing can be stored, so not healthy.
    const spool = path.join(srv.root, '.lmtp-spool')
    await rm(spool, {recursive: true, force: true})
    await writeFile(spool, 'not a directory')
    r = await fetch(url)
    expect(r.status).toBe(503)
    expect(await r.text()).toContain(`Maildir not writable: `)
    await rm(spool)
    await mkdir(spool)
    expect((await fetch(url)).status).toBe(200)

    // Stopping with a transaction in flight: the listeners close first, /healthz says so during the grace.
    const s = await RawSession.open(srv.port)
    await s.waitReplies(1)
    s.write('LHLO c.test\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n')
    await s.waitReplies(5)
    const stopping = srv.stop()
    const body = await waitFor('healthz to turn 503', async () => {
      const res = await fetch(url)
      return res.status === 503 ? res.text() : undefined
    })
    expect(body).toBe('no listener is up\n')
    s.write('x\r\n.\r\n')
    await s.waitReplies(6)
    expect(s.replies[5]!.code).toBe(250)
    await stopping
    await srv.cleanup()
    srv = undefined
  })

  test('--metrics on a port in use: a clear error, nothing left listening', async () => {
    const started = await serveWithMetrics()
    srv = started.srv
    await expect(startServe({metrics: {host: '127.0.0.1', port: started.endpoint.port}})).rejects.toThrow(/--metrics 127\.0\.0\.1:\d+ is already in use/)
  })
})
