/**
 * `lmtp probe` against real third-party LMTP servers: Dovecot LMTP (passes the non-destructive checklist; with
 * --deliver-to its SMTP smuggling weakness in 2.3.19 is a failure) and Python aiosmtpd's LMTP class (no
 * PIPELINING or ENHANCEDSTATUSCODES, one reply after the body). Gated: skipped locally without the peers,
 * mandatory in CI.
 */
import {afterAll, beforeAll, describe, expect, test} from 'vitest'
import {
  type AiosmtpdLmtp,
  type Cyrus,
  type Dovecot,
  type Mailutils,
  type Postfix,
  freePort,
  requirePeers,
  startAiosmtpdLmtp,
  startCyrus,
  startDovecot,
  startMailutils,
  startPostfix,
} from '../support/peers.js'
import {reportOf, runProbeCli, statuses} from './probe-helpers.js'

const dovecotGate = requirePeers('dovecot')
describe.skipIf(dovecotGate.skip)('against Dovecot LMTP', () => {
  let dovecot: Dovecot
  beforeAll(async () => {
    dovecotGate.check()
    dovecot = await startDovecot()
  })
  afterAll(async () => {
    await dovecot?.stop()
  })

  test('the non-destructive checklist passes (exit 0); MAIL before LHLO is a warning', async () => {
    const run = await runProbeCli([`127.0.0.1:${dovecot.port}`, '--json'])
    expect(run.code).toBe(0)
    const report = reportOf(run)
    expect(report.greeting?.text).toMatch(/Dovecot/)
    expect(report.checks.filter((c) => c.status === 'fail')).toEqual([])
    expect(statuses(report)).toMatchObject({
      'helo-refused': 'pass',
      'ehlo-refused': 'pass',
      'mail-before-lhlo': 'warn',
      'data-without-rcpt': 'pass',
      'pipelining-order': 'pass',
      'enhanced-codes': 'pass',
    })
    // The server probed is Dovecot: no comparison with Dovecot in the findings.
    expect(report.checks.find((c) => c.id === 'mail-before-lhlo')?.detail).not.toMatch(/Dovecot/)
  })

  test('over its Unix socket too', async () => {
    const run = await runProbeCli([`unix:${dovecot.socketPath}`, '--json'])
    expect(run.code).toBe(0)
  })

  test('--deliver-to: smuggling is reported as a failure (exit 76); the other delivery checks pass', async () => {
    const run = await runProbeCli([`127.0.0.1:${dovecot.port}`, '--deliver-to', 'alice@example.com', '--json'])
    expect(run.code).toBe(76)
    const report = reportOf(run)
    const failed = report.checks.filter((c) => c.status === 'fail').map((c) => c.id)
    // Dovecot 2.3.19 (Debian 12) ends the data at a bare-LF dot line in all three forms.
    expect(failed).toEqual(['smuggling-lf-dot-lf', 'smuggling-crlf-dot-lf', 'smuggling-lf-dot-crlf'])
    expect(report.checks.find((c) => c.id === 'smuggling-lf-dot-lf')?.detail).toMatch(/ran the injected commands.*second, forged message was delivered/)
    expect(statuses(report)).toMatchObject({'reply-per-recipient': 'pass', 'dot-stuffing': 'pass', bdat: 'pass'})
    // Dovecot answers BDAT LAST with no recipient with 503 (RFC 2033 §4.3 says no reply): a warning.
    expect(statuses(report)['bdat-last-no-recipients']).toBe('warn')
  })
})

const aioGate = requirePeers('aiosmtpd')
describe.skipIf(aioGate.skip)("against aiosmtpd's LMTP", () => {
  let aio: AiosmtpdLmtp
  beforeAll(async () => {
    aioGate.check()
    aio = await startAiosmtpdLmtp()
  })
  afterAll(async () => {
    await aio?.stop()
  })

  test('--deliver-to: missing PIPELINING/ENHANCEDSTATUSCODES and one reply after DATA (exit 76)', async () => {
    const run = await runProbeCli([`127.0.0.1:${aio.port}`, '--deliver-to', 'alice@example.com', '--json'])
    expect(run.code).toBe(76)
    const report = reportOf(run)
    expect(statuses(report)).toMatchObject({
      'pipelining-advertised': 'fail',
      'enhancedstatuscodes-advertised': 'fail',
      'reply-per-recipient': 'fail',
      'helo-refused': 'pass',
    })
    expect(report.checks.find((c) => c.id === 'reply-per-recipient')?.detail).toMatch(/1 replies after the body for 2 accepted recipients/)
    // It did receive the messages: the failure is in the replies, not the delivery.
    expect((await aio.messages()).length).toBeGreaterThan(0)
  })
})

const postfixGate = requirePeers('postfix')
describe.skipIf(postfixGate.skip)("against Postfix's smtpd (an SMTP server)", () => {
  let postfix: Postfix
  beforeAll(async () => {
    postfixGate.check()
    // Nothing listens behind it: the probe must never get as far as sending mail.
    postfix = await startPostfix({lmtpTarget: `inet:127.0.0.1:${await freePort()}`})
  })
  afterAll(async () => {
    await postfix?.stop()
  })

  test('"this is an SMTP server, not LMTP", exit 76, and --summary says so in one line', async () => {
    const run = await runProbeCli([`127.0.0.1:${postfix.smtpPort}`, '--deliver-to', 'alice@example.com', '--json'])
    expect(run.code).toBe(76)
    const report = reportOf(run)
    expect(report.speaks).toBe('smtp')
    expect(report.checks.map((c) => [c.id, c.status])).toEqual([['lhlo', 'fail']])
    expect(report.checks[0]!.detail).toMatch(/^this is an SMTP server, not LMTP: LHLO got "500 5\.5\.2 Error: command not recognized", the greeting says ".* ESMTP", EHLO is answered 250/)
    const summary = await runProbeCli([`127.0.0.1:${postfix.smtpPort}`, '--summary'])
    expect(summary.code).toBe(2)
    expect(summary.stdout).toMatch(/^LMTP CRITICAL - 127\.0\.0\.1:\d+: an SMTP server, not LMTP, 1 fail \(lhlo\) \| /)
  })
})

/**
 * Cyrus and Mailutils: right about the reply count, but unlike lmtp serve (Cyrus's LHLO ends with a session id
 * that changes per transaction; Mailutils takes one transaction per session and answers LHLO after DATA with
 * 503). The probe's --timeout is longer than the test's own limit: a check that waited a timeout on either
 * would fail the test, with no assertion on elapsed time.
 */
const SMUGGLING = ['smuggling-lf-dot-lf', 'smuggling-crlf-dot-lf', 'smuggling-lf-dot-crlf']
const NO_WAIT = {timeout: 100_000}
const cyrusGate = requirePeers('cyrus')
describe.skipIf(cyrusGate.skip)('against Cyrus lmtpd', () => {
  let cyrus: Cyrus
  beforeAll(async () => {
    cyrusGate.check()
    cyrus = await startCyrus()
  }, 120_000)
  afterAll(async () => {
    await cyrus?.stop()
  })

  test('-a port, --deliver-to: only the three true smuggling FAILs; one reply per recipient; codes on the last line count', NO_WAIT, async () => {
    const run = await runProbeCli([`127.0.0.1:${cyrus.lmtpPort}`, '--deliver-to', 'alice@example.com,nobody@example.com', '--timeout', '300s', '--json'], 90_000)
    expect(run.code).toBe(76)
    const report = reportOf(run)
    expect(report.checks.filter((c) => c.status === 'fail').map((c) => c.id)).toEqual(SMUGGLING)
    expect(statuses(report)).toMatchObject({'reply-per-recipient': 'pass', 'dot-stuffing': 'pass', 'enhanced-codes': 'pass', 'pipelining-order': 'pass', auth: 'pass'})
    expect(report.checks.find((c) => c.id === 'smuggling-lf-dot-lf')?.detail).toMatch(/second, forged message was delivered.*closed upstream when Postfix is the only client/)
    expect(report.lhlo?.freeText).toEqual([expect.stringMatching(/^Ok SESSIONID=</)])
    expect(report.lhlo?.capabilities.map((c) => c.keyword)).not.toContain('OK')
    // Cyrus is not Dovecot: the comparison stays.
    expect(report.checks.find((c) => c.id === 'mail-before-lhlo')?.detail).toMatch(/Dovecot does this too/)
  })

  test('AUTH port without --auth: named as a finding with the next step; pipelined order judged right', NO_WAIT, async () => {
    const run = await runProbeCli([`127.0.0.1:${cyrus.authPort}`, '--timeout', '300s', '--json'], 90_000)
    const report = reportOf(run)
    expect(report.auth).toMatchObject({required: true, mechanisms: ['PLAIN', 'LOGIN']})
    expect(report.checks.find((c) => c.id === 'auth')).toMatchObject({status: 'warn', detail: expect.stringMatching(/requires authentication.*--auth USER/)})
    expect(report.checks.find((c) => c.id === 'pipelining-order')).toMatchObject({status: 'pass', detail: expect.stringMatching(/430, 430, 503, 250, 250/)})
  })

  test('AUTH port with --auth: every session authenticates and the delivery checks run', NO_WAIT, async () => {
    const run = await runProbeCli(
      [`127.0.0.1:${cyrus.authPort}`, '--auth', cyrus.authUser, '--deliver-to', 'bob@example.com', '--only', 'auth,reply-per-recipient,dot-stuffing,smuggling-lf-dot-lf', '--timeout', '300s', '--json'],
      90_000,
      {LMTP_AUTH_PASSWORD: cyrus.authPassword},
    )
    const report = reportOf(run)
    expect(statuses(report)).toEqual({auth: 'pass', 'reply-per-recipient': 'pass', 'dot-stuffing': 'pass', 'smuggling-lf-dot-lf': 'fail'})
    expect(report.auth?.user).toBe(cyrus.authUser)
  })
})

const mailutilsGate = requirePeers('mailutils')
describe.skipIf(mailutilsGate.skip)('against GNU Mailutils lmtpd', () => {
  let mu: Mailutils
  beforeAll(async () => {
    mailutilsGate.check()
    mu = await startMailutils()
  }, 120_000)
  afterAll(async () => {
    await mu?.stop()
  })

  test('--deliver-to: no false smuggling or reply-count FAIL; the injected lines stay inside one message', NO_WAIT, async () => {
    const run = await runProbeCli([`127.0.0.1:${mu.port}`, '--deliver-to', 'mail@example.com', '--timeout', '300s', '--json'], 90_000)
    const report = reportOf(run)
    // NOOP answered 503 is true (RFC 5321 §4.5.1 requires NOOP): the only failure.
    expect(report.checks.filter((c) => c.status === 'fail').map((c) => c.id)).toEqual(['rset-noop'])
    expect(statuses(report)).toMatchObject({'reply-per-recipient': 'pass', 'dot-stuffing': 'pass', 'pipelining-order': 'pass', ...Object.fromEntries(SMUGGLING.map((id) => [id, 'pass']))})
    const stored = await mu.messages('mail')
    const smuggled = stored.filter((m) => m.includes('SMUGGLED message'))
    expect(smuggled).toHaveLength(3)
    for (const m of smuggled) expect(m).toMatch(/^Subject: lmtp probe: SMTP smuggling with /m)
  })
})
