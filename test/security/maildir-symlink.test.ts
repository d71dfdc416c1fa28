/**
 * Symlinks planted inside the Maildir root must never carry a delivery outside it. A user who can write in
 * their own Maildir (for example through an IMAP server running as them) could replace tmp/, new/, their whole
 * mailbox directory or a domain directory with a symlink to anywhere. Decision: the server refuses to deliver
 * through a symlink or a non-directory below the root (451 4.3.0 for that recipient only, the others delivered)
 * and writes nothing outside the root; a symlink planted at a temp file's name is defeated by O_EXCL|O_NOFOLLOW
 * (covered in test/delivery/maildir.test.ts), and maildirsize is opened with O_NOFOLLOW.
 */
import {mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {afterEach, beforeEach, describe, expect, test} from 'vitest'
import {type TestServer, deliveredFiles, startServe} from '../support/serve.js'
import {brief, transact} from './helpers.js'

let srv: TestServer
let outside = ''
beforeEach(async () => {
  srv = await startServe()
  outside = await mkdtemp(path.join(os.tmpdir(), 'lmtp-outside-'))
})
afterEach(async () => {
  await srv.stop()
  await srv.cleanup()
  await rm(outside, {recursive: true, force: true})
})

const BODY = 'Subject: planted\r\n\r\nsecret\r\n.\r\n'

/** Plants a symlink at `rel` (relative to the root) pointing into `outside`, creating real parents. */
async function plant(rel: string, what: 'dir' | 'maildir'): Promise<void> {
  const at = path.join(srv.root, rel)
  await mkdir(path.dirname(at), {recursive: true, mode: 0o700})
  if (what === 'maildir') for (const sub of ['tmp', 'new', 'cur']) await mkdir(path.join(outside, sub), {recursive: true})
  await symlink(outside, at)
}

describe('a symlink planted inside the Maildir', () => {
  test.each([
    ['tmp/ of the mailbox', 'example.com/victim/tmp', 'dir'],
    ['new/ of the mailbox', 'example.com/victim/new', 'dir'],
    ['cur/ of the mailbox', 'example.com/victim/cur', 'dir'],
    ['the mailbox directory', 'example.com/victim', 'maildir'],
    ['the domain directory', 'example.com', 'maildir'],
  ] as const)('%s -> outside: 451 for that recipient, nothing written outside the root', async (_name, rel, what) => {
    if (rel.startsWith('example.com/victim/')) {
      for (const sub of ['tmp', 'new', 'cur']) await mkdir(path.join(srv.root, 'example.com/victim', sub), {recursive: true})
      await rm(path.join(srv.root, rel), {recursive: true})
    }
    await plant(rel, what)
    const other = rel === 'example.com' ? 'bystander@example.net' : 'bystander@example.com'
    const replies = await transact(srv.port, {from: 'a@example.org', to: ['victim@example.com', other], body: BODY})
    expect(brief(replies.slice(-3, -1))).toEqual(['451 4.3.0', '250 2.0.0'])
    expect(await readdir(outside, {recursive: true}).then((l) => l.filter((p) => !['tmp', 'new', 'cur'].includes(p)))).toEqual([])
    expect((await deliveredFiles(srv.root)).map((f) => f.mailbox)).toEqual([other.replace(/^(.*)@(.*)$/, '$2/$1')])
  })

  test('maildirsize as a symlink to a file outside: the file outside is never written', async () => {
    await srv.stop()
    await srv.cleanup()
    srv = await startServe({quota: 1_000_000})
    const box = path.join(srv.root, 'example.com', 'victim')
    for (const sub of ['tmp', 'new', 'cur']) await mkdir(path.join(box, sub), {recursive: true})
    const target = path.join(outside, 'precious')
    await writeFile(target, 'do not touch\n')
    await symlink(target, path.join(box, 'maildirsize'))
    const replies = await transact(srv.port, {from: 'a@example.org', to: ['victim@example.com'], body: BODY})
    // Either delivered with a rebuilt tally or deferred: never written through the link.
    expect(['250', '451']).toContain(String(replies.at(-2)!.code))
    expect(await readFile(target, 'utf8')).toBe('do not touch\n')
  })
})
