/**
 * Proves the Cyrus harness (test/support/peers/cyrus.ts) and pins down, over raw sockets (none of the project's
 * code), the facts about Cyrus IMAP 3.6's lmtpd that our clients rely on. A changed Debian package fails here
 * first, with the reply that changed.
 */
import {existsSync} from 'node:fs'
import {afterAll, beforeAll, expect, test} from 'vitest'
import {type Cyrus, describePeers, groupMembers, isAlive, LineConnection, lmtpExchange, startCyrus} from '../support/peers.js'

const ENHANCED = /\b[245]\.\d{1,3}\.\d{1,3}\b/
const SESSION_ID = /^250 Ok SESSIONID=<[^>]+>$/

let serial = 0
/** A small message with a Message-ID of its own, dot-terminated (ready to send after DATA's 354). */
function message(subject: string, ...bodyLines: string[]): string {
  serial += 1
  return [`Message-ID: <cyrus-harness-${process.pid}-${serial}@example.org>`, `Subject: ${subject}`, '', ...bodyLines, '.'].join('\r\n')
}

describePeers('Cyrus IMAP lmtpd, private instance', ['cyrus'], () => {
  let cyrus: Cyrus
  const devLogBefore = existsSync('/dev/log')
  beforeAll(async () => {
    cyrus = await startCyrus()
  })
  afterAll(async () => {
    await cyrus?.stop()
  })

  test('greets as Cyrus LMTP; LHLO advertises its extensions and ends with a per-transaction session id', async () => {
    const conn = await LineConnection.open({port: cyrus.lmtpPort})
    try {
      expect((await conn.readReply())[0]).toMatch(/^220 \S+ Cyrus LMTP 3\.6\./)
      const lhlo = await conn.command('LHLO client.example.org')
      expect(lhlo.slice(1, -1)).toEqual(
        expect.arrayContaining(['250-8BITMIME', '250-ENHANCEDSTATUSCODES', '250-PIPELINING', '250-SIZE', '250-IGNOREQUOTA']),
      )
      expect(lhlo.at(-1)).toMatch(SESSION_ID)
      // One transaction, then LHLO again: same capabilities, a different session id on the last line.
      expect(await conn.command('MAIL FROM:<s@example.org>')).toEqual(['250 2.1.0 ok'])
      expect(await conn.command('RCPT TO:<alice@example.com>')).toEqual(['250 2.1.5 ok'])
      expect((await conn.command('DATA'))[0]).toMatch(/^354/)
      conn.write(`${message('one')}\r\n`)
      expect((await conn.readReply())[0]).toMatch(/^250 2\.1\.5 Success SESSIONID=<[^>]+>$/)
      const again = await conn.command('LHLO client.example.org')
      expect(again.slice(0, -1)).toEqual(lhlo.slice(0, -1))
      expect(again.at(-1)).toMatch(SESSION_ID)
      expect(again.at(-1)).not.toBe(lhlo.at(-1))
      expect(await conn.command('QUIT')).toEqual(['221 2.0.0 bye'])
    } finally {
      conn.close()
    }
  })

  test('delivers to every known user, one reply each; unknown user is a 3-line 550 with 5.1.1 on the last line only', async () => {
    const before = {alice: await cyrus.countMessages('alice'), bob: await cyrus.countMessages('bob')}
    const conn = await LineConnection.open({port: cyrus.lmtpPort})
    try {
      await conn.readReply()
      await conn.command('LHLO client.example.org')
      // Pipelined envelope, as our clients send it.
      conn.write(['MAIL FROM:<s@example.org>', 'RCPT TO:<alice@example.com>', 'RCPT TO:<nobody@example.com>', 'RCPT TO:<bob@example.com>', 'DATA', ''].join('\r\n'))
      const [mail, alice, nobody, bob, data] = await conn.readReplies(5)
      expect([mail, alice, bob]).toEqual([['250 2.1.0 ok'], ['250 2.1.5 ok'], ['250 2.1.5 ok']])
      expect(nobody).toHaveLength(3)
      expect(nobody!.every((line) => line.startsWith('550'))).toBe(true)
      expect(nobody!.slice(0, -1).some((line) => ENHANCED.test(line))).toBe(false)
      expect(nobody!.at(-1)).toBe('550 5.1.1 User unknown')
      expect(data![0]).toMatch(/^354/)
      conn.write(`${message('two recipients', 'hello')}\r\n`)
      const after = await conn.readReplies(2)
      for (const reply of after) expect(reply).toEqual([expect.stringMatching(/^250 2\.1\.5 Success SESSIONID=<[^>]+>$/)])
      // Exactly one reply per accepted recipient: the next reply is QUIT's.
      expect(await conn.command('QUIT')).toEqual(['221 2.0.0 bye'])
    } finally {
      conn.close()
    }
    expect(await cyrus.countMessages('alice')).toBe(before.alice + 1)
    expect(await cyrus.countMessages('bob')).toBe(before.bob + 1)
    expect((await cyrus.messages('bob')).at(-1)).toContain('Subject: two recipients')
  })

  test('a mailbox already over its quota is refused at RCPT with 452 4.2.2', async () => {
    const replies = await lmtpExchange({port: cyrus.lmtpPort}, ['LHLO client.example.org', 'MAIL FROM:<s@example.org>', 'RCPT TO:<small@example.com>', 'QUIT'])
    expect(replies[3]).toEqual([expect.stringMatching(/^452 4\.2\.2 Over quota SESSIONID=<[^>]+>$/)])
  })

  test('the Unix socket is preauthorised and delivers', async () => {
    const before = await cyrus.countMessages('carol')
    const replies = await lmtpExchange({socketPath: cyrus.socketPath}, [
      'LHLO client.example.org',
      'MAIL FROM:<s@example.org>',
      'RCPT TO:<carol@example.com>',
      'DATA',
      message('over the socket', '..a line that starts with a dot'),
      'QUIT',
    ])
    expect(replies[5]![0]).toMatch(/^250 2\.1\.5 Success/)
    expect(await cyrus.countMessages('carol')).toBe(before + 1)
    expect((await cyrus.messages('carol')).at(-1)).toContain('\r\n.a line that starts with a dot\r\n')
  })

  test('the port without -a requires LMTP AUTH: MAIL gets 430 until AUTH PLAIN succeeds', async () => {
    const plain = (password: string) => Buffer.from(`\0${cyrus.authUser}\0${password}`).toString('base64')
    const replies = await lmtpExchange({port: cyrus.authPort}, [
      'LHLO client.example.org',
      'MAIL FROM:<s@example.org>',
      'RCPT TO:<alice@example.com>',
      `AUTH PLAIN ${plain(`${cyrus.authPassword}x`)}`,
      `AUTH PLAIN ${plain(cyrus.authPassword)}`,
      'MAIL FROM:<s@example.org>',
      'RCPT TO:<alice@example.com>',
      'QUIT',
    ])
    const [, lhlo, mail, rcpt, badAuth, auth, mailAgain, rcptAgain] = replies
    expect(lhlo).toContain('250-AUTH PLAIN LOGIN')
    expect(mail).toEqual(['430 Authentication required'])
    expect(rcpt).toEqual(['503 5.5.1 Need MAIL command'])
    expect(badAuth).toEqual(['501 5.5.4 undefined error!'])
    expect(auth).toEqual(['235 Authenticated!'])
    expect(mailAgain).toEqual(['250 2.1.0 ok'])
    expect(rcptAgain).toEqual(['250 2.1.5 ok'])
  })

  test('the preauthorised port offers only AUTH EXTERNAL', async () => {
    const [, lhlo] = await lmtpExchange({port: cyrus.lmtpPort}, ['LHLO client.example.org', 'QUIT'])
    expect(lhlo).toContain('250-AUTH EXTERNAL')
  })

  test('duplicate suppression is off in the harness: the same Message-ID is stored twice', async () => {
    const before = await cyrus.countMessages('alice')
    const same = message('twice')
    for (let i = 0; i < 2; i++) {
      const replies = await lmtpExchange({port: cyrus.lmtpPort}, ['LHLO c', 'MAIL FROM:<s@example.org>', 'RCPT TO:<alice@example.com>', 'DATA', same, 'QUIT'])
      expect(replies[5]![0]).toMatch(/^250 2\.1\.5/)
    }
    expect(await cyrus.countMessages('alice')).toBe(before + 2)
  })

  test('its syslog reaches the harness; stop() leaves no process, no dir, and the host /dev untouched', async () => {
    expect(cyrus.log()).toMatch(/cyrus\/lmtp\[\d+\]: Delivered: <cyrus-harness-/)
    const {pid, dir} = cyrus
    await cyrus.stop()
    expect(isAlive(pid)).toBe(false)
    expect(groupMembers(pid)).toEqual([])
    if (process.env.LMTP_PEERS_KEEP !== '1') expect(existsSync(dir)).toBe(false)
    expect(existsSync('/dev/log')).toBe(devLogBefore)
  })
})
