/**
 * --compare: reply texts with per-message ids normalised (the real texts of Dovecot, Cyrus, Postfix, lmtp
 * serve), changes grouped by what changed and counted over all of them, and the text output that always says
 * how much it left out.
 */
import {describe, expect, test} from 'vitest'
import type {RecipientResult} from '../../src/protocol/client.js'
import {Comparison, normaliseReplyText} from '../../src/replay/compare.js'
import type {ReplayItem} from '../../src/replay/item.js'
import {renderCompare} from '../../src/replay/render.js'

describe('normaliseReplyText', () => {
  test.each([
    ['<alice@example.com> <0Hq1ADwIp2k9DgAAkhq2wA> Saved', 'Saved'],
    ['<bob@example.com> <mFHbKEkIp2mYEwAAkhq2wA> Saved', 'Saved'],
    ['<bob@example.com> 8Ha3FIUpL2mOHwAAFwOrTA:T2:R2 Saved', 'Saved'],
    ['<bob@example.com> 8Ha3FIUpL2mOHwAAFwOrTA:R2 Saved', 'Saved'],
    ['Requested action aborted [12345] 4.2.2', 'Requested action aborted'],
    ['user1 unknown', 'user1 unknown'],
    ['Success SESSIONID=<cyrus-1764693132-12345-1-1234567890>', 'Success'],
    ['Ok SESSIONID=<cyrus-99-1>', 'Ok'],
    ['Ok: queued as 4dMq3B2kGhz9sWl', 'Ok: queued as'],
    ['delivered to example.com/alice/new/1764693132.M123P456.mx', 'delivered to'],
    ['Quota exceeded (mailbox for user is full)', 'Quota exceeded (mailbox for user is full)'],
    ['mail: delivered', 'mail: delivered'],
    ['no such user here', 'no such user here'],
  ])('%j -> %j', (text, expected) => {
    expect(normaliseReplyText(text)).toBe(expected)
  })
})

function item(n: number): ReplayItem {
  return {
    source: `rec/s${n}.jsonl#s${n}.1`,
    kind: 'transcript',
    open: () => Promise.reject(new Error('not opened in this test')),
    recorded: [{to: 'x', code: 250, enhanced: '2.0.0', outcome: 'delivered'}],
  }
}

function result(recipient: string, code: number, enhanced: string, text: string): RecipientResult {
  return {index: 0, recipient, stage: 'DATA', outcome: code >= 500 ? 'rejected' : code >= 400 ? 'deferred' : 'delivered', code, enhanced, text, latencyMs: 1}
}

describe('grouping', () => {
  test('714 changes with a unique id in each reply: one group per code change, all counted, omissions said', () => {
    const c = new Comparison()
    for (let n = 0; n < 700; n++) c.record(item(n), result(`u${n % 40}@d${n % 3}.example`, 550, '5.1.1', `<u${n}@x> <${n.toString(36)}AbC9xyZ${n}> unknown user`), false)
    for (let n = 0; n < 14; n++) c.record(item(n), result(`q${n}@example.com`, 452, '4.2.2', `Over quota SESSIONID=<cyrus-${n}-${n * 7}>`), false)
    const s = c.summary()
    expect(s).toMatchObject({compared: 714, changed: 714, unchanged: 0})
    expect(s.changes).toHaveLength(714)
    expect(s.groups.map((g) => [g.now.code, g.now.text, g.count, g.recipientCount])).toEqual([
      [550, 'unknown user', 700, 120],
      [452, 'Over quota', 14, 14],
    ])
    const lines = renderCompare(s, 1)
    expect(lines[0]).toBe('compare     714 compared, 0 unchanged, 714 changed')
    expect(lines[1]).toMatch(/^ {2}changed {3}250 2\.0\.0 -> 550 5\.1\.1 "unknown user": 700 changes, 120 recipients \(first in rec\/s0\.jsonl#s0\.1\)$/)
    // 120 recipients: shown by domain.
    expect(lines[2]).toMatch(/@d0\.example x\d+, @d1\.example x\d+, @d2\.example x\d+$/)
    expect(lines[3]).toBe('  ... 1 more group (14 changes) not shown: --json lists every group, --report FILE every change')
    expect(renderCompare(s, 20).join('\n')).not.toMatch(/not shown/)
  })

  test('an unchanged code with a different id in its text is not a change', () => {
    const c = new Comparison()
    const it = item(1)
    it.recorded = [{to: 'a@x', code: 250, enhanced: '2.0.0', text: '<a@x> <id1> Saved', outcome: 'delivered'}]
    c.record(it, result('a@x', 250, '2.0.0', '<a@x> <id2> Saved'), false)
    expect(c.summary()).toMatchObject({compared: 1, unchanged: 1, changed: 0, groups: []})
  })
})
