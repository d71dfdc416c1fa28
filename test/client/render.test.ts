/** Rendering a send report: plain text for pipes, a table for terminals, the summary and transcript lines. */
import {describe, expect, test} from 'vitest'
import {formatTranscriptLine, notes, renderPlain, renderTable, rowCells, summaryLine} from '../../src/client/render.js'
import type {SendReport} from '../../src/client/send-message.js'

function report(over: Partial<SendReport> = {}): SendReport {
  return {
    server: '127.0.0.1:24',
    greeting: {code: 220, text: 'ready'},
    capabilities: {keywords: [], pipelining: true, chunking: false, eightBitMime: true, smtputf8: false, startTls: false, enhancedStatusCodes: true},
    tls: null,
    authenticated: false,
    message: {source: 'generated', size: 2048, eightBit: false},
    envelope: {from: 'ops@example.org', to: [], params: {}},
    method: 'DATA',
    pipelined: true,
    mail: {code: 250, enhanced: '2.1.0', text: 'ok'},
    recipients: [
      {index: 0, recipient: 'alice@example.com', stage: 'DATA', outcome: 'delivered', code: 250, enhanced: '2.0.0', text: 'saved', latencyMs: 7},
      {index: 1, recipient: 'nobody@example.com', stage: 'RCPT', outcome: 'rejected', code: 550, enhanced: '5.1.1', text: 'no such user', latencyMs: 1},
      {index: 2, recipient: 'full@example.com', stage: 'DATA', outcome: 'deferred', code: 421, enhanced: '4.4.2', text: 'connection lost after 1 of 2 replies', latencyMs: 0, synthetic: true},
    ],
    summary: {total: 3, delivered: 1, deferred: 1, rejected: 1},
    violation: null,
    timings: {connectMs: 1, greetingMs: 1, lhloMs: 1, tlsMs: 0, authMs: 0, mailMs: 1, rcptMs: 1, dataMs: 1, deliveryMs: 5, totalMs: 12},
    exitCode: 69,
    ...over,
  }
}

describe('plain text', () => {
  test('aligned columns in RCPT order, numbers right-aligned, no reply shown as -', () => {
    expect(renderPlain(report())).toBe(
      [
        '#  RECIPIENT           OUTCOME    STAGE  CODE  ENHANCED  TEXT                                            MS',
        '1  alice@example.com   delivered  DATA    250  2.0.0     saved                                            7',
        '2  nobody@example.com  rejected   RCPT    550  5.1.1     no such user                                     1',
        '3  full@example.com    deferred   DATA      -  -         no reply: connection lost after 1 of 2 replies   0',
      ].join('\n'),
    )
  })

  test('rowCells follows COLUMNS', () => {
    expect(rowCells(report().recipients[1]!)).toEqual(['2', 'nobody@example.com', 'rejected', 'RCPT', '550', '5.1.1', 'no such user', '1'])
  })
})

describe('terminal table', () => {
  test('without colour: borders, every row, no escape codes', async () => {
    const out = await renderTable(report(), {color: false, width: 120})
    expect(out).not.toMatch(/\x1b\[/)
    const lines = out.split('\n')
    expect(lines[0]).toMatch(/^┌/)
    expect(lines.at(-1)).toMatch(/^└/)
    expect(out).toMatch(/│ 1 │ alice@example\.com +│ delivered │ DATA +│ +250 │ 2\.0\.0 +│ saved +│ +7 │/)
    expect(out).toMatch(/│ 3 │ full@example\.com +│ deferred +│ DATA +│ +- │ - +│ no reply: connection lost after 1 of 2 replies │ +0 │/)
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThanOrEqual(120)
  })

  test('with colour: outcomes coloured (green, red, yellow)', async () => {
    const out = await renderTable(report(), {color: true, width: 120})
    expect(out).toContain('\x1b[32mdelivered\x1b[39m')
    expect(out).toContain('\x1b[31mrejected\x1b[39m')
    expect(out).toContain('\x1b[33mdeferred\x1b[39m')
  })

  test('a narrow terminal wraps recipient and text instead of overflowing or truncating', async () => {
    const long = report()
    long.recipients[0] = {...long.recipients[0]!, recipient: 'alice.with.a.long.name@example.com', text: '<alice.with.a.long.name@example.com> 4F2bKmR3jGaMBwAA Saved'}
    const out = await renderTable(long, {color: false, width: 80})
    expect(Math.max(...out.split('\n').map((l) => l.length))).toBeLessThanOrEqual(80)
    expect(out).not.toContain('…')
    // Reassemble the recipient column: every character is there.
    const cells = out.split('\n').map((l) => l.split('│')[2]?.trim() ?? '')
    expect(cells.join('')).toContain('alice.with.a.long.name@example.com')
  })
})

describe('summary and notes', () => {
  test.each([
    {over: {}, line: '3 recipients: 1 delivered, 1 deferred, 1 rejected — 127.0.0.1:24 (DATA, pipelined), 2 KB in 12 ms, exit 69'},
    {
      over: {recipients: [], summary: {total: 1, delivered: 1, deferred: 0, rejected: 0}, exitCode: 0 as const, method: 'BDAT' as const, pipelined: false},
      line: '1 recipient: 1 delivered — 127.0.0.1:24 (BDAT, not pipelined), 2 KB in 12 ms, exit 0',
    },
    {
      over: {tls: {protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384', verified: false}},
      line: '3 recipients: 1 delivered, 1 deferred, 1 rejected — 127.0.0.1:24 (DATA, pipelined, TLSv1.3 unverified), 2 KB in 12 ms, exit 69',
    },
  ])('$line', ({over, line}) => {
    expect(summaryLine(report(over))).toBe(line)
  })

  test('notes explain a violation, a refused sender and synthetic results', () => {
    expect(notes(report({violation: 'too few replies', mail: {code: 550, enhanced: '5.7.1', text: 'blocked'}}))).toEqual([
      'protocol violation by the server: too few replies',
      'the server refused the sender: 550 5.7.1 blocked',
      'recipients marked "no reply" got no answer from the server: they count as deferred (try again later)',
    ])
    expect(notes(report({recipients: report().recipients.slice(0, 2)}))).toEqual([])
  })

  test.each([
    {line: {direction: 'C' as const, text: 'MAIL FROM:<a@b.c>', ms: 12}, out: '    12 ms  C: MAIL FROM:<a@b.c>'},
    {line: {direction: 'S' as const, text: '250 2.1.0 ok', ms: 1234}, out: '  1234 ms  S: 250 2.1.0 ok'},
    {line: {direction: '*' as const, text: 'TLS established', ms: 5}, out: '     5 ms  -- TLS established'},
  ])('transcript line $out', ({line, out}) => {
    expect(formatTranscriptLine(line)).toBe(out)
  })
})
