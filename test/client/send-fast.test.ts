/**
 * The `lmtp send` start-up fast path reads only plain command lines, exactly as oclif would, and leaves every
 * other one (help, unknown or repeated flags, TLS, values that look like flags, greedy --to words) to oclif.
 */
import {describe, expect, test} from 'vitest'
import {parseSendArgs} from '../../src/client/send-fast.js'

const base = {server: '127.0.0.1:24', pipelining: true, bdat: false, transcript: false, starttls: false, 'tls-insecure': false}

describe('parseSendArgs', () => {
  test.each([
    {argv: ['--to', 'a@x.test'], flags: {...base, to: ['a@x.test']}, file: undefined, json: false},
    {argv: ['--to=a@x.test', '--to', 'b@x.test', '--json'], flags: {...base, to: ['a@x.test', 'b@x.test']}, file: undefined, json: true},
    {
      argv: ['m.eml', '--to', 'a@x.test', '--server', 'unix:/run/lmtp', '--from', '', '--no-pipelining', '--bdat', '--transcript'],
      flags: {...base, to: ['a@x.test'], server: 'unix:/run/lmtp', from: '', pipelining: false, bdat: true, transcript: true},
      file: 'm.eml',
      json: false,
    },
    {argv: ['-', '--to', 'a@x.test', '--timeout', '5', '--lhlo', 'me', '--size', '1K'], flags: {...base, to: ['a@x.test'], timeout: '5', lhlo: 'me', size: '1K'}, file: '-', json: false},
    {argv: ['--to', 'a@x.test', '--json', 'm.eml'], flags: {...base, to: ['a@x.test']}, file: 'm.eml', json: true},
  ])('reads $argv', ({argv, flags, file, json}) => {
    expect(parseSendArgs(argv, {})).toEqual({flags, file, json})
  })

  test('the server comes from LMTP_SERVER when not given', () => {
    expect(parseSendArgs(['--to', 'a@x.test'], {LMTP_SERVER: '127.0.0.1:2424'})?.flags.server).toBe('127.0.0.1:2424')
    expect(parseSendArgs(['--to', 'a@x.test', '--server', '127.0.0.1:9'], {LMTP_SERVER: '127.0.0.1:2424'})?.flags.server).toBe('127.0.0.1:9')
  })

  test.each([
    {why: 'no --to', argv: ['m.eml']},
    {why: 'help', argv: ['--to', 'a@x.test', '--help']},
    {why: 'short help', argv: ['-h']},
    {why: 'unknown flag', argv: ['--to', 'a@x.test', '--bogus']},
    {why: 'STARTTLS', argv: ['--to', 'a@x.test', '--starttls']},
    {why: 'TLS CA', argv: ['--to', 'a@x.test', '--tls-ca', 'ca.pem']},
    {why: 'chunk size', argv: ['--to', 'a@x.test', '--chunk-size', '1K']},
    {why: 'a word after --to values (oclif gives it to --to)', argv: ['--to', 'a@x.test', 'm.eml']},
    {why: 'two files', argv: ['a.eml', 'b.eml', '--to', 'a@x.test']},
    {why: 'repeated --from', argv: ['--to', 'a@x.test', '--from', 'a@x.test', '--from', 'b@x.test']},
    {why: 'repeated boolean', argv: ['--to', 'a@x.test', '--json', '--json']},
    {why: 'a value that looks like a flag', argv: ['--to', '--json']},
    {why: 'missing value', argv: ['--to', 'a@x.test', '--from']},
    {why: 'empty = value', argv: ['--to=']},
    {why: 'boolean with a value', argv: ['--to', 'a@x.test', '--json=yes']},
    {why: 'double dash', argv: ['--to', 'a@x.test', '--', 'm.eml']},
    {why: 'pipelining twice', argv: ['--to', 'a@x.test', '--pipelining', '--no-pipelining']},
  ])('leaves to oclif: $why', ({argv}) => {
    expect(parseSendArgs(argv, {})).toBeUndefined()
  })
})
