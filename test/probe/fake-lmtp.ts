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
    const send = (...out: string[]): void => {
      socket.write(out.map((l) => `${l}\r\n`).join(''))
    }
    send(options.greeting ?? '220 fake.test LMTP ready')
    socket.on('data', (chunk) => {
      buf += chunk.toString('latin1')
      for (;;) {
        if (inData) {
          const end = buf.indexOf('\r\n.\r\n')
          if (end < 0) return
          buf = buf.slice(end + 5)
          inData = false
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
        switch (verb) {
          case 'LHLO':
            lhlo = true
            mail = false
            rcpts = 0
            send(...['fake.test', ...caps].map((l, i, all) => `250${i === all.length - 1 ? ' ' : '-'}${l}`))
            break
          case 'HELO':
            send(options.acceptHelo ? '250 fake.test' : '500 5.5.1 use LHLO')
            break
          case 'EHLO':
            send(options.acceptEhlo ? '250 fake.test' : '500 5.5.1 use LHLO')
            break
          case 'MAIL':
            if (!lhlo && !options.mailBeforeLhlo) send('503 5.5.1 send LHLO first')
            else if (mail) send('503 5.5.1 nested MAIL')
            else {
              mail = true
              send('250 2.1.0 ok')
            }
            break
          case 'RCPT':
            if (!mail) send('503 5.5.1 send MAIL first')
            else {
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
            send(options.mismatchNoop ? '250 5.0.0 ok' : '250 2.0.0 ok')
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
