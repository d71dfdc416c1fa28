/**
 * `lmtp serve --config FILE` and `--check-config`, run as the built CLI: the file holds flags, the command line
 * wins, the effective configuration is printed like `postconf -n`, and every problem names FILE:LINE (exit 78).
 */
import {spawnSync} from 'node:child_process'
import {mkdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {afterEach, beforeEach, describe, expect, test} from 'vitest'
import {REPO_ROOT, killAndWait, spawnServe} from '../reliability/serve-process.js'
import {type TempDir, tempDir} from '../support/peers/proc.js'
import {RawSession} from '../support/serve.js'

function lmtp(args: string[]): {code: number | null; stdout: string; stderr: string} {
  const r = spawnSync(process.execPath, [path.join(REPO_ROOT, 'bin', 'run.js'), ...args], {
    encoding: 'utf8',
    env: {...process.env, NO_COLOR: '1', OCLIF_SKIP_NEW_VERSION_CHECK: 'true'},
    timeout: 30_000,
  })
  return {code: r.status, stdout: r.stdout, stderr: r.stderr}
}

let dir: TempDir
let config: string
beforeEach(async () => {
  dir = await tempDir('lmtp-config')
  config = path.join(dir.path, 'lmtp.toml')
  writeFileSync(path.join(dir.path, 'users'), 'alice@example.com quota=1M\n')
})
afterEach(async () => {
  await dir.cleanup()
})

function writeConfig(lines: string[]): void {
  writeFileSync(config, `# lmtp serve configuration\n${lines.join('\n')}\n`)
}

describe('serve --check-config', () => {
  test('prints the effective configuration (file values, command line winning) and exits 0', () => {
    writeConfig([
      `maildir = "${dir.path}/Maildir"`,
      `listen = ["unix:${dir.path}/lmtp.sock", "127.0.0.1:2424"]`,
      `users = "${dir.path}/users"`,
      'max-size = "20M"',
      'check-quota-at-rcpt = true',
      'over-quota = "permanent"',
    ])
    const r = lmtp(['serve', '--config', config, '--check-config', '--max-size', '10M'])
    expect(r.stderr).toContain('configuration OK')
    expect(r.code).toBe(0)
    expect(r.stdout.trim().split('\n')).toEqual([
      `maildir = "${dir.path}/Maildir"`,
      `listen = ["unix:${dir.path}/lmtp.sock", "127.0.0.1:2424"]`,
      `users = "${dir.path}/users"`,
      'over-quota = "permanent"',
      'check-quota-at-rcpt = true',
      'max-size = "10M"',
    ])
  })

  test.each([
    ['an unknown key', ['bogus = 1'], ':2: unknown key "bogus"'],
    ['a value of the wrong type', ['max-connections = "many"'], ':2: max-connections = "many": expected a whole number'],
    ['a value not among the options', ['over-quota = "sometimes"'], ':2: over-quota = "sometimes": expected one of "temporary", "permanent"'],
    ['a bad size', ['maildir = "/tmp/x"', 'quota = "lots"'], ':3: --quota "lots": invalid size'],
    ['a TOML syntax error', ['maildir = "/tmp/x"', 'max-size = 20M', 'hostname = "a"'], ':3: Invalid TOML'],
    ['an integer below its minimum', ['max-recipients = 5'], ':2: max-recipients = 5: expected a whole number of at least 100'],
    ['an unknown user', ['user = "no-such-user-lmtp"'], ':2: --user no-such-user-lmtp: no such user'],
  ])('%s: exit 78 with FILE:LINE', (_name, lines, expected) => {
    writeConfig(lines)
    const r = lmtp(['serve', '--config', config, '--check-config'])
    expect(r.code).toBe(78)
    expect(r.stderr).toContain(`${config}${expected}`)
  })

  test('collects the problems of the files it points at: empty users file, unwritable Maildir for --user', () => {
    writeFileSync(path.join(dir.path, 'users'), '# none yet\n')
    mkdirSync(path.join(dir.path, 'Maildir'), {mode: 0o700})
    writeConfig([`maildir = "${dir.path}/Maildir"`, `users = "${dir.path}/users"`, 'user = "nobody"'])
    const r = lmtp(['serve', '--config', config, '--check-config'])
    expect(r.code).toBe(78)
    expect(r.stderr).toContain(`${dir.path}/users: no mailbox in it`)
    expect(r.stderr).toContain(`Maildir root ${dir.path}/Maildir is not writable by uid`)
  })

  test('a missing config file: exit 66 naming it', () => {
    const r = lmtp(['serve', '--config', path.join(dir.path, 'none.toml'), '--check-config'])
    expect(r.code).toBe(66)
    expect(r.stderr).toContain('none.toml (ENOENT)')
  })
})

test('serve --config runs with the file, the command line winning', async () => {
  const socket = path.join(dir.path, 'lmtp.sock')
  writeConfig([`maildir = "${dir.path}/Maildir"`, `listen = ["127.0.0.1:1"]`, `users = "${dir.path}/users"`, 'no-events = true', 'hostname = "from-file.test"'])
  const p = await spawnServe(['--config', config, '--listen', `unix:${socket}`])
  try {
    const s = await RawSession.open(socket)
    const [greeting] = await s.waitReplies(1)
    expect(greeting!.lines[0]).toContain('from-file.test')
    s.write('LHLO t\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.com>\r\n')
    const replies = await s.waitReplies(4)
    // The users file from the config is in force: bob is unknown.
    expect(replies[3]!.code).toBe(550)
    s.close()
  } finally {
    await killAndWait(p, 'SIGTERM')
  }
})
