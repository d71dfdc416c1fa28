/**
 * The README's "Behind Postfix" recipe, run as written (paths moved into a temp dir, the private Postfix instance
 * in place of /etc/postfix): a vmail user, the users file turned into virtual_mailbox_maps with `lmtp users
 * --postmap` + postmap, `virtual_transport = lmtp:unix:private/lmtp-serve` with Postfix's lmtp client chrooted into
 * its queue directory, `lmtp serve` dropping to vmail with the socket owned by postfix (0600), then Dovecot's
 * doveadm reading the delivered mail as vmail. Unknown recipients are refused by Postfix at SMTP time.
 */
import {execFileSync} from 'node:child_process'
import {readdirSync, statSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {afterAll, beforeAll, expect, test} from 'vitest'
import {REPO_ROOT, type ServeProcess, killAndWait, spawnServe} from '../reliability/serve-process.js'
import {describePeers} from '../support/peers/gate.js'
import {type Postfix, startPostfix} from '../support/peers/postfix.js'
import {type SystemUser, type TempDir, runPeer, systemUser, tempDir} from '../support/peers/proc.js'
import {runSwaks} from '../support/peers/runners.js'

/** The recipe's user: created when this machine has none (as step 1 of the README says). */
function ensureVmail(): SystemUser {
  if (!systemUser('vmail')) execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', 'vmail'])
  return systemUser('vmail')!
}

function lmtp(args: string[]): string {
  return execFileSync(process.execPath, [path.join(REPO_ROOT, 'bin', 'run.js'), ...args], {
    encoding: 'utf8',
    env: {...process.env, NO_COLOR: '1', OCLIF_SKIP_NEW_VERSION_CHECK: 'true'},
  })
}

describePeers('the README Postfix recipe, end to end', ['postfix', 'dovecot', 'swaks'], () => {
  let dir: TempDir
  let postfix: Postfix
  let serve: ServeProcess
  let vmail: SystemUser
  let maildir: string
  let doveconf: string
  let dovecotStarted = false

  beforeAll(async () => {
    vmail = ensureVmail()
    dir = await tempDir('lmtp-recipe')
    // Step 1: the Maildir root, owned by vmail.
    maildir = path.join(dir.path, 'var-mail-vmail')
    execFileSync('install', ['-d', '-o', 'vmail', '-g', 'vmail', '-m', '0700', maildir])
    // Step 2: the users file.
    const users = path.join(dir.path, 'users')
    writeFileSync(users, 'alice@example.com quota=10M\nbob@example.com\n')
    // Step 3: Postfix (the private instance stands for /etc/postfix), lmtp client chrooted as in Debian's master.cf.
    postfix = await startPostfix({lmtpTarget: 'unix:private/lmtp-serve', transport: 'virtual', chrootLmtp: true})
    const conf = postfix.configDir
    const vmailbox = path.join(conf, 'vmailbox')
    writeFileSync(vmailbox, lmtp(['users', '--postmap', users]))
    execFileSync('postmap', ['-c', conf, vmailbox])
    execFileSync('postconf', ['-c', conf, '-e', 'virtual_mailbox_domains = example.com', `virtual_mailbox_maps = hash:${vmailbox}`, 'virtual_transport = lmtp:unix:private/lmtp-serve'])
    // The harness turns Postfix's default recipient check off; the recipe relies on the default (on).
    execFileSync('postconf', ['-c', conf, '-X', 'smtpd_reject_unlisted_recipient'])
    const reloaded = await runPeer('postfix', ['-c', conf, 'reload'])
    expect(reloaded.code, reloaded.stderr).toBe(0)
    // Step 4: serve, socket inside the chroot, owned by postfix, dropping to vmail.
    serve = await spawnServe([
      '--maildir', maildir,
      '--users', users,
      '--listen', `unix:${path.join(postfix.queueDirectory, 'private', 'lmtp-serve')}`,
      '--socket-owner', 'postfix',
      '--socket-mode', '0600',
      '--user', 'vmail',
      '--no-events',
    ])
    // Step 5: Dovecot reads the same Maildirs as vmail.
    doveconf = path.join(dir.path, 'dovecot.conf')
    writeFileSync(
      doveconf,
      [
        // No protocol: only the auth and config services doveadm needs for its user lookups.
        'protocols =',
        `base_dir = ${dir.path}/dovecot-run`,
        `state_dir = ${dir.path}/dovecot-state`,
        `log_path = ${dir.path}/dovecot.log`,
        'ssl = no',
        `mail_location = maildir:${maildir}/%d/%n`,
        'mail_uid = vmail',
        'mail_gid = vmail',
        `first_valid_uid = ${vmail.uid}`,
        'passdb {\n  driver = static\n  args = nopassword=y\n}',
        `userdb {\n  driver = static\n  args = uid=vmail gid=vmail home=${maildir}/%d/%n\n}`,
        '',
      ].join('\n'),
    )
    // It daemonizes: keep no pipe to it (a pipe would stay open as long as it runs).
    execFileSync('dovecot', ['-c', doveconf], {stdio: 'ignore'})
    dovecotStarted = true
  }, 120_000)

  afterAll(async () => {
    if (dovecotStarted) execFileSync('dovecot', ['-c', doveconf, 'stop'], {stdio: 'ignore'})
    if (serve) await killAndWait(serve, 'SIGTERM')
    await postfix?.stop()
    await dir?.cleanup()
  })

  test('known users are delivered through the chroot as vmail and read by doveadm; unknown ones refused at RCPT', async () => {
    const sent = await runSwaks(['--server', '127.0.0.1', '--port', String(postfix.smtpPort), '--from', 'sender@example.org', '--to', 'alice@example.com,carol@example.com,bob@example.com', '--header', 'Subject: recipe test'])
    // Postfix refuses carol at SMTP time, from the map made by `lmtp users --postmap`.
    expect(sent.stdout).toMatch(/<\*\* +550 5\.1\.1 <carol@example\.com>: Recipient address rejected/)
    const deliveries = await postfix.waitForDeliveries((d) => d.filter((x) => x.status === 'sent').length >= 2, 60_000)
    const sent2 = deliveries.filter((d) => d.status === 'sent')
    expect(sent2.map((d) => d.to).sort()).toEqual(['alice@example.com', 'bob@example.com'])
    expect(sent2.every((d) => d.relay.includes('private/lmtp-serve'))).toBe(true)
    expect(deliveries.some((d) => d.to === 'carol@example.com')).toBe(false)
    // The socket: postfix's, 0600; the mail: vmail's.
    const sock = statSync(path.join(postfix.queueDirectory, 'private', 'lmtp-serve'))
    expect([sock.uid, sock.mode & 0o777]).toEqual([systemUser('postfix')!.uid, 0o600])
    const newDir = path.join(maildir, 'example.com', 'alice', 'new')
    const [file] = readdirSync(newDir)
    const st = statSync(path.join(newDir, file!))
    expect([st.uid, st.gid]).toEqual([vmail.uid, vmail.gid])
    // Dovecot, as vmail, finds and reads it.
    const fetched = execFileSync('doveadm', ['-c', doveconf, 'fetch', '-u', 'alice@example.com', 'hdr.subject', 'mailbox', 'INBOX'], {encoding: 'utf8'})
    expect(fetched.trim()).toBe('hdr.subject: recipe test')
    const count = execFileSync('doveadm', ['-c', doveconf, 'search', '-u', 'bob@example.com', 'mailbox', 'INBOX', 'ALL'], {encoding: 'utf8'})
    expect(count.trim().split('\n')).toHaveLength(1)
  }, 120_000)
})
