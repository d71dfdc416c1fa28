/**
 * A scripted hostile LMTP server for client tests: each connection runs a script that reads command lines and
 * writes whatever it wants (partial replies, garbage, floods, drips, early replies, sudden closes). It keeps no
 * protocol state of its own; the script decides everything.
 */
import net from 'node:net'

/** What a script can do on its connection. */
export interface HostileIo {
  socket: net.Socket
  /** Resolves with the next command line (without CRLF); rejects when the client closed. */
  line(): Promise<string>
  /** Reads body bytes up to and including CRLF.CRLF (DATA) and returns them. */
  dataBody(): Promise<Buffer>
  /** Reads exactly n octets (BDAT). */
  bytes(n: number): Promise<Buffer>
  write(text: string | Buffer): boolean
  /** Writes and waits until the kernel took it (or the client went away). */
  writeAll(text: string | Buffer): Promise<void>
  /** Resolves when the client closed the connection. */
  closed: Promise<void>
}

/** The usual multi-line LHLO reply (PIPELINING, ENHANCEDSTATUSCODES, CHUNKING, 8BITMIME). */
export const LHLO_OK = '250-hostile.test\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 CHUNKING\r\n'

/** A running hostile server. */
export interface HostileServer {
  port: number
  /** Octets written to clients in total (to show a flood was cut short). */
  bytesWritten(): number
  close(): Promise<void>
}

/** Starts a server on 127.0.0.1 (port 0) that runs `script` for every connection. */
export async function startHostileServer(script: (io: HostileIo) => Promise<void>): Promise<HostileServer> {
  const sockets = new Set<net.Socket>()
  let written = 0
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    let buf = Buffer.alloc(0)
    let wake: (() => void) | undefined
    let ended = false
    const closed = new Promise<void>((resolve) => {
      socket.once('close', () => {
        ended = true
        sockets.delete(socket)
        wake?.()
        resolve()
      })
    })
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      wake?.()
    })
    const waitMore = () =>
      new Promise<void>((resolve, reject) => {
        if (ended) return reject(new Error('client closed'))
        wake = () => {
          wake = undefined
          resolve()
        }
      })
    const take = async (until: (b: Buffer) => number): Promise<Buffer> => {
      for (;;) {
        const end = until(buf)
        if (end >= 0) {
          const out = buf.subarray(0, end)
          buf = buf.subarray(end)
          return out
        }
        await waitMore()
      }
    }
    const io: HostileIo = {
      socket,
      line: async () => {
        const l = await take((b) => {
          const k = b.indexOf('\r\n')
          return k < 0 ? -1 : k + 2
        })
        return l.subarray(0, l.length - 2).toString('latin1')
      },
      dataBody: () =>
        take((b) => {
          if (b.subarray(0, 3).toString() === '.\r\n') return 3
          const k = b.indexOf('\r\n.\r\n')
          return k < 0 ? -1 : k + 5
        }),
      bytes: (n) => take((b) => (b.length >= n ? n : -1)),
      write: (t) => {
        if (socket.destroyed) return false
        written += Buffer.byteLength(t)
        return socket.write(t)
      },
      writeAll: (t) =>
        new Promise<void>((resolve) => {
          if (socket.destroyed) return resolve()
          written += Buffer.byteLength(t)
          socket.write(t, () => resolve())
          socket.once('close', () => resolve())
        }),
      closed,
    }
    script(io).catch(() => {})
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  return {
    port: (server.address() as net.AddressInfo).port,
    bytesWritten: () => written,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** Plays a normal session up to the end of the envelope: greeting, LHLO, MAIL, `rcpts` RCPTs (all accepted). */
export async function normalEnvelope(io: HostileIo, rcpts: number): Promise<void> {
  io.write('220 hostile.test LMTP\r\n')
  await io.line()
  io.write(LHLO_OK)
  await io.line()
  io.write('250 2.1.0 ok\r\n')
  for (let i = 0; i < rcpts; i++) {
    await io.line()
    io.write('250 2.1.5 ok\r\n')
  }
}
