/**
 * Per-mailbox owners (users file `uid=` / `gid=`): `lmtp serve` as a real root process gives every file and
 * directory it creates for such a mailbox (the mailbox directory, tmp/ new/ cur/, message files, maildirsize) to
 * that owner, leaves the other mailboxes root's, never follows a symlink planted in the mailbox, and refuses at
 * startup (exit 78, FILE:LINE) an unknown name, --user, or not being root.
 */
import {spawnSync} from 'node:child_process'
import {lstatSync, mkdirSync, readdirSync, readFileSync, rmdirSync, symlinkSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {afterEach, beforeEach, describe, expect, test} from 'vitest'
import {acquireDotlock} from '../../src/delivery/dotlock.js'
import {ensureMaildir, writeMaildirMessage} from '../../src/delivery/maildir.js'
import {REPO_ROOT, killAndWait, spawnServe} from '../reliability/serve-process.js'
import {systemGroup, systemUser, tempDir, type TempDir} from '../support/peers/proc.js'

const ENV = {...process.env, NO_COLOR: '1', OCLIF_SKIP_NEW_VERSION_CHECK: 'true'}

/** Runs `lmtp ARGS` to its exit: code and everything printed. */
function lmtp(args: string[], extra: {uid?: number; gid?: number} = {}): {code: number | null; output: string} {
  const r = spawnSync(process.execPath, [path.join(REPO_ROOT, 'bin', 'run.js'), ...args], {encoding: 'utf8', env: ENV, timeout: 30_000, cwd: REPO_ROOT, ...extra})
  return {code: r.status, output: `${r.stdout}${r.stderr}`}
}

/** Every path under `dir` (itself included) with its owner, never following a symlink. */
function owners(dir: string): {path: string; uid: number; gid: number}[] {
  const out: {path: string; uid: number; gid: number}[] = []
  const walk = (p: string): void => {
    const st = lstatSync(p)
    out.push({path: p, uid: st.uid, gid: st.gid})
    if (st.isDirectory()) for (const name of readdirSync(p)) walk(path.join(p, name))
  }
  walk(dir)
  return out
}

const nobody = systemUser('nobody')!
const nogroup = systemGroup('nogroup')!

let dir: TempDir
let maildir: string
let users: string
let socket: string
beforeEach(async () => {
  dir = await tempDir('lmtp-owner')
  maildir = path.join(dir.path, 'Maildir')
  users = path.join(dir.path, 'users')
  socket = path.join(dir.path, 'lmtp.sock')
})
afterEach(async () => {
  await dir.cleanup()
})

test('runs as root (per-mailbox owners need it; CI runs as root)', () => {
  expect(process.getuid?.()).toBe(0)
  expect(nobody).toBeDefined()
  expect(nogroup).toBeDefined()
})

describe('serve with uid=/gid= in the users file', () => {
  test('alice (names) and carol (numbers) get their files, bob stays root; maildirsize too under a quota', async () => {
    writeFileSync(users, `alice@example.com uid=nobody gid=nogroup quota=1M\nbob@example.com\ncarol@example.com uid=${nobody.uid} gid=${nogroup}\n`)
    const p = await spawnServe(['--maildir', maildir, '--users', users, '--listen', `unix:${socket}`, '--no-events'])
    try {
      const sent = lmtp(['send', '--server', `unix:${socket}`, '--json', '--to', 'alice@example.com,bob@example.com,carol@example.com'])
      expect(sent.code, sent.output).toBe(0)
    } finally {
      await killAndWait(p, 'SIGTERM')
    }
    const alice = path.join(maildir, 'example.com', 'alice')
    const aliceOwned = owners(alice)
    expect(aliceOwned.map((e) => path.relative(alice, e.path)).sort()).toEqual(
      expect.arrayContaining(['', 'tmp', 'new', 'cur', 'maildirsize']),
    )
    expect(readdirSync(path.join(alice, 'new'))).toHaveLength(1)
    expect(readFileSync(path.join(alice, 'maildirsize'), 'utf8')).toMatch(/^1048576S\n/)
    for (const e of aliceOwned) expect([e.path, e.uid, e.gid]).toEqual([e.path, nobody.uid, nogroup])
    const carol = owners(path.join(maildir, 'example.com', 'carol'))
    expect(carol.length).toBe(5) // the directory, tmp, new, cur and one message
    for (const e of carol) expect([e.path, e.uid, e.gid]).toEqual([e.path, nobody.uid, nogroup])
    const bob = owners(path.join(maildir, 'example.com', 'bob'))
    expect(bob.length).toBe(5)
    for (const e of bob) expect([e.path, e.uid, e.gid]).toEqual([e.path, 0, 0])
    // The domain directory is shared by mailboxes: it stays root's, so no owner can swap another's mailbox.
    expect(lstatSync(path.join(maildir, 'example.com')).uid).toBe(0)
  })

  test("a symlink planted in place of alice's tmp/ is refused: nothing created or chowned outside", async () => {
    writeFileSync(users, 'alice@example.com uid=nobody gid=nogroup\nbob@example.com\n')
    const outside = path.join(dir.path, 'outside')
    mkdirSync(outside, {mode: 0o700})
    const alice = path.join(maildir, 'example.com', 'alice')
    mkdirSync(path.join(alice, 'new'), {recursive: true})
    mkdirSync(path.join(alice, 'cur'))
    symlinkSync(outside, path.join(alice, 'tmp'))
    const p = await spawnServe(['--maildir', maildir, '--users', users, '--listen', `unix:${socket}`, '--no-events'])
    let sent: {code: number | null; output: string}
    try {
      sent = lmtp(['send', '--server', `unix:${socket}`, '--json', '--to', 'alice@example.com,bob@example.com'])
    } finally {
      await killAndWait(p, 'SIGTERM')
    }
    const results = JSON.parse(sent.output.slice(sent.output.indexOf('{'))) as {recipients: {recipient: string; code: number}[]}
    const codes = Object.fromEntries(results.recipients.map((r) => [r.recipient, r.code]))
    expect(codes['alice@example.com']).toBeGreaterThanOrEqual(400)
    expect(codes['alice@example.com']).toBeLessThan(500)
    expect(codes['bob@example.com']).toBe(250)
    expect(readdirSync(outside)).toEqual([])
    const target = lstatSync(outside)
    expect([target.uid, target.gid, target.mode & 0o777]).toEqual([0, 0, 0o700])
    expect(lstatSync(path.join(alice, 'tmp')).isSymbolicLink()).toBe(true)
    expect(readdirSync(path.join(alice, 'new'))).toEqual([])
  })

  test('an unknown user or group name stops serve with exit 78 and FILE:LINE', () => {
    writeFileSync(users, 'bob@example.com\nalice@example.com uid=no-such-user-lmtp\n')
    const r = lmtp(['serve', '--no-events', '--maildir', maildir, '--users', users, '--listen', '127.0.0.1:0'])
    expect(r.code, r.output).toBe(78)
    expect(r.output).toContain(`${users}:2: uid no-such-user-lmtp: no such user`)
    writeFileSync(users, 'alice@example.com gid=no-such-group-lmtp\n')
    const g = lmtp(['serve', '--no-events', '--maildir', maildir, '--users', users, '--listen', '127.0.0.1:0'])
    expect(g.code, g.output).toBe(78)
    expect(g.output).toContain(`${users}:1: gid no-such-group-lmtp: no such group`)
  })

  test('uid= with --user (which drops root) is refused with exit 78 naming both ways out', () => {
    writeFileSync(users, 'bob@example.com\nalice@example.com uid=nobody\n')
    const r = lmtp(['serve', '--no-events', '--maildir', maildir, '--users', users, '--listen', '127.0.0.1:0', '--user', 'nobody'])
    expect(r.code, r.output).toBe(78)
    expect(r.output).toContain(`${users}:2: uid=/gid=`)
    expect(r.output).toMatch(/leave out --user.*remove uid=\/gid=/s)
  })

  test('uid= when serve is not root is refused with exit 78', () => {
    writeFileSync(users, 'alice@example.com uid=nobody gid=nogroup\n')
    const r = lmtp(['serve', '--no-events', '--maildir', maildir, '--users', users, '--listen', '127.0.0.1:0'], {uid: nobody.uid, gid: nobody.gid})
    expect(r.code, r.output).toBe(78)
    expect(r.output).toContain(`${users}:1: uid=/gid=`)
    expect(r.output).toContain(`serve runs as uid ${nobody.uid}`)
  })
})

describe('the writer under a swap after the checks', () => {
  test('tmp/ replaced by a symlink after the Maildir exists: the pinned create refuses it', async () => {
    const box = path.join(dir.path, 'box')
    const outside = path.join(dir.path, 'outside')
    mkdirSync(outside, {mode: 0o700})
    const owner = {uid: nobody.uid, gid: nogroup}
    await ensureMaildir(box, undefined, owner)
    for (const e of owners(box)) expect([e.path, e.uid, e.gid]).toEqual([e.path, nobody.uid, nogroup])
    // The owner swaps tmp/ for a link between the backend's checks and the write (the Maildir is cached as made).
    rmdirSync(path.join(box, 'tmp'))
    symlinkSync(outside, path.join(box, 'tmp'))
    const body = Buffer.from('Subject: x\r\n\r\nhello\r\n')
    await expect(
      writeMaildirMessage({dir: box, headers: '', source: '', body, stats: {size: body.length, crlfCount: 3, bareLfCount: 0}, owner}),
    ).rejects.toMatchObject({code: expect.stringMatching(/^(ELOOP|ENOTDIR)$/)})
    expect(readdirSync(outside)).toEqual([])
    expect(lstatSync(outside).uid).toBe(0)
    expect(readdirSync(path.join(box, 'new'))).toEqual([])
  })

  test('the quota lock file is given to the owner through its descriptor', async () => {
    const lock = path.join(dir.path, 'maildirsize.lock')
    const release = await acquireDotlock(lock, {owner: {uid: nobody.uid, gid: nogroup}})
    try {
      const st = lstatSync(lock)
      expect([st.uid, st.gid, st.isFile()]).toEqual([nobody.uid, nogroup, true])
    } finally {
      await release()
    }
  })
})
