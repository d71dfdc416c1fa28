/**
 * The probe's checks, one misbehaviour at a time, against a fake server that gets exactly one thing wrong;
 * and the pure judges (enhanced codes, smuggling replies, capability notes, targets, exit codes) by table.
 */
import {afterEach, describe, expect, test} from 'vitest'
import {parseReply} from '../../src/protocol/reply.js'
import {explainCapability} from '../../src/probe/capability-notes.js'
import type {ObservedReply} from '../../src/probe/connection.js'
import type {RepliesEnd} from '../../src/probe/connection.js'
import {judgeSmuggling} from '../../src/probe/delivery-checks.js'
import {exitCodeOf, runProbe} from '../../src/probe/runner.js'
import {judgeEnhancedCodes, judgePipelinedOrder} from '../../src/probe/session-checks.js'
import {parseProbeTarget} from '../../src/probe/target.js'
import type {CheckStatus, ProbeOptions, ProbeReport} from '../../src/probe/types.js'
import {isKeywordLine, parseCapabilities} from '../../src/protocol/capabilities.js'
import {type FakeLmtp, type FakeLmtpOptions, startFakeLmtp} from './fake-lmtp.js'

let fake: FakeLmtp | undefined
afterEach(async () => {
  await fake?.close()
  fake = undefined
})

async function probeFake(options: FakeLmtpOptions, deliverTo: string[] = []): Promise<ProbeReport> {
  fake = await startFakeLmtp(options)
  return runProbe({target: {kind: 'tcp', host: '127.0.0.1', port: fake.port}, lhloName: 'probe.test', timeoutMs: 3000, deliverTo})
}

function statusOf(report: ProbeReport, id: string): CheckStatus | undefined {
  return report.checks.find((c) => c.id === id)?.status
}

describe('one misbehaviour at a time', () => {
  test('a well-behaved fake passes every non-delivery check (exit 0)', async () => {
    const report = await probeFake({})
    const failed = report.checks.filter((c) => c.status === 'fail' || c.status === 'warn')
    expect(failed).toEqual([])
    expect(report.exitCode).toBe(0)
    // The non-destructive run never sent a body.
    expect(fake!.lines.filter((l) => l === 'DATA')).toHaveLength(1) // only data-without-rcpt's, answered 503
    expect(fake!.lines.some((l) => l.startsWith('BDAT'))).toBe(false)
  })

  test.each<{name: string; options: FakeLmtpOptions; id: string; status: CheckStatus; detail: RegExp; exit: number}>([
    {name: 'accepts HELO', options: {acceptHelo: true}, id: 'helo-refused', status: 'fail', detail: /MUST NOT accept HELO/, exit: 76},
    {name: 'accepts EHLO', options: {acceptEhlo: true}, id: 'ehlo-refused', status: 'fail', detail: /MUST NOT accept EHLO/, exit: 76},
    {name: 'advertises DSN', options: {capabilities: ['PIPELINING', 'ENHANCEDSTATUSCODES', '8BITMIME', 'DSN']}, id: 'dsn-not-advertised', status: 'warn', detail: /Postfix/, exit: 0},
    {name: 'enhanced code of the wrong class', options: {mismatchNoop: true}, id: 'enhanced-codes', status: 'fail', detail: /NOOP -> "250 5\.0\.0"/, exit: 76},
    {name: 'no enhanced code on RSET', options: {bareRset: true}, id: 'enhanced-codes', status: 'fail', detail: /carry no enhanced code: RSET/, exit: 76},
    {name: 'no PIPELINING', options: {capabilities: ['ENHANCEDSTATUSCODES', '8BITMIME']}, id: 'pipelining-advertised', status: 'fail', detail: /MUST implement PIPELINING/, exit: 76},
    {name: 'no ENHANCEDSTATUSCODES', options: {capabilities: ['PIPELINING', '8BITMIME']}, id: 'enhancedstatuscodes-advertised', status: 'fail', detail: /MUST implement/, exit: 76},
    {name: 'no 8BITMIME', options: {capabilities: ['PIPELINING', 'ENHANCEDSTATUSCODES']}, id: '8bitmime-advertised', status: 'warn', detail: /SHOULD/, exit: 0},
    {name: 'accepts MAIL before LHLO', options: {mailBeforeLhlo: true}, id: 'mail-before-lhlo', status: 'warn', detail: /accepted/, exit: 0},
    {name: 'DATA with no recipient gets 554', options: {dataNoRcpt554: true}, id: 'data-without-rcpt', status: 'fail', detail: /MUST fail with 503/, exit: 76},
    {name: 'closes on an unknown command', options: {closeOnUnknown: true}, id: 'unknown-command', status: 'fail', detail: /closed/, exit: 76},
  ])('$name -> $id $status', async ({options, id, status, detail, exit}) => {
    const report = await probeFake(options)
    const check = report.checks.find((c) => c.id === id)
    expect(check?.status).toBe(status)
    expect(check?.detail).toMatch(detail)
    expect(report.exitCode).toBe(exit)
  })

  test('one reply after the body for two recipients -> reply-per-recipient fails, named', async () => {
    const report = await probeFake({oneReplyAfterData: true}, ['alice@example.com'])
    const check = report.checks.find((c) => c.id === 'reply-per-recipient')!
    expect(check.status).toBe('fail')
    expect(check.detail).toMatch(/sent 1 replies after the body for 2 accepted recipients/)
    expect(report.exitCode).toBe(76)
  })

  test('the delivery checks are skipped without --deliver-to, and run with it', async () => {
    const without = await probeFake({})
    expect(statusOf(without, 'reply-per-recipient')).toBe('skip')
    expect(without.checks.find((c) => c.id === 'smuggling-lf-dot-lf')!.detail).toMatch(/needs --deliver-to/)
    await fake!.close()
    const withIt = await probeFake({}, ['alice@example.com'])
    expect(statusOf(withIt, 'reply-per-recipient')).toBe('pass')
    expect(statusOf(withIt, 'dot-stuffing')).toBe('pass')
    expect(statusOf(withIt, 'bdat')).toBe('skip') // no CHUNKING advertised
  })

  test('a greeting that is not 220 is unreachable (exit 69)', async () => {
    const report = await probeFake({greeting: '554 5.3.2 not accepting connections'})
    expect(report.reachable).toBe(false)
    expect(report.exitCode).toBe(69)
    expect(report.error).toMatch(/refused the session: 554/)
    expect(report.checks).toEqual([])
  })
})

describe('judgeEnhancedCodes', () => {
  const caps = parseCapabilities(['x', 'ENHANCEDSTATUSCODES'])
  const o = (command: string, text: string, afterLhlo = true): ObservedReply => ({command, reply: parseReply(text), afterLhlo})
  test.each<{name: string; observed: ObservedReply[]; status: CheckStatus}>([
    {name: 'all present', observed: [o('NOOP', '250 2.0.0 ok'), o('MAIL', '503 5.5.1 no')], status: 'pass'},
    {name: 'wrong class', observed: [o('NOOP', '250 5.0.0 ok')], status: 'fail'},
    {name: 'wrong class even before LHLO', observed: [o('MAIL', '503 2.0.0 no', false)], status: 'fail'},
    {name: 'missing after LHLO', observed: [o('RSET', '250 ok')], status: 'fail'},
    {name: 'missing before LHLO is fine', observed: [o('RSET', '250 ok', false), o('NOOP', '250 2.0.0 ok')], status: 'pass'},
    {name: '354 and the LHLO reply are exempt', observed: [o('DATA', '354 go'), o('LHLO x', '250-x\r\n250 PIPELINING'), o('NOOP', '250 2.0.0 ok')], status: 'pass'},
    {name: 'nothing seen', observed: [], status: 'skip'},
  ])('$name -> $status', ({observed, status}) => {
    expect(judgeEnhancedCodes({observed, capabilities: caps}).status).toBe(status)
  })

  test('not advertised: skip, but a wrong class still fails', () => {
    const none = parseCapabilities(['x'])
    expect(judgeEnhancedCodes({observed: [o('NOOP', '250 ok')], capabilities: none}).status).toBe('skip')
    expect(judgeEnhancedCodes({observed: [o('NOOP', '250 4.0.0 ok')], capabilities: none}).status).toBe('fail')
  })
})

describe('judgeSmuggling', () => {
  const r = (...texts: string[]) => texts.map((t) => parseReply(t))
  test.each<{name: string; replies: string[]; end: RepliesEnd; status: CheckStatus; detail: RegExp}>([
    {name: 'one 250: the body was one message', replies: ['250 2.0.0 saved'], end: 'quit', status: 'pass', detail: /did not end the message/},
    {name: 'refused as a whole', replies: ['554 5.6.0 bare LF'], end: 'quit', status: 'pass', detail: /refused as a whole/},
    {name: 'Dovecot 2.3.19: five replies', replies: ['250 2.0.0 a', '250 2.1.0 OK', '250 2.1.5 OK', '354 OK', '250 2.0.0 b'], end: 'quit', status: 'fail', detail: /second, forged message was delivered/},
    {name: 'injected MAIL refused still counts', replies: ['250 2.0.0 a', '503 5.5.1 no'], end: 'quit', status: 'fail', detail: /SMTP smuggling/},
    {name: 'closed without a reply', replies: [], end: 'closed', status: 'warn', detail: /closed the connection/},
    {name: 'QUIT answered, the message not', replies: [], end: 'quit', status: 'warn', detail: /answered QUIT without answering the message/},
    {name: 'silence', replies: [], end: 'timeout', status: 'fail', detail: /no reply after the real end/},
  ])('$name -> $status', ({replies, end, status, detail}) => {
    const v = judgeSmuggling('<LF>.<LF>', r(...replies), end)
    expect(v.status).toBe(status)
    expect(v.detail).toMatch(detail)
    // A failure says when the risk is closed upstream, without changing the verdict.
    expect(v.detail.includes('closed upstream when Postfix is the only client')).toBe(status === 'fail' && replies.length > 1)
  })
})

describe('judgePipelinedOrder: by which command each reply can answer, not by success', () => {
  const batch = ['MAIL FROM:<>', 'MAIL FROM:<>', 'RCPT TO:<postmaster>', 'NOOP', 'RSET']
  test.each<{name: string; replies: string[]; status: CheckStatus; detail: RegExp}>([
    {name: 'all as expected', replies: ['250 2.1.0 ok', '503 5.5.1 nested', '250 2.1.5 ok', '250 2.0.0 ok', '250 2.0.0 ok'], status: 'pass', detail: /5 replies in order: 250, 503, 250, 250, 250$/},
    {name: 'Cyrus, AUTH required', replies: ['430 Authentication required', '430 Authentication required', '503 5.5.1 No MAIL', '250 2.0.0 ok', '250 2.0.0 ok'], status: 'pass', detail: /refused: MAIL FROM:<> -> 430, MAIL FROM:<> -> 430, RCPT TO:<postmaster> -> 503/},
    {name: 'Mailutils, NOOP unimplemented', replies: ['250 2.1.0 ok', '503 5.0.0 x', '250 2.1.5 ok', '503 5.0.0 Syntax error', '250 2.0.0 ok'], status: 'pass', detail: /refused: NOOP -> 503/},
    {name: 'RCPT refused', replies: ['250 2.1.0 ok', '503 5.5.1 nested', '550 5.1.1 unknown', '250 2.0.0 ok', '250 2.0.0 ok'], status: 'pass', detail: /RCPT TO:<postmaster> -> 550/},
    {name: 'a 354 nobody asked for', replies: ['250 2.1.0 ok', '354 go', '250 2.1.5 ok', '250 2.0.0 ok', '250 2.0.0 ok'], status: 'fail', detail: /reply 2 \("354 go"\) cannot answer MAIL FROM:<> \(354 answers none/},
    {name: 'nested MAIL accepted', replies: ['250 2.1.0 ok', '250 2.1.0 ok', '250 2.1.5 ok', '250 2.0.0 ok', '250 2.0.0 ok'], status: 'fail', detail: /a second MAIL accepted/},
    {name: 'RCPT accepted with no MAIL', replies: ['430 auth', '430 auth', '250 2.1.5 ok', '250 2.0.0 ok', '250 2.0.0 ok'], status: 'fail', detail: /RCPT accepted with no MAIL/},
    {name: 'shifted by one: the RCPT reply on MAIL', replies: ['250 2.1.5 ok', '503 5.5.1 x', '250 2.1.0 ok', '250 2.0.0 ok', '250 2.0.0 ok'], status: 'fail', detail: /a recipient code \(X\.1\.5\) on MAIL/},
  ])('$name -> $status', ({replies, status, detail}) => {
    const v = judgePipelinedOrder(batch, replies.map((t) => parseReply(t)))
    expect(v.status).toBe(status)
    expect(v.detail).toMatch(detail)
  })
})

describe('LHLO free text is not a capability', () => {
  test('Cyrus: the last line `Ok SESSIONID=<...>` is free text', () => {
    const caps = parseCapabilities(['cyrus.test', '8BITMIME', 'ENHANCEDSTATUSCODES', 'PIPELINING', 'SIZE', 'AUTH EXTERNAL', 'IGNOREQUOTA', 'Ok SESSIONID=<cyrus.test-1-2-3>'])
    expect(caps.keywords).toEqual(['8BITMIME', 'ENHANCEDSTATUSCODES', 'PIPELINING', 'SIZE', 'AUTH EXTERNAL', 'IGNOREQUOTA'])
    expect(caps.freeText).toEqual(['Ok SESSIONID=<cyrus.test-1-2-3>'])
    expect(caps.serverName).toBe('cyrus.test')
  })

  test.each([
    ['PIPELINING', true],
    ['pipelining', true],
    ['AUTH=login', true],
    ['X-PRIVATE-EXT 1', true],
    ['SIZE 52428800', true],
    ['Ok SESSIONID=<x>', false],
    ['Hello there', false],
    ['<not a keyword>', false],
  ])('isKeywordLine(%s) = %s', (line, expected) => {
    expect(isKeywordLine(line)).toBe(expected)
  })
})

describe('explainCapability', () => {
  test.each([
    ['SIZE 52428800', 'SIZE', '52428800', /50 MB \(52428800 octets\)/],
    ['SIZE', 'SIZE', '', /no limit/],
    ['size 0', 'SIZE', '0', /no limit/],
    ['PIPELINING', 'PIPELINING', '', /required for LMTP/],
    ['DSN', 'DSN', '', /Postfix/],
    ['AUTH PLAIN LOGIN', 'AUTH', 'PLAIN LOGIN', /with PLAIN LOGIN/],
    ['X-SOMETHING 1', 'X-SOMETHING', '1', /not a keyword lmtp knows/],
  ])('%s', (line, keyword, params, meaning) => {
    const c = explainCapability(line)
    expect(c.keyword).toBe(keyword)
    expect(c.params).toBe(params)
    expect(c.meaning).toMatch(meaning)
  })
})

describe('parseProbeTarget', () => {
  test.each([
    ['127.0.0.1:24', false, {kind: 'tcp', host: '127.0.0.1', port: 24}],
    ['127.0.0.1:25', true, {kind: 'tcp', host: '127.0.0.1', port: 25}],
    ['[::1]:25', true, {kind: 'tcp', host: '::1', port: 25}],
    ['unix:/run/lmtp', true, {kind: 'unix', path: '/run/lmtp'}],
  ])('%s (allow 25: %s)', (text, allow, expected) => {
    expect(parseProbeTarget(text, allow)).toEqual(expected)
  })

  test.each([
    ['127.0.0.1:25', false, /port 25 is the SMTP port/],
    [':25', true, /missing host/],
    ['a:b:25', true, /brackets/],
  ])('%s (allow 25: %s) is refused', (text, allow, message) => {
    expect(() => parseProbeTarget(text, allow)).toThrow(message)
  })
})

test.each<{reachable: boolean; statuses: CheckStatus[]; exit: number}>([
  {reachable: false, statuses: [], exit: 69},
  {reachable: true, statuses: ['pass', 'warn', 'skip'], exit: 0},
  {reachable: true, statuses: ['pass', 'fail'], exit: 76},
])('exitCodeOf reachable=$reachable $statuses -> $exit', ({reachable, statuses, exit}) => {
  const checks = statuses.map((status, i) => ({id: String(i), title: '', status, rfc: '', detail: '', ms: 0}))
  expect(exitCodeOf({reachable, checks})).toBe(exit)
})

/**
 * Servers that are right but unlike lmtp serve (Cyrus's changing LHLO line, Mailutils's one transaction per
 * session), and the findings that need more than one misbehaviour (AUTH required, an SMTP server). The probe
 * timeout here is longer than the test's own limit: a check that waited a timeout on a correct server would
 * make the test fail, without asserting on elapsed time.
 */
describe('conforming servers unlike lmtp serve, and findings', () => {
  const LONG = 120_000
  async function probeLong(options: FakeLmtpOptions, extra: Partial<ProbeOptions> = {}): Promise<ProbeReport> {
    fake = await startFakeLmtp(options)
    return runProbe({target: {kind: 'tcp', host: '127.0.0.1', port: fake.port}, lhloName: 'probe.test', timeoutMs: LONG, ...extra})
  }
  const SMUGGLING = ['smuggling-lf-dot-lf', 'smuggling-crlf-dot-lf', 'smuggling-lf-dot-crlf']

  test('Cyrus-like (SESSIONID in LHLO): no smuggling FAIL, no timeout, the free text is not a capability', {timeout: 20_000}, async () => {
    const report = await probeLong({sessionIdInLhlo: true, unknownUser: 'nobody'}, {deliverTo: ['alice@example.com', 'nobody@example.com']})
    expect(report.checks.filter((c) => c.status === 'fail' || c.status === 'warn')).toEqual([])
    expect(statusOf(report, 'reply-per-recipient')).toBe('pass')
    expect(statusOf(report, 'dot-stuffing')).toBe('pass')
    expect(report.checks.filter((c) => SMUGGLING.includes(c.id)).map((c) => c.status)).toEqual(['pass', 'pass', 'pass'])
    expect(report.lhlo?.capabilities.map((c) => c.keyword)).not.toContain('OK')
    expect(report.lhlo?.freeText).toEqual(['Ok SESSIONID=<fake-0>'])
    expect(report.checks.find((c) => c.id === 'lhlo')!.detail).toMatch(/free text, not capabilities: "Ok SESSIONID=<fake-0>"/)
  })

  test('Cyrus-like unknown user: the enhanced code on the last line of a three-line 550 counts', async () => {
    fake = await startFakeLmtp({unknownUser: 'nobody'})
    const target = {kind: 'tcp' as const, host: '127.0.0.1', port: fake.port}
    const report = await runProbe({target, lhloName: 'probe.test', timeoutMs: 3000, deliverTo: ['nobody@example.com', 'alice@example.com']})
    expect(report.latency.find((l) => l.command.startsWith('RCPT'))?.reply).toMatch(/^550 5\.1\.1 Mailbox unknown/)
    expect(report.checks.find((c) => c.id === 'enhanced-codes')).toMatchObject({status: 'pass'})
  })

  test('a server open to smuggling: the three smuggling checks FAIL, without waiting a timeout', {timeout: 20_000}, async () => {
    const report = await probeLong({smuggling: true, sessionIdInLhlo: true}, {deliverTo: ['alice@example.com'], checks: SMUGGLING})
    expect(report.checks.map((c) => [c.id, c.status])).toEqual(SMUGGLING.map((id) => [id, 'fail']))
    expect(report.checks[0]!.detail).toMatch(/replies 250, 250, 250, 354, 250; a second, forged message was delivered/)
    expect(report.exitCode).toBe(76)
  })

  test('Mailutils-like (LHLO after DATA 503, one transaction per session): our own 503 is never a smuggling success', {timeout: 20_000}, async () => {
    const report = await probeLong({mailutils: true}, {deliverTo: ['alice@example.com']})
    expect(statusOf(report, 'pipelining-order')).toBe('pass')
    expect(statusOf(report, 'reply-per-recipient')).toBe('pass')
    expect(statusOf(report, 'dot-stuffing')).toBe('pass')
    expect(report.checks.filter((c) => SMUGGLING.includes(c.id)).map((c) => c.status)).toEqual(['pass', 'pass', 'pass'])
    // NOOP answered 503 is a true finding (RFC 5321 §4.5.1 lists NOOP in the minimum implementation).
    expect(report.checks.filter((c) => c.status === 'fail').map((c) => c.id)).toEqual(['rset-noop'])
    expect(report.checks.find((c) => c.id === 'smuggling-lf-dot-lf')!.detail).toMatch(/one reply for the whole body/)
  })

  test('AUTH required: the auth check names it with the next step; with credentials the checks run authenticated', async () => {
    const auth = {user: 'lmtp-sender', password: 'secret'}
    const without = await probeFake({auth}, [])
    const a = without.checks.find((c) => c.id === 'auth')!
    expect(a.status).toBe('warn')
    expect(a.detail).toMatch(/requires authentication.*--auth USER/)
    expect(without.auth).toMatchObject({mechanisms: ['PLAIN', 'LOGIN'], required: true})
    expect(statusOf(without, 'pipelining-order')).toBe('pass')
    expect(statusOf(without, 'mail-before-lhlo')).toBe('pass')
    await fake!.close()

    fake = await startFakeLmtp({auth})
    const withIt = await runProbe({target: {kind: 'tcp', host: '127.0.0.1', port: fake.port}, lhloName: 'probe.test', timeoutMs: 3000, auth, deliverTo: ['alice@example.com']})
    expect(withIt.checks.find((c) => c.id === 'auth')).toMatchObject({status: 'pass', detail: expect.stringMatching(/authenticated as lmtp-sender/)})
    expect(statusOf(withIt, 'data-without-rcpt')).toBe('pass')
    expect(statusOf(withIt, 'smuggling-lf-dot-lf')).toBe('pass')
    expect(withIt.latency.find((l) => l.command === 'MAIL FROM:<>')?.reply).toMatch(/^250/)
  })

  test('wrong credentials: the auth check fails, the rest runs unauthenticated', async () => {
    const report = await probeFake({auth: {user: 'u', password: 'right'}}, [])
    expect(report.checks.find((c) => c.id === 'auth')?.status).toBe('warn')
    await fake!.close()
    fake = await startFakeLmtp({auth: {user: 'u', password: 'right'}})
    const wrong = await runProbe({target: {kind: 'tcp', host: '127.0.0.1', port: fake.port}, lhloName: 'probe.test', timeoutMs: 3000, auth: {user: 'u', password: 'wrong'}})
    expect(wrong.checks.find((c) => c.id === 'auth')).toMatchObject({status: 'fail', detail: expect.stringMatching(/535 5\.7\.8/)})
    expect(statusOf(wrong, 'helo-refused')).toBe('pass')
  })

  test('an SMTP server: "this is an SMTP server, not LMTP", and no mail sent', async () => {
    const report = await probeFake({smtp: true}, ['alice@example.com'])
    expect(report.speaks).toBe('smtp')
    expect(report.checks).toHaveLength(1)
    expect(report.checks[0]).toMatchObject({id: 'lhlo', status: 'fail'})
    expect(report.checks[0]!.detail).toMatch(/^this is an SMTP server, not LMTP: LHLO got "502 5\.5\.2 .*", the greeting says "fake\.test ESMTP Postfix", EHLO is answered 250/)
    expect(fake!.lines.some((l) => /^(MAIL|RCPT|DATA)/.test(l))).toBe(false)
  })

  test.each([
    ['fake.test Dovecot ready.', false],
    ['fake.test LMTP ready', true],
  ])('greeting %j: the Dovecot comparison shown: %s', async (greeting, shown) => {
    const report = await probeFake({greeting: `220 ${greeting}`, mailBeforeLhlo: true})
    expect(report.checks.find((c) => c.id === 'mail-before-lhlo')!.detail.includes('Dovecot does this too')).toBe(shown)
  })

  test('checks: only the selected ids are run and reported', async () => {
    const report = await probeFake({acceptHelo: true}, [])
    expect(report.exitCode).toBe(76)
    await fake!.close()
    fake = await startFakeLmtp({acceptHelo: true})
    const only = await runProbe({target: {kind: 'tcp', host: '127.0.0.1', port: fake.port}, lhloName: 'probe.test', timeoutMs: 3000, checks: ['greeting', 'ehlo-refused']})
    expect(only.checks.map((c) => c.id)).toEqual(['greeting', 'ehlo-refused'])
    expect(only.exitCode).toBe(0)
    expect(fake!.lines.some((l) => l.startsWith('HELO'))).toBe(false)
  })
})
