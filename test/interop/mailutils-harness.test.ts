/**
 * Proves the Mailutils harness (test/support/peers/mailutils.ts) and pins down, over raw sockets (none of the
 * project's code), the facts about GNU Mailutils 3.15's lmtpd that our clients rely on: one reply per accepted
 * recipient, and its quirks (one transaction per session, 503 to LHLO after DATA and to NOOP, 553 to any MAIL
 * parameter). A changed Debian package fails here first, with the reply that changed.
 */
import {existsSync, statSync} from 'node:fs'
import {afterAll, beforeAll, expect, test} from 'vitest'
import {describePeers, groupMembers, isAlive, LineConnection, lmtpExchange, type Mailutils, startMailutils} from '../support/peers.js'

/** The state of the system mailboxes (/var/mail/USER), which the harness must never touch. */
function systemMailboxes(users: readonly string[]): (string | null)[] {
  return users.map((user) => {
    const path = `/var/mail/${user}`
    if (!existsSync(path)) return null
    const st = statSync(path)
    return `${st.size} ${st.mtimeMs}`
  })
}

describePeers('GNU Mailutils lmtpd, private instance', ['mailutils'], () => {
  let mu: Mailutils
  let systemBefore: (string | null)[]
  beforeAll(async () => {
    mu = await startMailutils()
    systemBefore = systemMailboxes(mu.users)
  })
  afterAll(async () => {
    await mu?.stop()
  })

  test('greets, LHLO advertises ENHANCEDSTATUSCODES PIPELINING 8BITMIME; one reply per accepted recipient after DATA', async () => {
    const before = {mail: await mu.countMessages('mail'), news: await mu.countMessages('news')}
    const conn = await LineConnection.open({port: mu.port})
    try {
      expect(await conn.readReply()).toEqual(['220 At your service'])
      expect(await conn.command('LHLO client.example.org')).toEqual([
        '250-Hello',
        '250-ENHANCEDSTATUSCODES',
        '250-PIPELINING',
        '250-8BITMIME',
        '250 HELP',
      ])
      conn.write(
        [
          'MAIL FROM:<s@example.org>',
          'RCPT TO:<mail@example.com>',
          `RCPT TO:<${mu.unknownUser}@example.com>`,
          'RCPT TO:<news@example.com>',
          'DATA',
          '',
        ].join('\r\n'),
      )
      expect(await conn.readReplies(5)).toEqual([
        ['250 2.1.0 Go ahead'],
        ['250 2.1.5 Go ahead'],
        ['550 5.1.1 User unknown'],
        ['250 2.1.5 Go ahead'],
        ['354 Go ahead'],
      ])
      conn.write('Subject: two recipients\r\n\r\nhello\r\n..a line that starts with a dot\r\n.\r\n')
      expect(await conn.readReplies(2)).toEqual([['250 2.0.0 mail: delivered'], ['250 2.0.0 news: delivered']])
      // Exactly one reply per accepted recipient: the next reply is QUIT's.
      expect(await conn.command('QUIT')).toEqual(['221 2.0.0 Bye'])
    } finally {
      conn.close()
    }
    expect(await mu.countMessages('mail')).toBe(before.mail + 1)
    expect(await mu.countMessages('news')).toBe(before.news + 1)
    // Stored with LF line ends, dot-unstuffed.
    expect((await mu.messages('news')).at(-1)).toBe('Subject: two recipients\n\nhello\n.a line that starts with a dot\n')
  })

  test('quirks: one transaction per session, LHLO after DATA and NOOP get 503 5.0.0', async () => {
    const replies = await lmtpExchange({port: mu.port}, [
      'LHLO client.example.org',
      'NOOP',
      'MAIL FROM:<s@example.org>',
      'RCPT TO:<mail@example.com>',
      'DATA',
      'Subject: quirks\r\n\r\nbody\r\n.',
      'LHLO client.example.org',
      'MAIL FROM:<s@example.org>',
      'QUIT',
    ])
    expect(replies.slice(2)).toEqual([
      ['503 5.0.0 Syntax error'],
      ['250 2.1.0 Go ahead'],
      ['250 2.1.5 Go ahead'],
      ['354 Go ahead'],
      ['250 2.0.0 mail: delivered'],
      ['503 5.0.0 Syntax error'],
      ['503 5.0.0 Syntax error'],
      ['221 2.0.0 Bye'],
    ])
  })

  test('quirk: any MAIL parameter gets 553 5.1.8; the same MAIL without it is accepted', async () => {
    const replies = await lmtpExchange({port: mu.port}, [
      'LHLO client.example.org',
      'MAIL FROM:<s@example.org> BODY=8BITMIME',
      'MAIL FROM:<s@example.org> SIZE=100',
      'MAIL FROM:<s@example.org>',
      'QUIT',
    ])
    expect(replies.slice(2)).toEqual([['553 5.1.8 Address format error'], ['553 5.1.8 Address format error'], ['250 2.1.0 Go ahead'], ['221 2.0.0 Bye']])
  })

  test('HELO and EHLO before LHLO get 503 5.0.0; the session goes on', async () => {
    const replies = await lmtpExchange({port: mu.port}, ['HELO client.example.org', 'EHLO client.example.org', 'LHLO client.example.org', 'QUIT'])
    expect(replies.slice(1, 3)).toEqual([['503 5.0.0 Syntax error'], ['503 5.0.0 Syntax error']])
    expect(replies[3]!.at(-1)).toBe('250 HELP')
  })

  test('the Unix socket delivers too', async () => {
    const before = await mu.countMessages('mail')
    const replies = await lmtpExchange({socketPath: mu.socketPath}, [
      'LHLO client.example.org',
      'MAIL FROM:<s@example.org>',
      'RCPT TO:<mail@example.com>',
      'DATA',
      'Subject: over the socket\r\n\r\nbody\r\n.',
      'QUIT',
    ])
    expect(replies[5]).toEqual(['250 2.0.0 mail: delivered'])
    expect(await mu.countMessages('mail')).toBe(before + 1)
  })

  test('stop() leaves no process and no dir; /var/mail was not touched', async () => {
    const {pid, root} = mu
    await mu.stop()
    expect(isAlive(pid)).toBe(false)
    expect(groupMembers(pid)).toEqual([])
    if (process.env.LMTP_PEERS_KEEP !== '1') expect(existsSync(root)).toBe(false)
    expect(systemMailboxes(mu.users)).toEqual(systemBefore)
  })
})
