/**
 * `lmtp serve` as a real process started as root: --user/--group drop (for good), --socket-owner, the warning
 * when delivering as root, and the startup refusals (Maildir not writable by the serving user, users file with no
 * mailbox, certificate/key unreadable, not PEM or not matching, certificate close to expiry).
 */
import {execFileSync, spawn, spawnSync} from 'node:child_process'
import {chmodSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {afterEach, beforeEach, describe, expect, test} from 'vitest'
import {REPO_ROOT, killAndWait, spawnServe} from '../reliability/serve-process.js'
import {runSwaks, swaksTarget} from '../support/peers/runners.js'
import {describePeers} from '../support/peers/gate.js'
import {systemUser, tempDir, type TempDir} from '../support/peers/proc.js'
import {LineWatch} from '../support/line-watch.js'
import {makeTestCertificate} from '../support/tls-cert.js'

/** Runs `lmtp serve ARGS` to its exit (startup refusals): the exit code and everything it printed. */
function serveExits(args: string[]): {code: number | null; output: string} {
  const r = spawnSync(process.execPath, [path.join(REPO_ROOT, 'bin', 'run.js'), 'serve', '--no-events', ...args], {
    encoding: 'utf8',
    env: {...process.env, NO_COLOR: '1', OCLIF_SKIP_NEW_VERSION_CHECK: 'true'},
    timeout: 30_000,
  })
  return {code: r.status, output: `${r.stdout}${r.stderr}`}
}

/** The Uid:/Gid:/Groups: lines of /proc/PID/status (real, effective, saved, fs). */
function procIds(pid: number): {uid: number[]; gid: number[]; groups: number[]} {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const field = (name: string): number[] =>
    (new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)?.[1] ?? '').split(/\s+/).filter(Boolean).map(Number)
  return {uid: field('Uid'), gid: field('Gid'), groups: field('Groups')}
}

let dir: TempDir
beforeEach(async () => {
  dir = await tempDir('lmtp-identity')
})
afterEach(async () => {
  await dir.cleanup()
})

describe('serve started as root', () => {
  test('runs as root only when it must: the test runs as root', () => {
    // These tests start serve as root and check the drop; a non-root run cannot test it, so it fails here.
    expect(process.getuid?.()).toBe(0)
  })

  test('without --user it warns loudly, naming --user', async () => {
    const p = await spawnServe(['--maildir', path.join(dir.path, 'Maildir'), '--listen', '127.0.0.1:0', '--no-events'])
    try {
      expect(p.tail.join('\n')).toMatch(/delivering as root.*--user/)
    } finally {
      await killAndWait(p, 'SIGTERM')
    }
  })
})

describePeers('serve --user / --socket-owner', ['swaks'], () => {
  test('binds as root, then runs as nobody for good; the socket belongs to postfix; mail files to nobody', async () => {
    const nobody = systemUser('nobody')!
    const postfix = systemUser('postfix')!
    const socket = path.join(dir.path, 'lmtp.sock')
    const maildir = path.join(dir.path, 'Maildir')
    const p = await spawnServe(['--maildir', maildir, '--listen', `unix:${socket}`, '--socket-mode', '0600', '--socket-owner', 'postfix', '--user', 'nobody', '--no-events'])
    try {
      // Real, effective, saved and file-system ids are all nobody's: setuid(0) cannot bring root back.
      const ids = procIds(p.pid)
      expect(ids.uid).toEqual([nobody.uid, nobody.uid, nobody.uid, nobody.uid])
      expect(ids.gid).toEqual([nobody.gid, nobody.gid, nobody.gid, nobody.gid])
      expect(ids.groups).not.toContain(0)
      const st = statSync(socket)
      expect([st.uid, st.gid, st.mode & 0o777]).toEqual([postfix.uid, postfix.gid, 0o600])
      expect(p.tail.join('\n')).not.toMatch(/delivering as root/)
      // The Maildir root serve created belongs to the user it runs as.
      expect(statSync(maildir).uid).toBe(nobody.uid)
      const sent = await runSwaks([...swaksTarget({socketPath: socket}), '--from', 's@example.org', '--to', 'alice@example.com'])
      expect(sent.stdout).toMatch(/<- {2}250 2\.\d\.\d/)
      const newDir = path.join(maildir, 'example.com', 'alice', 'new')
      const files = readdirSync(newDir)
      expect(files).toHaveLength(1)
      expect(statSync(path.join(newDir, files[0]!)).uid).toBe(nobody.uid)
    } finally {
      await killAndWait(p, 'SIGTERM')
    }
  })
})

describe('started as an ordinary user', () => {
  test('--user naming that same user runs (systemd User= with the config file\'s user); another user is refused', async () => {
    const nobody = systemUser('nobody')!
    const maildir = path.join(dir.path, 'Maildir')
    execFileSync('install', ['-d', '-o', 'nobody', '-m', '0700', maildir])
    const asNobody = {uid: nobody.uid, gid: nobody.gid, cwd: REPO_ROOT, env: {...process.env, NO_COLOR: '1', OCLIF_SKIP_NEW_VERSION_CHECK: 'true', HOME: dir.path}}
    const other = spawnSync(process.execPath, [path.join(REPO_ROOT, 'bin', 'run.js'), 'serve', '--no-events', '--maildir', maildir, '--listen', '127.0.0.1:0', '--user', 'root'], {...asNobody, encoding: 'utf8', timeout: 30_000})
    expect(other.status).toBe(64)
    expect(other.stderr).toContain('--user root needs root')
    const same = spawn(process.execPath, [path.join(REPO_ROOT, 'bin', 'run.js'), 'serve', '--no-events', '--log-format', 'json', '--maildir', maildir, '--listen', '127.0.0.1:0', '--user', 'nobody'], {...asNobody, stdio: ['ignore', 'pipe', 'pipe']})
    const exited = new Promise<number | null>((resolve) => same.once('exit', (code) => resolve(code)))
    try {
      const listening = await new LineWatch(same.stdout!).next((l) => l.includes('"event":"listening"'))
      expect(JSON.parse(listening).uid).toBe(nobody.uid)
    } finally {
      same.kill('SIGTERM')
    }
    expect(await exited).toBe(0)
  })
})

describe('startup refusals name the file and the next step', () => {
  test('a Maildir root the --user cannot write: exit 73 after the drop, naming the root and chown', () => {
    const maildir = path.join(dir.path, 'Maildir')
    mkdirSync(maildir, {mode: 0o700})
    const r = serveExits(['--maildir', maildir, '--listen', '127.0.0.1:0', '--user', 'nobody'])
    expect(r.code).toBe(73)
    expect(r.output).toContain(`Maildir root ${maildir} is not writable by uid ${systemUser('nobody')!.uid}`)
    expect(r.output).toContain('chown')
  })

  test('an unknown --user: exit 78', () => {
    const r = serveExits(['--maildir', path.join(dir.path, 'M'), '--listen', '127.0.0.1:0', '--user', 'no-such-user-lmtp'])
    expect(r.code).toBe(78)
    expect(r.output).toContain('--user no-such-user-lmtp: no such user')
  })

  test('a users file with no mailbox in it: exit 78', () => {
    const users = path.join(dir.path, 'users')
    writeFileSync(users, '# nobody yet\n\n')
    const r = serveExits(['--maildir', path.join(dir.path, 'M'), '--listen', '127.0.0.1:0', '--users', users])
    expect(r.code).toBe(78)
    expect(r.output).toContain(`${users}: no mailbox in it`)
  })

  test('certificate and key: unreadable 66, not PEM 78, not matching 78 (each names the file); near expiry warns', async () => {
    const a = path.join(dir.path, 'a')
    const b = path.join(dir.path, 'b')
    mkdirSync(a)
    mkdirSync(b)
    const one = makeTestCertificate(a)
    const two = makeTestCertificate(b)
    const base = ['--maildir', path.join(dir.path, 'M'), '--listen', '127.0.0.1:0']
    const missing = serveExits([...base, '--tls-cert', path.join(a, 'none.pem'), '--tls-key', one.keyFile])
    expect([missing.code, missing.output.includes(`${path.join(a, 'none.pem')} (ENOENT)`)]).toEqual([66, true])
    const garbage = path.join(dir.path, 'garbage.pem')
    writeFileSync(garbage, 'not a certificate\n')
    const notPem = serveExits([...base, '--tls-cert', garbage, '--tls-key', one.keyFile])
    expect(notPem.code).toBe(78)
    expect(notPem.output).toContain(`${garbage} is not a PEM certificate`)
    const mismatch = serveExits([...base, '--tls-cert', one.certFile, '--tls-key', two.keyFile])
    expect(mismatch.code).toBe(78)
    expect(mismatch.output).toContain(`${two.keyFile} is not the key of ${one.certFile}`)
    // makeTestCertificate's certificates last 2 days: serve starts, with a warning naming the file.
    const p = await spawnServe([...base, '--tls-cert', one.certFile, '--tls-key', one.keyFile, '--no-events'])
    try {
      expect(p.tail.join('\n')).toMatch(new RegExp(`TLS certificate ${one.certFile.replace(/[.]/g, '\\.')} expires on .* \\(in [01] days\\)`))
    } finally {
      await killAndWait(p, 'SIGTERM')
    }
  })

  test('a spool directory left by a root run is reported, not a delivery failure later', () => {
    const maildir = path.join(dir.path, 'Maildir')
    mkdirSync(path.join(maildir, '.lmtp-spool'), {recursive: true, mode: 0o700})
    execFileSync('chown', ['nobody', maildir])
    chmodSync(maildir, 0o700)
    const r = serveExits(['--maildir', maildir, '--listen', '127.0.0.1:0', '--user', 'nobody'])
    expect(r.code).toBe(73)
    expect(r.output).toContain(`spool directory ${path.join(maildir, '.lmtp-spool')} is not writable`)
  })
})
