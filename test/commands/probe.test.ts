/**
 * `lmtp probe` as a user runs it (the built CLI in its own process) against the real `lmtp serve` code:
 * plain, over a Unix socket, with --deliver-to (messages really land in the Maildir, no smuggled one), and
 * with STARTTLS and an openssl certificate; and the exit codes for unreachable targets and port 25.
 */
import {afterAll, beforeAll, describe, expect, test} from 'vitest'
import {freePort} from '../support/peers.js'
import {reportOf, runProbeCli, type ServeUnderTest, startServeUnderTest, statuses} from './probe-helpers.js'

const ANSI = /\x1b\[/

describe('against lmtp serve', () => {
  let serve: ServeUnderTest
  beforeAll(async () => {
    serve = await startServeUnderTest()
  })
  afterAll(async () => {
    await serve.stop()
  })

  test('non-destructive, piped: exit 0, plain lines without colour or borders, one per check', async () => {
    const run = await runProbeCli([serve.tcp, '--lhlo', 'probe.test'])
    expect(run.code).toBe(0)
    expect(run.stdout).not.toMatch(ANSI)
    expect(run.stdout).not.toMatch(/[│┌└]/)
    expect(run.stdout).toMatch(/^lmtp probe 127\.0\.0\.1:\d+$/m)
    expect(run.stdout).toMatch(/^capability SIZE 52428800: messages up to 50 MB \(52428800 octets\) are accepted/m)
    expect(run.stdout).toMatch(/^latency MAIL FROM:<> -> 250 2\.1\.0 sender ok \(\d+(\.\d)? ms\)$/m)
    expect(run.stdout).toMatch(/^pass {2}helo-refused +HELO not accepted \(RFC 2033 §4\.1\): "500 /m)
    expect(run.stdout).toMatch(/^skip {2}auth +Transactions allowed \(LMTP AUTH\)/m)
    expect(run.stdout).toMatch(/0 fail, \d+ skip in \d+ ms: no conformance failure \(exit 0\)$/m)
    // Nothing was delivered without --deliver-to.
    expect(await serve.delivered('postmaster@mx.test')).toEqual([])
  })

  test('--json --deliver-to: every check passes, the dot-stuffed lines arrive intact, nothing is smuggled', async () => {
    const run = await runProbeCli([serve.tcp, '--lhlo', 'probe.test', '--deliver-to', 'alice@example.com', '--json'])
    expect(run.code).toBe(0)
    const report = reportOf(run)
    expect(report.exitCode).toBe(0)
    const notPassed = report.checks.filter((c) => c.status !== 'pass').map((c) => `${c.id}: ${c.status}`)
    expect(notPassed).toEqual(['starttls: skip', 'tls-certificate: skip', 'auth: skip'])
    expect(statuses(report)).toMatchObject({'reply-per-recipient': 'pass', bdat: 'pass', 'bdat-last-no-recipients': 'pass', 'smuggling-lf-dot-lf': 'pass'})
    expect(report.lhlo?.capabilities.map((c) => c.keyword)).toEqual(['PIPELINING', 'ENHANCEDSTATUSCODES', '8BITMIME', 'SIZE', 'CHUNKING', 'SMTPUTF8'])
    expect(report.latency.map((l) => l.command)).toEqual(['connect', 'greeting', 'LHLO probe.test', 'NOOP', 'MAIL FROM:<>', 'RCPT TO:<alice@example.com>', 'RSET', 'QUIT'])

    const files = await serve.delivered('alice@example.com')
    // reply-per-recipient (the duplicate gets its own copy), dot-stuffing and bdat; the smuggling ones are refused.
    expect(files.filter((f) => /^Subject: lmtp probe: one reply per recipient/m.test(f))).toHaveLength(2)
    const dots = files.find((f) => /^Subject: lmtp probe: dot-stuffing/m.test(f))!
    expect(dots).toMatch(/\n\.\r?\n\.\.\r?\n\.a line starting with one dot\r?\n\.\.a line starting with two dots\r?\n\. a dot and a space/)
    expect(files.some((f) => /^Subject: lmtp probe: BDAT chunks/m.test(f))).toBe(true)
    expect(files.some((f) => /SMUGGLED|smuggling/.test(f))).toBe(false)
  })

  test('over a Unix socket', async () => {
    const run = await runProbeCli([serve.unix, '--json'])
    expect(run.code).toBe(0)
    const report = reportOf(run)
    expect(report.target).toBe(serve.unix)
    expect(report.checks.find((c) => c.id === 'port-25')?.detail).toBe('Unix socket')
  })
})

describe('against lmtp serve with STARTTLS', () => {
  let serve: ServeUnderTest
  beforeAll(async () => {
    serve = await startServeUnderTest({tls: true})
  })
  afterAll(async () => {
    await serve.stop()
  })

  test('--starttls --tls-insecure: the TLS facts are reported, the checks run over TLS, exit 0', async () => {
    const run = await runProbeCli([serve.tcp, '--starttls', '--tls-insecure', '--deliver-to', 'bob@example.com', '--json'])
    expect(run.code).toBe(0)
    const report = reportOf(run)
    expect(report.tls).toMatchObject({
      offered: true,
      established: true,
      subject: 'mx.test',
      issuer: 'mx.test',
      altNames: ['DNS:mx.test'],
      verified: false,
      verifyError: 'DEPTH_ZERO_SELF_SIGNED_CERT',
    })
    expect(report.tls?.protocol).toMatch(/^TLSv1\.[23]$/)
    expect(report.tls?.cipher).toMatch(/\w/)
    expect([1, 2]).toContain(report.tls?.daysToExpiry)
    expect(statuses(report)).toMatchObject({starttls: 'pass', 'tls-certificate': 'warn', 'reply-per-recipient': 'pass'})
    expect(report.latency.map((l) => l.command)).toContain('STARTTLS + TLS handshake')
    // Inside TLS STARTTLS is gone from the capabilities.
    expect(report.lhlo?.capabilities.map((c) => c.keyword)).not.toContain('STARTTLS')
  })

  test('without --starttls the certificate is still shown (from a session of its own), and the checks stay in plain text', async () => {
    const run = await runProbeCli([serve.tcp])
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/^TLS subject {3}mx\.test$/m)
    expect(run.stdout).toMatch(/^TLS verifies {2}no \(DEPTH_ZERO_SELF_SIGNED_CERT\)$/m)
    expect(run.stdout).toMatch(/^pass {2}starttls +STARTTLS works and resets the session .*STARTTLS no longer advertised afterwards$/m)
    expect(run.stdout).not.toMatch(/STARTTLS \+ TLS handshake/)
  })

  test('--starttls without --tls-insecure: an unverifiable certificate is a failure (exit 76)', async () => {
    const run = await runProbeCli([serve.tcp, '--starttls', '--json'])
    expect(run.code).toBe(76)
    const check = reportOf(run).checks.find((c) => c.id === 'tls-certificate')!
    expect(check.status).toBe('fail')
    expect(check.detail).toMatch(/--tls-insecure/)
  })
})

describe('exit codes without a server', () => {
  test('connection refused: exit 69 with the reason', async () => {
    const port = await freePort()
    const run = await runProbeCli([`127.0.0.1:${port}`])
    expect(run.code).toBe(69)
    expect(run.stdout).toMatch(/unreachable: cannot connect to 127\.0\.0\.1:\d+: connection refused/)
    const json = await runProbeCli([`127.0.0.1:${port}`, '--json'])
    expect(json.code).toBe(69)
    expect(reportOf(json)).toMatchObject({reachable: false, exitCode: 69, checks: []})
  })

  test('a missing Unix socket: exit 69', async () => {
    const run = await runProbeCli(['unix:/nonexistent/lmtp.sock'])
    expect(run.code).toBe(69)
    expect(run.stdout).toMatch(/no such socket file/)
  })

  test('port 25 is refused as usage (64) and names --allow-port-25', async () => {
    const run = await runProbeCli(['127.0.0.1:25'])
    expect(run.code).toBe(64)
    expect(run.stderr).toMatch(/port 25 is the SMTP port.*--allow-port-25/)
  })

  test('--allow-port-25 gets past the target check', async () => {
    const run = await runProbeCli(['127.0.0.1:25', '--allow-port-25', '--timeout', '3', '--json'])
    // Nothing is expected to listen on 25 here (69); if something does, it is reported, never refused (64).
    expect([69, 76]).toContain(run.code)
    expect(reportOf(run).target).toBe('127.0.0.1:25')
  })

  test.each([
    [['127.0.0.1:24', '--timeout', 'soon'], /--timeout "soon"/],
    [['127.0.0.1:24', '--only', 'helo-refused,no-such-check'], /unknown check id "no-such-check": the ids are greeting, lhlo, port-25, .*, enhanced-codes$/m],
    [['127.0.0.1:24', '--skip', 'nope'], /unknown check id "nope"/],
    [['127.0.0.1:24', '--summary', '--json'], /--json|--summary/],
    [['127.0.0.1:24', '--auth', 'u'], /--auth u: no password: give --auth-password-file FILE or set LMTP_AUTH_PASSWORD/],
    [['127.0.0.1:24', '--deliver-to', '<a@example.com>'], /--deliver-to "<a@example.com>"/],
  ])('bad flags exit 64: %s', async (args, message) => {
    const run = await runProbeCli(args)
    expect(run.code).toBe(64)
    expect(run.stderr + run.stdout).toMatch(message)
  })
})

describe('selection, summary mode and help', () => {
  let serve: ServeUnderTest
  beforeAll(async () => {
    serve = await startServeUnderTest()
  })
  afterAll(async () => {
    await serve.stop()
  })

  test('--only and --skip select checks by id; --timeout takes a duration', async () => {
    const run = await runProbeCli([serve.tcp, '--only', 'greeting,helo-refused', '--only', 'ehlo-refused', '--skip', 'ehlo-refused', '--timeout', '5s', '--json'])
    expect(run.code).toBe(0)
    expect(reportOf(run).checks.map((c) => c.id)).toEqual(['greeting', 'helo-refused'])
  })

  test('--summary on a healthy server: one OK line, exit 0', async () => {
    const run = await runProbeCli([serve.tcp, '--summary'])
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/^LMTP OK - 127\.0\.0\.1:\d+: \d+ checks pass \| time=\d+\.\d{3}s pass=\d+ warn=0 fail=0 skip=\d+\n$/)
  })

  test('--summary: a failed check is CRITICAL (exit 2), an unreachable server too', async () => {
    const port = await freePort()
    const down = await runProbeCli([`127.0.0.1:${port}`, '--summary'])
    expect(down.code).toBe(2)
    expect(down.stdout).toMatch(/^LMTP CRITICAL - 127\.0\.0\.1:\d+ unreachable: cannot connect .*connection refused.* \| time=/)
  })

  test('-h prints the usage and the check ids, exit 0', async () => {
    const run = await runProbeCli(['-h'])
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/USAGE\s+\$ lmtp probe TARGET/)
    expect(run.stdout).toMatch(/--summary/)
    expect(run.stdout).toMatch(/smuggling-lf-dot-lf/)
  })
})
