/**
 * `lmtp send` against real LMTP servers nobody on this team wrote: Dovecot (per-recipient quota outcomes, TCP
 * and Unix socket), Postfix's smtp-sink with its fault flags, and Python aiosmtpd's non-compliant LMTP (one
 * reply after DATA), which must be reported as a protocol violation, not waited on.
 */
import {afterAll, afterEach, beforeAll, expect, test} from 'vitest'
import type {SendReport} from '../../src/client/send-message.js'
import {runCli} from '../client/run-cli.js'
import {
  type AiosmtpdLmtp,
  type Dovecot,
  describePeers,
  type SmtpSink,
  sinkSocketDir,
  startAiosmtpdLmtp,
  startDovecot,
  startSmtpSink,
} from '../support/peers.js'

type Row = [string, string, string, number]
const rows = (r: SendReport): Row[] => r.recipients.map((x) => [x.recipient, x.outcome, x.stage, x.code])

async function send(server: string, to: string[], ...more: string[]): Promise<{code: number | null; report: SendReport; stderr: string}> {
  const run = await runCli(['send', '--server', server, '--from', 'ops@example.org', '--to', to.join(','), '--timeout', '20', '--json', ...more])
  let report: SendReport
  try {
    report = JSON.parse(run.stdout) as SendReport
  } catch {
    throw new Error(`lmtp send printed no JSON (exit ${run.code}):\n${run.stdout}\n${run.stderr}`)
  }
  return {code: run.code, report, stderr: run.stderr}
}

// A 6 KB message: over the 4K quota of Dovecot's user `small`, fine for everyone else.
const BIG = ['--size', '6K']

for (const tempfail of [false, true]) {
  describePeers(`lmtp send -> Dovecot LMTP (quota_full_tempfail = ${tempfail ? 'yes' : 'no'})`, ['dovecot'], () => {
    let dovecot: Dovecot
    beforeAll(async () => {
      dovecot = await startDovecot({quotaTempfail: tempfail})
    })
    afterAll(async () => {
      await dovecot?.stop()
    })
    const over = tempfail ? ['deferred', 452, '4.2.2', 75] : ['rejected', 552, '5.2.2', 69]

    test.each(['tcp', 'unix'])(`[ok, quota'd, ok again] over %s: three results in order, exit ${over[3]}`, async (kind) => {
      const server = kind === 'tcp' ? `127.0.0.1:${dovecot.port}` : `unix:${dovecot.socketPath}`
      const before = (await dovecot.newMessages('alice')).length
      const {code, report} = await send(server, ['alice@example.com', 'small@example.com', 'alice@example.com'], ...BIG)
      expect(rows(report)).toEqual([
        ['alice@example.com', 'delivered', 'DATA', 250],
        ['small@example.com', over[0], 'DATA', over[1]],
        ['alice@example.com', 'delivered', 'DATA', 250],
      ])
      expect(report.recipients[1]!.enhanced).toBe(over[2])
      expect(report.violation).toBeNull()
      expect(code).toBe(over[3])
      expect(report.exitCode).toBe(over[3])
      // Dovecot stores a duplicate recipient once or twice; either way alice has the message now.
      expect((await dovecot.newMessages('alice')).length).toBeGreaterThan(before)
      expect(await dovecot.newMessages('small')).toEqual([])
    })
  })
}

describePeers('lmtp send -> smtp-sink -L and its fault flags', ['smtp-sink'], () => {
  let sink: SmtpSink | undefined
  afterEach(async () => {
    await sink?.stop()
    sink = undefined
  })
  const to = ['a@example.com', 'b@example.com']

  test.each([
    {flags: [] as string[], outcomes: ['delivered', 'delivered'], stage: 'DATA', code: 0, first: 2},
    {flags: ['-r', 'RCPT'], outcomes: ['deferred', 'deferred'], stage: 'RCPT', code: 75, first: 4},
    {flags: ['-f', 'RCPT'], outcomes: ['rejected', 'rejected'], stage: 'RCPT', code: 69, first: 5},
    {flags: ['-f', 'DATA'], outcomes: ['rejected', 'rejected'], stage: 'DATA', code: 69, first: 5},
    {flags: ['-r', 'DATA'], outcomes: ['deferred', 'deferred'], stage: 'DATA', code: 75, first: 4},
    {flags: ['-Q', 'DATA'], outcomes: ['deferred', 'deferred'], stage: 'DATA', code: 75, first: 4},
  ])('smtp-sink $flags: $outcomes at $stage, exit $code', async ({flags, outcomes, stage, code, first}) => {
    sink = await startSmtpSink({flags})
    const {code: exit, report} = await send(`127.0.0.1:${sink.port}`, to)
    expect(report.recipients.map((r) => r.outcome)).toEqual(outcomes)
    expect(report.recipients.map((r) => r.stage)).toEqual([stage, stage])
    expect(report.recipients.map((r) => Math.floor(r.code / 100))).toEqual([first, first])
    expect(report.violation).toBeNull()
    expect(exit).toBe(code)
  })

  test('over a Unix socket, with BDAT refused as not offered (exit 69) and plain DATA delivered', async () => {
    const dir = await sinkSocketDir()
    try {
      sink = await startSmtpSink({socketPath: dir.socketPath})
      const ok = await send(`unix:${dir.socketPath}`, to)
      expect(ok.code).toBe(0)
      expect(ok.report.summary).toEqual({total: 2, delivered: 2, deferred: 0, rejected: 0})
      const bdat = await runCli(['send', '--server', `unix:${dir.socketPath}`, '--to', 'a@example.com', '--bdat'])
      // smtp-sink does not offer CHUNKING: --bdat must refuse before MAIL instead of falling back.
      expect(ok.report.capabilities.chunking).toBe(false)
      expect(bdat.code).toBe(69)
      expect(bdat.stderr).toMatch(/does not offer CHUNKING, so BDAT cannot be used: drop --bdat/)
    } finally {
      await sink?.stop()
      sink = undefined
      await dir.cleanup()
    }
  })
})

describePeers('lmtp send -> aiosmtpd LMTP (one reply after DATA)', ['aiosmtpd'], () => {
  let aiosmtpd: AiosmtpdLmtp
  beforeAll(async () => {
    aiosmtpd = await startAiosmtpdLmtp()
  })
  afterAll(async () => {
    await aiosmtpd?.stop()
  })

  test('two recipients: exit 76 naming the problem, at once instead of hanging', async () => {
    const {code, report} = await send(`127.0.0.1:${aiosmtpd.port}`, ['a@example.com', 'b@example.com'])
    expect(code).toBe(76)
    expect(report.violation).toBe(
      'the server sent 1 replies after the body for 2 accepted recipients; RFC 2033 requires one per recipient',
    )
    expect(report.recipients.map((r) => [r.outcome, r.synthetic === true])).toEqual([
      ['delivered', false],
      ['deferred', true],
    ])
    // The synthetic result says the server sent nothing for b: the LHLO marker caught it, not a timeout.
    expect(report.recipients[1]!.text).toBe('the server sent no reply for this recipient')
    const plain = await runCli(['send', '--server', `127.0.0.1:${aiosmtpd.port}`, '--to', 'a@example.com,b@example.com'])
    expect(plain.code).toBe(76)
    expect(plain.stdout).toMatch(/^protocol violation by the server: the server sent 1 replies after the body for 2 accepted recipients/m)
  })

  test('one recipient: one reply is right, exit 0', async () => {
    const {code, report} = await send(`127.0.0.1:${aiosmtpd.port}`, ['a@example.com'])
    expect(report.violation).toBeNull()
    expect(code).toBe(0)
  })
})
