/**
 * A small LMTP-ish server with knobs for the misbehaviour a probe must catch (accepting HELO, advertising DSN,
 * enhanced codes of the wrong class, one reply after DATA, closing on an unknown command). Unlike the scripted
 * fake server it keeps real session state, because a probe opens many connections with different dialogues.
 */
import net from 'node:net'

/** What to get wrong. */
export interface FakeLmtpOptions {
  /** The greeting line (default `220 fake.test LMTP ready`). */
  greeting?: string
  /** LHLO keywords (default PIPELINING, ENHANCEDSTATUSCODES, 8BITMIME). */
  capabilities?: string[]
  /** Answer HELO with 250. */
  acceptHelo?: boolean
  /** Answer EHLO with 250. */
  acceptEhlo?: boolean
  /** Answer NOOP with `250 5.0.0 ok` (enhanced code of the wrong class). */
  mismatchNoop?: boolean
  /** Leave enhanced codes off RSET replies. */
  bareRset?: boolean
  /** Accept MAIL before LHLO. */
  mailBeforeLhlo?: boolean
  /** Answer DATA with no recipient with 554 instead of 503. */
  dataNoRcpt554?: boolean
  /** Close the connection on an unknown command. */
  closeOnUnknown?: boolean
  /** One reply after the body whatever the number of recipients (aiosmtpd's bug). */
  oneReplyAfterData?: boolean
  /** End LHLO with `Ok SESSIONID=<n>`, n changing per transaction (Cyrus lmtpd). */
  sessionIdInLhlo?: boolean
  /** One transaction per session: LHLO, MAIL after a body and NOOP get `503 5.0.0` (GNU Mailutils lmtpd). */
  mailutils?: boolean
  /** End the data at a bare-LF dot line too (open to SMTP smuggling, as Cyrus 3.6.1 and Dovecot 2.3.19). */
  smuggling?: boolean
  /** MAIL gets `430 Authentication required` until AUTH PLAIN with this user and password (Cyrus lmtpd without -a). */
  auth?: {user: string; password: string}
  /** Unknown user: recipients with this local part get Cyrus's three-line 550 with 5.1.1 on the last line only. */
  unknownUser?: string
  /** Speak SMTP: an ESMTP greeting, LHLO refused with 502, EHLO answered 250 (Postfix smtpd). */
  smtp?: boolean
}

/** A running fake server. */
export interface FakeLmtp {
  port: number
  target: string
  /** Every command line received, across connections. */
  lines: string[]
  close(): Promise<void>
}

/** Starts the fake server on 127.0.0.1, port 0. */
export async function startFakeLmtp(options: FakeLmtpOptions = {}): Promise<FakeLmtp> {
  const lines: string[] = []
  const sockets = new Set<net.Socket>()
  const caps = options.capabilities ?? ['PIPELINING', 'ENHANCEDSTATUSCODES', '8BITMIME']
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let buf = ''
    let lhlo = false
    let mail = false
    let rcpts = 0
    let inData = false
    let transactions = 0
    let authenticated = false
    const send = (...out: string[]): void => {
      socket.write(out.map((l) => `${l}\r\n`).join(''))
    }
    send(options.greeting ?? (options.smtp ? '220 fake.test ESMTP Postfix' : '220 fake.test LMTP ready'))
    const ends = options.smuggling ? ['\r\n.\r\n', '\n.\n', '\r\n.\n', '\n.\r\n'] : ['\r\n.\r\n']
    socket.on('data', (chunk) => {
      buf += chunk.toString('latin1')
      for (;;) {
        if (inData) {
          const found = ends.map((e) => ({at: buf.indexOf(e), len: e.length})).filter((e) => e.at >= 0)
          if (found.length === 0) return
          const first = found.reduce((a, b) => (b.at < a.at ? b : a))
          buf = buf.slice(first.at + first.len)
          inData = false
          transactions++
          const n = options.oneReplyAfterData ? 1 : rcpts
          for (let i = 0; i < n; i++) send('250 2.0.0 delivered')
          mail = false
          rcpts = 0
          continue
        }
        const eol = buf.indexOf('\r\n')
        if (eol < 0) return
        const line = buf.slice(0, eol)
        buf = buf.slice(eol + 2)
        lines.push(line)
        const verb = line.split(' ', 1)[0]!.toUpperCase()
        if (options.mailutils && transactions > 0 && (verb === 'LHLO' || verb === 'MAIL')) {
          send('503 5.0.0 Syntax error')
          continue
        }
        switch (verb) {
          case 'LHLO': {
            if (options.smtp) {
              send('502 5.5.2 Error: command not recognized')
              break
            }
            lhlo = true
            mail = false
            rcpts = 0
            const tail = options.sessionIdInLhlo ? [`Ok SESSIONID=<fake-${transactions}>`] : []
            const authCap = options.auth ? ['AUTH PLAIN LOGIN'] : []
            send(...['fake.test', ...caps, ...authCap, ...tail].map((l, i, all) => `250${i === all.length - 1 ? ' ' : '-'}${l}`))
            break
          }
          case 'AUTH': {
            const given = Buffer.from(line.split(' ')[2] ?? '', 'base64').toString('utf8').split('\0')
            authenticated = options.auth !== undefined && given[1] === options.auth.user && given[2] === options.auth.password
            send(authenticated ? '235 2.7.0 ok' : '535 5.7.8 bad credentials')
            break
          }
          case 'HELO':
            send(options.acceptHelo ? '250 fake.test' : '500 5.5.1 use LHLO')
            break
          case 'EHLO':
            send(options.acceptEhlo || options.smtp ? '250 fake.test' : '500 5.5.1 use LHLO')
            break
          case 'MAIL':
            if (options.auth && !authenticated) send('430 Authentication required')
            else if (!lhlo && !options.mailBeforeLhlo) send('503 5.5.1 send LHLO first')
            else if (mail) send('503 5.5.1 nested MAIL')
            else {
              mail = true
              send('250 2.1.0 ok')
            }
            break
          case 'RCPT':
            if (!mail) send('503 5.5.1 send MAIL first')
            else if (options.unknownUser && line.includes(`<${options.unknownUser}@`)) {
              send('550-Mailbox unknown.  Either there is no mailbox associated with this', '550-name or you do not have authorization to see it.', '550 5.1.1 User unknown')
            } else {
              rcpts++
              send('250 2.1.5 ok')
            }
            break
          case 'DATA':
            if (rcpts === 0) send(options.dataNoRcpt554 ? '554 5.5.1 no valid recipients' : '503 5.5.1 no valid recipients')
            else {
              inData = true
              send('354 go ahead')
            }
            break
          case 'RSET':
            mail = false
            rcpts = 0
            send(options.bareRset ? '250 ok' : '250 2.0.0 ok')
            break
          case 'NOOP':
            send(options.mailutils ? '503 5.0.0 Syntax error' : options.mismatchNoop ? '250 5.0.0 ok' : '250 2.0.0 ok')
            break
          case 'QUIT':
            send('221 2.0.0 bye')
            socket.end()
            return
          case 'STARTTLS':
            send('454 4.7.0 TLS not available')
            break
          default:
            if (options.closeOnUnknown) {
              send('421 4.7.0 goodbye')
              socket.end()
              return
            }
            send('500 5.5.2 unknown command')
        }
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  return {
    port,
    target: `127.0.0.1:${port}`,
    lines,
    async close() {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
