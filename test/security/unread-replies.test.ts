/**
 * A client that pipelines commands and never reads its replies must not grow the server: once the replies it
 * does not read fill the socket, the server stops reading from it (backpressure on the write side), so the
 * bytes it reads and its memory stay bounded whatever the client sends.
 *
 * The client is a python3 child with tiny SO_RCVBUF/SO_SNDBUF (Node cannot set them) that tries to send 64 MB
 * of `NOOP\r\n` with blocking writes and never reads. The signal that the server stopped reading is the
 * server's own idle timer (`--idle-timeout 1`): a server that keeps reading is never idle, so it reads all
 * 64 MB; one that stopped reading goes silent, times the session out and closes it. The figures asserted
 * are what the server logged it read (bytesIn) and its peak RSS; nothing is timed.
 */
import {spawn} from 'node:child_process'
import {readFileSync} from 'node:fs'
import {mkdtemp, rm} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, expect, test} from 'vitest'
import {type ServeProcess, cliBuilt, killAndWait, spawnServe} from '../reliability/serve-process.js'

const MB = 1024 * 1024
const ATTEMPT = 64 * MB
let dir = ''
let serve: ServeProcess | undefined

function vm(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return Number(m![1]) * 1024
}

const CLIENT = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
s.connect(sys.argv[1])
block = b"NOOP\\r\\n" * 10923
total = int(sys.argv[2])
sent = 0
try:
    while sent < total:
        sent += s.send(block)
except OSError as e:
    print("error", e.errno, flush=True)
print("sent", sent, flush=True)
`

beforeAll(async () => {
  if (!cliBuilt()) throw new Error('dist/ is missing: run `npm run build` first (npm test does)')
  dir = await mkdtemp(path.join(os.tmpdir(), 'lmtp-unread-'))
  serve = await spawnServe(['--no-events', '--maildir', path.join(dir, 'Maildir'), '--listen', `unix:${path.join(dir, 'lmtp.sock')}`, '--idle-timeout', '1'])
})

afterAll(async () => {
  if (serve) await killAndWait(serve, 'SIGTERM')
  if (dir) await rm(dir, {recursive: true, force: true})
})

/** Resolves with the server's JSON log record of the session once it closed. */
function sessionRecord(p: ServeProcess): Promise<{bytesIn: number; bytesOut: number; reason: string}> {
  return new Promise((resolve) => {
    const look = (): boolean => {
      const line = p.tail.find((l) => l.includes('"event":"session"'))
      if (!line) return false
      p.child.stdout!.off('data', look)
      resolve(JSON.parse(line))
      return true
    }
    if (!look()) p.child.stdout!.on('data', look)
  })
}

test('pipelined NOOPs never read: the server stops reading, bytes read and memory stay bounded', async () => {
  const pid = serve!.pid
  const rssBefore = vm(pid, 'VmRSS')
  const hwmBefore = vm(pid, 'VmHWM')
  const client = spawn('python3', ['-c', CLIENT, path.join(dir, 'lmtp.sock'), String(ATTEMPT)], {stdio: ['ignore', 'pipe', 'inherit']})
  let clientOut = ''
  client.stdout!.on('data', (d) => {
    clientOut += d
  })
  const clientDone = new Promise<void>((resolve) => client.once('exit', () => resolve()))
  const record = await sessionRecord(serve!)
  await clientDone
  const hwmAfter = vm(pid, 'VmHWM')
  const rssAfter = vm(pid, 'VmRSS')
  const sent = Number(/sent (\d+)/.exec(clientOut)?.[1] ?? Number.NaN)
  console.log(
    `[unread replies] client offered ${ATTEMPT / MB} MB, got ${(sent / MB).toFixed(1)} MB into the socket; server read ${(record.bytesIn / MB).toFixed(1)} MB, wrote ${(record.bytesOut / MB).toFixed(1)} MB (${record.reason}); serve RSS ${(rssBefore / MB).toFixed(1)} -> ${(rssAfter / MB).toFixed(1)} MB, peak ${(hwmBefore / MB).toFixed(1)} -> ${(hwmAfter / MB).toFixed(1)} MB`,
  )
  // The server stopped reading long before the client's 64 MB: it was idle, not drowned.
  expect(record.bytesIn).toBeLessThan(16 * MB)
  expect(sent).toBeLessThan(ATTEMPT)
  expect(hwmAfter - hwmBefore).toBeLessThan(48 * MB)
}, 120_000)
