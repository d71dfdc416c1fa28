/**
 * The shared connection flags: one duration form for --timeout, and AUTH's rules (password from a file or the
 * environment only, never in clear text to a remote server).
 */
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, test} from 'vitest'
import {connectionSettings} from '../../src/cli/connection-flags.js'
import {CliError} from '../../src/cli/exit-codes.js'
import {durationFlag} from '../../src/cli/flag-values.js'
import {parseTarget} from '../../src/net/target.js'

let dir = ''
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'lmtp-flags-'))
})
afterAll(async () => {
  await rm(dir, {recursive: true, force: true})
})

const local = parseTarget('127.0.0.1:24')
const remote = parseTarget('mx.example:24')

describe('--timeout', () => {
  test.each([
    ['30', 30_000],
    ['2.5', 2500],
    ['30s', 30_000],
    ['5m', 300_000],
    ['500ms', 500],
    ['1h', 3_600_000],
  ])('%s is %i ms', (text, ms) => {
    expect(durationFlag('--timeout', text)).toBe(ms)
  })
  test.each(['0', '0s', '-1', 'soon', '5 minutes', ''])('%j is a usage error naming the flag and the forms', (text) => {
    const err = (() => {
      try {
        durationFlag('--timeout', text)
      } catch (e) {
        return e
      }
    })()
    expect(err).toBeInstanceOf(CliError)
    expect(err).toMatchObject({exitCode: 64})
    expect((err as Error).message).toMatch(/^--timeout /)
  })
})

describe('--reconnect-for (zero allowed: never reconnect)', () => {
  test.each([
    ['0', 0],
    ['0s', 0],
    ['30s', 30_000],
  ])('%s is %i ms', (text, ms) => {
    expect(durationFlag('--reconnect-for', text, {allowZero: true})).toBe(ms)
  })
  test('a negative duration is still a usage error', () => {
    expect(() => durationFlag('--reconnect-for', '-1', {allowZero: true})).toThrow(CliError)
  })
})

describe('connectionSettings', () => {
  test('defaults', async () => {
    const s = await connectionSettings({lhlo: 'me.test'}, local, {})
    expect(s).toEqual({lhloName: 'me.test', starttls: false, tlsInsecure: false})
  })

  test('--auth takes the first line of --auth-password-file', async () => {
    const file = path.join(dir, 'pw')
    await writeFile(file, 'p4ss word\nignored\n')
    const s = await connectionSettings({auth: 'alice', 'auth-password-file': file}, local, {LMTP_AUTH_PASSWORD: 'env'})
    expect(s.auth).toEqual({user: 'alice', password: 'p4ss word'})
  })

  test('--auth takes $LMTP_AUTH_PASSWORD without a file', async () => {
    const s = await connectionSettings({auth: 'alice'}, parseTarget('unix:/run/lmtp'), {LMTP_AUTH_PASSWORD: 'from-env'})
    expect(s.auth).toEqual({user: 'alice', password: 'from-env'})
  })

  test.each([
    {name: 'no password anywhere', flags: {auth: 'alice'}, target: local, env: {}, code: 64, message: /--auth-password-file FILE or set LMTP_AUTH_PASSWORD/},
    {name: 'clear text to a remote server', flags: {auth: 'alice'}, target: remote, env: {LMTP_AUTH_PASSWORD: 'x'}, code: 64, message: /add --starttls/},
    {name: 'unreadable password file', flags: {auth: 'alice', 'auth-password-file': '/nonexistent/pw'}, target: local, env: {}, code: 66, message: /password file/},
    {name: 'bad LHLO name', flags: {lhlo: 'a b'}, target: local, env: {}, code: 64, message: /--lhlo/},
  ])('$name: exit $code', async ({flags, target, env, code, message}) => {
    const err = await connectionSettings(flags, target, env).catch((e) => e)
    expect(err).toBeInstanceOf(CliError)
    expect(err.exitCode).toBe(code)
    expect(err.message).toMatch(message)
  })

  test('--auth to a remote server is fine with --starttls', async () => {
    const s = await connectionSettings({auth: 'alice', starttls: true}, remote, {LMTP_AUTH_PASSWORD: 'x'})
    expect(s.auth?.user).toBe('alice')
  })
})
