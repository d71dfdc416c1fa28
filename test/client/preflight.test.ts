/** Preflight: what may be sent to a server with these capabilities, and with which MAIL parameters. */
import {describe, expect, test} from 'vitest'
import {addressProblem, preflight} from '../../src/client/preflight.js'
import {parseCapabilities} from '../../src/protocol/capabilities.js'

const caps = (...keywords: string[]) => parseCapabilities(['server.test', ...keywords])

describe('preflight', () => {
  test.each([
    {
      name: 'plain ASCII, SIZE advertised: SIZE= only',
      keywords: ['PIPELINING', 'SIZE 1000'],
      message: {size: 500, has8bit: false},
      to: ['a@example.com'],
      params: {size: 500},
      problems: [],
    },
    {
      name: 'no SIZE advertised: no SIZE= parameter',
      keywords: ['PIPELINING'],
      message: {size: 500, has8bit: false},
      to: ['a@example.com'],
      params: {},
      problems: [],
    },
    {
      name: '8-bit with 8BITMIME: BODY=8BITMIME',
      keywords: ['8BITMIME'],
      message: {size: 10, has8bit: true},
      to: ['a@example.com'],
      params: {body: '8BITMIME'},
      problems: [],
    },
    {
      name: '8-bit without 8BITMIME: refused',
      keywords: [],
      message: {size: 10, has8bit: true},
      to: ['a@example.com'],
      params: {},
      problems: [/8-bit content .* does not offer 8BITMIME: encode .* quoted-printable or base64/],
    },
    {
      name: 'non-ASCII recipient with SMTPUTF8: SMTPUTF8',
      keywords: ['8BITMIME', 'SMTPUTF8'],
      message: {size: 10, has8bit: false},
      to: ['josé@example.com'],
      params: {smtputf8: true},
      problems: [],
    },
    {
      name: 'non-ASCII recipient without SMTPUTF8: refused, naming it',
      keywords: ['8BITMIME'],
      message: {size: 10, has8bit: false},
      to: ['a@example.com', 'josé@example.com'],
      params: {},
      problems: [/<josé@example\.com> is not ASCII .* does not offer SMTPUTF8/],
    },
    {
      name: 'over SIZE: refused with both sizes and what to change',
      keywords: ['SIZE 1024'],
      message: {size: 4096, has8bit: false},
      to: ['a@example.com'],
      params: {size: 4096},
      problems: [/4096 octets \(4 KB\) .* at most 1024 \(1 KB, its SIZE\): send a smaller message, or raise .*--max-size/],
    },
    {
      name: 'SIZE 0 means no limit',
      keywords: ['SIZE 0'],
      message: {size: 1e9, has8bit: false},
      to: ['a@example.com'],
      params: {size: 1e9},
      problems: [],
    },
    {
      name: 'several problems at once',
      keywords: ['SIZE 10'],
      message: {size: 20, has8bit: true},
      to: ['ü@example.com'],
      params: {size: 20},
      problems: [/8BITMIME/, /SMTPUTF8/, /at most 10/],
    },
  ])('$name', ({keywords, message, to, params, problems}) => {
    const r = preflight({capabilities: caps(...keywords), message, from: 'ops@example.org', to, server: 'server:24'})
    expect(r.params).toEqual(params)
    expect(r.problems).toHaveLength(problems.length)
    for (const [i, p] of r.problems.entries()) expect(p).toMatch(problems[i]!)
  })

  test('a non-ASCII sender counts too', () => {
    const r = preflight({capabilities: caps('SMTPUTF8'), message: {size: 1, has8bit: false}, from: 'ü@example.org', to: ['a@example.com'], server: 's'})
    expect(r.params).toEqual({smtputf8: true})
  })
})

describe('addressProblem', () => {
  test.each([
    {address: 'a@example.com', kind: 'recipient', ok: true},
    {address: 'Postmaster', kind: 'recipient', ok: true},
    {address: 'josé@exämple.com', kind: 'recipient', ok: true},
    {address: '"quoted local"@example.com', kind: 'recipient', ok: true},
    {address: '', kind: 'sender', ok: true},
    {address: '', kind: 'recipient', ok: false},
    {address: 'no-at-sign', kind: 'recipient', ok: false},
    {address: 'a b@example.com', kind: 'recipient', ok: false},
    {address: '<a@example.com>', kind: 'recipient', ok: false},
    {address: 'a@example.com> SIZE=1', kind: 'sender', ok: false},
  ] as const)('$kind $address -> ok $ok', ({address, kind, ok}) => {
    expect(addressProblem(address, kind) === undefined).toBe(ok)
  })
})
