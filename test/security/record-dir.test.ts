/**
 * `serve --record DIR` never writes into a directory someone else prepared: owned by another user, writable by
 * group or others, or with `bodies` symlinked elsewhere (where root would write message bodies). serve refuses
 * at startup with exit 78, the path and the next step; nothing lands in the symlink's target.
 * Needs root to hand a directory to `nobody`; CI runs as root (and fails here if it does not).
 */
import {execFile} from 'node:child_process'
import {chmod, chown, mkdir, mkdtemp, readdir, rm, stat, symlink, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {afterEach, beforeEach, describe, expect, test} from 'vitest'
import {REPO_ROOT, cliBuilt, killAndWait, spawnServe} from '../reliability/serve-process.js'
import {needRoot, requireHost} from '../support/host-gate.js'
import {systemUser} from '../support/peers/proc.js'

const nobody = systemUser('nobody')

const gate = requireHost('--record directory checks', needRoot('to hand a directory to nobody'))

describe.skipIf(gate.skip)('serve --record DIR prepared by someone else', () => {
  let dir = ''
  beforeEach(async () => {
    gate.check()
    if (!cliBuilt()) throw new Error('dist/ is missing: run `npm run build` first (npm test does)')
    dir = await mkdtemp(path.join(os.tmpdir(), 'lmtp-recdir-'))
  })
  afterEach(async () => {
    await rm(dir, {recursive: true, force: true})
  })

  /** Starts serve with --record REC; resolves with how it failed to start (it must not listen). */
  async function refusal(rec: string): Promise<string> {
    const args = ['--no-events', '--maildir', path.join(dir, 'Maildir'), '--listen', `unix:${path.join(dir, 'lmtp.sock')}`, '--record', rec]
    const started = await spawnServe(args).then(
      (p) => p,
      (err: Error) => err.message,
    )
    if (typeof started !== 'string') {
      await killAndWait(started)
      throw new Error(`serve started with --record ${rec}`)
    }
    return started
  }

  test('a directory owned by nobody: exit 78 naming it and its owner', async () => {
    const rec = path.join(dir, 'rec')
    await mkdir(rec, {mode: 0o700})
    await chown(rec, nobody!.uid, nobody!.gid)
    const out = await refusal(rec)
    expect(out).toMatch(/serve exited \(78\)/)
    expect(out).toContain(`--record ${rec} is not safe to write into: ${rec} is owned by nobody (uid ${nobody!.uid})`)
  })

  test('a mode 0777 directory: exit 78', async () => {
    const rec = path.join(dir, 'rec')
    await mkdir(rec)
    await chmod(rec, 0o777)
    const out = await refusal(rec)
    expect(out).toMatch(/serve exited \(78\)/)
    expect(out).toContain(`${rec} has mode 0777: it must not be writable by group or others`)
  })

  test('bodies symlinked elsewhere: exit 78, nothing written at the target', async () => {
    const rec = path.join(dir, 'rec')
    const elsewhere = path.join(dir, 'cron.d')
    await mkdir(rec, {mode: 0o700})
    await mkdir(elsewhere)
    await symlink(elsewhere, path.join(rec, 'bodies'))
    const out = await refusal(rec)
    expect(out).toMatch(/serve exited \(78\)/)
    expect(out).toContain(`${path.join(rec, 'bodies')} is a symlink`)
    expect(await readdir(elsewhere)).toEqual([])
  })

  test('a directory of our own (0700) is used', async () => {
    const rec = path.join(dir, 'rec')
    const p = await spawnServe(['--no-events', '--maildir', path.join(dir, 'Maildir'), '--listen', `unix:${path.join(dir, 'lmtp.sock')}`, '--record', rec])
    await killAndWait(p, 'SIGTERM')
    expect(await readdir(rec)).toContain('bodies')
  })

  test('with --user nobody the directory and its bodies are given to nobody, and bodies are recorded', async () => {
    const rec = path.join(dir, 'rec')
    const maildir = path.join(dir, 'Maildir')
    const sock = path.join(dir, 'lmtp.sock')
    await chmod(dir, 0o755) // nobody must reach its Maildir
    await mkdir(maildir, {mode: 0o700})
    await chown(maildir, nobody!.uid, nobody!.gid)
    const p = await spawnServe(['--no-events', '--user', 'nobody', '--maildir', maildir, '--listen', `unix:${sock}`, '--record', rec])
    try {
      const message = path.join(dir, 'm.eml')
      await writeFile(message, 'Subject: recorded\r\nMessage-ID: <rec-1@example.org>\r\n\r\nbody\r\n')
      const sent = await new Promise<{code: number | null; out: string}>((resolve) => {
        execFile(process.execPath, [path.join(REPO_ROOT, 'bin', 'run.js'), 'send', message, '--server', `unix:${sock}`, '--from', 's@example.org', '--to', 'alice@example.com'], (err, stdout, stderr) => {
          resolve({code: err ? ((err as {code?: number}).code ?? 1) : 0, out: `${stdout}${stderr}`})
        })
      })
      expect(sent.code, sent.out).toBe(0)
    } finally {
      await killAndWait(p, 'SIGTERM')
    }
    for (const d of [rec, path.join(rec, 'bodies')]) expect((await stat(d)).uid, d).toBe(nobody!.uid)
    expect((await readdir(path.join(rec, 'bodies'))).filter((f) => !f.startsWith('.'))).toHaveLength(1)
  })
})
