/**
 * The probe's checks, one misbehaviour at a time, against a fake server that gets exactly one thing wrong;
 * and the pure judges (enhanced codes, smuggling replies, capability notes, targets, exit codes) by table.
 */
import {afterEach, describe, expect, test} from 'vitest'
import {parseReply} from '../../src/protocol/reply.js'
import {explainCapability} from '../../src/probe/capability-notes.js'
import type {ObservedReply} from '../../src/probe/connection.js'
import {judgeSmuggling} from '../../src/probe/delivery-checks.js'
import {exitCodeOf, runProbe} from '../../src/probe/runner.js'
import {judgeEnhancedCodes} from '../../src/probe/session-checks.js'
import {parseProbeTarget} from '../../src/probe/target.js'
import type {CheckStatus, ProbeReport} from '../../src/probe/types.js'
import {parseCapabilities} from '../../src/protocol/capabilities.js'
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
  test.each<{name: string; replies: string[]; end: 'marker' | 'closed' | 'timeout'; status: CheckStatus; detail: RegExp}>([
    {name: 'one 250: the body was one message', replies: ['250 2.0.0 saved'], end: 'marker', status: 'pass', detail: /did not end the message/},
    {name: 'refused as a whole', replies: ['554 5.6.0 bare LF'], end: 'marker', status: 'pass', detail: /refused as a whole/},
    {name: 'Dovecot 2.3.19: five replies', replies: ['250 2.0.0 a', '250 2.1.0 OK', '250 2.1.5 OK', '354 OK', '250 2.0.0 b'], end: 'marker', status: 'fail', detail: /second, forged message was delivered/},
    {name: 'injected MAIL refused still counts', replies: ['250 2.0.0 a', '503 5.5.1 no'], end: 'marker', status: 'fail', detail: /SMTP smuggling/},
    {name: 'closed without a reply', replies: [], end: 'closed', status: 'warn', detail: /closed the connection/},
    {name: 'silence', replies: [], end: 'timeout', status: 'fail', detail: /no reply after the real end/},
  ])('$name -> $status', ({replies, end, status, detail}) => {
    const v = judgeSmuggling('<LF>.<LF>', r(...replies), end)
    expect(v.status).toBe(status)
    expect(v.detail).toMatch(detail)
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
