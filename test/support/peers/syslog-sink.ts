/**
 * A private syslog socket for peers that log only through syslog(3) (Cyrus). glibc's syslog() first tries a
 * datagram socket at /dev/log and, when the socket there is a stream socket (EPROTOTYPE), uses a stream and ends
 * each message with a NUL byte; Node has no Unix datagram sockets, so this is a stream listener. The peer sees
 * it as /dev/log inside a private mount namespace (see private-dev.sh); nothing on the host changes.
 */
import {chmod, rm} from 'node:fs/promises'
import {createServer, type Socket} from 'node:net'

/** A running syslog listener and what it received. */
export interface SyslogSink {
  /** The socket path to make the peer's /dev/log. */
  path: string
  /** Every message so far, in arrival order (`<PRI>timestamp tag[pid]: text`). */
  messages(): string[]
  /** Closes the listener and every connection. */
  close(): Promise<void>
}

/** Listens on `path` (mode 0666: the peer logs as its own user) until closed. */
export async function startSyslogSink(path: string): Promise<SyslogSink> {
  const received: string[] = []
  const connections = new Set<Socket>()
  const server = createServer((socket) => {
    connections.add(socket)
    let pending = ''
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      pending += chunk
      const parts = pending.split(/\0|\n/)
      pending = parts.pop() ?? ''
      received.push(...parts.filter((p) => p !== ''))
    })
    socket.on('close', () => {
      connections.delete(socket)
      if (pending) received.push(pending)
    })
    socket.on('error', () => {})
  })
  await rm(path, {force: true})
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(path, () => resolve())
  })
  await chmod(path, 0o666)
  return {
    path,
    messages: () => [...received],
    async close() {
      for (const socket of connections) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
