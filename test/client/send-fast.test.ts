/**
 * The `lmtp send` start-up fast path parses with oclif's own parser and the command's own flag definitions, so
 * it reads a command line exactly as the oclif command does; help, version and anything the parser refuses are
 * left to the full CLI.
 */
import {afterEach, describe, expect, test} from 'vitest'
import {parseFast} from '../../src/cli/send-fast.js'

const saved = process.env.LMTP_SERVER
afterEach(() => {
  if (saved === undefined) delete process.env.LMTP_SERVER
  else process.env.LMTP_SERVER = saved
})

describe('parseFast', () => {
  test.each([
    {argv: ['--to', 'a@x.test'], to: ['a@x.test'], file: undefined, json: false},
    {argv: ['--to=a@x.test', '--to', 'b@x.test', '--json'], to: ['a@x.test', 'b@x.test'], file: undefined, json: true},
    {argv: ['m.eml', '--to', 'a@x.test', '--server', 'unix:/run/lmtp', '--from', '', '--no-pipelining', '--bdat'], to: ['a@x.test'], file: 'm.eml', json: false},
    {argv: ['-', '--to', 'a@x.test', '--timeout', '5', '--starttls', '--tls-insecure'], to: ['a@x.test'], file: '-', json: false},
  ])('reads $argv', async ({argv, to, file, json}) => {
    delete process.env.LMTP_SERVER
    const r = await parseFast(argv)
    expect(r).toBeDefined()
    expect(r!.flags.to).toEqual(to)
    expect(r!.file).toBe(file)
    expect(r!.json).toBe(json)
  })

  test('flag values and defaults are oclif\'s', async () => {
    delete process.env.LMTP_SERVER
    const r = await parseFast(['m.eml', '--to', 'a@x.test', '--server', 'unix:/run/lmtp', '--from', '', '--no-pipelining', '--bdat'])
    expect(r!.flags).toMatchObject({server: 'unix:/run/lmtp', from: '', pipelining: false, bdat: true})
    expect((await parseFast(['--to', 'a@x.test']))!.flags).toMatchObject({server: '127.0.0.1:24', pipelining: true})
  })

  test('the server comes from LMTP_SERVER when not given', async () => {
    process.env.LMTP_SERVER = '127.0.0.1:2424'
    expect((await parseFast(['--to', 'a@x.test']))?.flags.server).toBe('127.0.0.1:2424')
    expect((await parseFast(['--to', 'a@x.test', '--server', '127.0.0.1:9']))?.flags.server).toBe('127.0.0.1:9')
  })

  test.each([
    {why: 'no --to', argv: ['m.eml']},
    {why: 'help', argv: ['--to', 'a@x.test', '--help']},
    {why: 'short help', argv: ['-h']},
    {why: 'version', argv: ['--version']},
    {why: 'unknown flag', argv: ['--to', 'a@x.test', '--bogus']},
    {why: '--tls-insecure without --starttls', argv: ['--to', 'a@x.test', '--tls-insecure']},
    {why: 'two files', argv: ['a.eml', 'b.eml', '--to', 'a@x.test']},
    {why: 'missing value', argv: ['--to', 'a@x.test', '--from']},
    {why: 'double dash', argv: ['--to', 'a@x.test', '--', 'm.eml']},
  ])('leaves to the full CLI: $why', async ({argv}) => {
    expect(await parseFast(argv)).toBeUndefined()
  })
})
