/** The report renderer: colour only when asked, every section present, unreachable reports short. */
import {describe, expect, test} from 'vitest'
import {renderReport} from '../../src/probe/render.js'
import type {ProbeReport} from '../../src/probe/types.js'

const report: ProbeReport = {
  target: '127.0.0.1:24',
  startedAt: '2025-01-01T00:00:00.000Z',
  durationMs: 42,
  reachable: true,
  connectMs: 0.3,
  greeting: {code: 220, text: 'mx.test LMTP ready', ms: 1.2},
  lhlo: {name: 'probe.test', serverName: 'mx.test', ms: 0.8, capabilities: [{keyword: 'PIPELINING', params: '', meaning: 'batches'}]},
  tls: {offered: true, established: true, protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384', subject: 'CN=mx.test', issuer: 'CN=ca', altNames: ['DNS:mx.test'], validTo: '2025-03-01T00:00:00.000Z', daysToExpiry: 59, verified: true, handshakeMs: 3},
  latency: [{command: 'NOOP', reply: '250 2.0.0 ok', ms: 0.4}],
  checks: [
    {id: 'helo-refused', title: 'HELO not accepted', status: 'fail', rfc: 'RFC 2033 §4.1', detail: 'HELO got 250', ms: 1},
    {id: 'dsn-not-advertised', title: 'DSN not advertised', status: 'warn', rfc: 'RFC 3461 §4', detail: 'DSN advertised', ms: 0},
  ],
  summary: {pass: 0, warn: 1, fail: 1, skip: 0},
  exitCode: 76,
}

describe('renderReport', () => {
  test.each([
    [false, false],
    [true, true],
  ])('color %s -> ANSI escapes %s', (color, ansi) => {
    expect(/\x1b\[/.test(renderReport(report, {color}))).toBe(ansi)
  })

  test('every section is there', () => {
    const text = renderReport(report, {color: false, width: 100})
    expect(text).toMatch(/^lmtp probe 127\.0\.0\.1:24$/m)
    expect(text).toMatch(/greeting 220 in 1\.2 ms: mx\.test LMTP ready/)
    expect(text).toMatch(/PIPELINING\s+│ batches/)
    expect(text).toMatch(/expires {3}2025-03-01 \(in 59 days\)/)
    expect(text).toMatch(/│ FAIL │ HELO not accepted/)
    expect(text).toMatch(/│ WARN │ DSN not advertised/)
    expect(text).toMatch(/0 pass, 1 warn, 1 fail, 0 skip in 42 ms: 1 conformance failure \(exit 76\)$/m)
    for (const line of text.split('\n')) expect(line.length).toBeLessThanOrEqual(100)
  })

  test('unreachable: the reason and the exit code only', () => {
    const text = renderReport({...report, reachable: false, error: 'cannot connect to 127.0.0.1:24: connection refused', exitCode: 69, checks: []}, {color: false})
    expect(text).toBe('lmtp probe 127.0.0.1:24\nunreachable: cannot connect to 127.0.0.1:24: connection refused\ngreeting: 220 mx.test LMTP ready\nexit 69\n')
  })
})
