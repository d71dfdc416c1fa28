/**
 * systemd without systemd as PID 1: the shipped units checked by `systemd-analyze verify`, socket activation by
 * Debian's real `systemd-socket-activate` (a Unix and a TCP socket adopted as listeners), and sd_notify messages
 * (READY=1, RELOADING=1 with MONOTONIC_USEC, READY=1 again, STOPPING=1) received by a real AF_UNIX datagram
 * socket (Python's), which also answers systemd-notify's BARRIER=1 the way systemd does (closing the fd).
 */
import {type ChildProcess, spawn, spawnSync} from 'node:child_process'
import {cpSync, mkdirSync, readFileSync, writeFileSync, chmodSync} from 'node:fs'
import path from 'node:path'
import {afterEach, beforeEach, expect, test} from 'vitest'
import {REPO_ROOT} from '../reliability/serve-process.js'
import {DEBIAN_PYTHON, describePeers} from '../support/peers/gate.js'
import {type TempDir, freePort, tempDir} from '../support/peers/proc.js'
import {LineWatch} from '../support/line-watch.js'
import {RawSession} from '../support/serve.js'

const UNITS = path.join(REPO_ROOT, 'contrib', 'systemd')

/** A datagram listener as systemd's notify socket: prints each message on one line (fields joined by `|`). */
const NOTIFY_LISTENER = `
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
while True:
    msg, fds, flags, addr = socket.recv_fds(s, 65536, 8)
    for fd in fds:
        os.close(fd)  # what systemd does with a BARRIER=1 fd: the sender then knows it was processed
    print(msg.decode().replace("\\n", "|"), flush=True)
`

let dir: TempDir
const children: ChildProcess[] = []
beforeEach(async () => {
  dir = await tempDir('lmtp-systemd')
})
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  await dir.cleanup()
})

function track(c: ChildProcess): ChildProcess {
  children.push(c)
  return c
}

/** Runs `systemd-analyze verify` on the units placed in a scratch root (so ExecStart's /usr/bin/lmtp exists there). */
function verifyUnits(unitDir: string): {code: number | null; output: string} {
  const root = path.join(dir.path, `root-${path.basename(unitDir)}`)
  mkdirSync(path.join(root, 'etc', 'systemd', 'system'), {recursive: true})
  mkdirSync(path.join(root, 'usr', 'bin'), {recursive: true})
  mkdirSync(path.join(root, 'bin'), {recursive: true})
  mkdirSync(path.join(root, 'lib', 'systemd'), {recursive: true})
  writeFileSync(path.join(root, 'usr', 'bin', 'lmtp'), '#!/bin/sh\n')
  chmodSync(path.join(root, 'usr', 'bin', 'lmtp'), 0o755)
  cpSync('/bin/kill', path.join(root, 'bin', 'kill'))
  // The stock units (sysinit.target, sockets.target ...) the shipped ones refer to.
  cpSync('/lib/systemd/system', path.join(root, 'lib', 'systemd', 'system'), {recursive: true})
  for (const unit of ['lmtp.service', 'lmtp.socket']) cpSync(path.join(unitDir, unit), path.join(root, 'etc', 'systemd', 'system', unit))
  const r = spawnSync('systemd-analyze', ['verify', `--root=${root}`, 'lmtp.service', 'lmtp.socket'], {encoding: 'utf8', timeout: 60_000})
  return {code: r.status, output: `${r.stdout}${r.stderr}`.trim()}
}

describePeers('systemd integration', ['systemd'], () => {
  test('systemd-analyze verify accepts the shipped units without a warning, and reports a broken copy', () => {
    const shipped = verifyUnits(UNITS)
    expect(shipped).toEqual({code: 0, output: ''})
    const broken = path.join(dir.path, 'broken')
    mkdirSync(broken)
    cpSync(path.join(UNITS, 'lmtp.socket'), path.join(broken, 'lmtp.socket'))
    writeFileSync(path.join(broken, 'lmtp.service'), readFileSync(path.join(UNITS, 'lmtp.service'), 'utf8').replace('NoNewPrivileges=yes', 'NoNewPrivileges=perhaps'))
    expect(verifyUnits(broken).output).toContain('Failed to parse boolean value')
  })

  test('the service unit has the hardening the README promises', () => {
    const unit = readFileSync(path.join(UNITS, 'lmtp.service'), 'utf8')
    for (const line of ['Type=notify', 'NotifyAccess=all', 'User=vmail', 'RuntimeDirectory=lmtp', 'ProtectSystem=strict', 'ReadWritePaths=/var/mail/vmail', 'NoNewPrivileges=yes', 'ExecReload=/bin/kill -HUP $MAINPID']) {
      expect(unit.split('\n')).toContain(line)
    }
  })

  test('socket activation by systemd-socket-activate, then READY, RELOADING + READY on SIGHUP, STOPPING on SIGTERM', async () => {
    const notifySocket = path.join(dir.path, 'notify.sock')
    const listener = track(spawn(DEBIAN_PYTHON, ['-c', NOTIFY_LISTENER, notifySocket], {stdio: ['ignore', 'pipe', 'inherit']}))
    const notes = new LineWatch(listener.stdout!)
    await notes.next((l) => l === 'bound')
    const unixSocket = path.join(dir.path, 'lmtp.sock')
    const port = await freePort()
    const maildir = path.join(dir.path, 'Maildir')
    const activate = track(
      spawn(
        'systemd-socket-activate',
        ['-l', unixSocket, '-l', `127.0.0.1:${port}`, '--fdname=lmtp:lmtp-tcp', '-E', `NOTIFY_SOCKET=${notifySocket}`, '-E', 'NO_COLOR=1',
          process.execPath, path.join(REPO_ROOT, 'bin', 'run.js'), 'serve', '--maildir', maildir, '--no-events', '--log-format', 'json'],
        {stdio: ['ignore', 'pipe', 'pipe'], env: {...process.env, OCLIF_SKIP_NEW_VERSION_CHECK: 'true'}},
      ),
    )
    const out = new LineWatch(activate.stdout!)
    const err = new LineWatch(activate.stderr!)
    await err.next((l) => l.startsWith(`Listening on 127.0.0.1:${port}`))
    // The first connection makes systemd-socket-activate start serve, which adopts both sockets (fds 3 and 4).
    const s = await RawSession.open(unixSocket)
    const [greeting] = await s.waitReplies(1, 60_000)
    expect(greeting!.code).toBe(220)
    const listening = JSON.parse(await out.next((l) => l.includes('"event":"listening"'))) as {listeners: string[]}
    expect(listening.listeners).toEqual(['unix:fd:3 (systemd lmtp)', `127.0.0.1:${port} (systemd lmtp-tcp)`])
    const ready = await notes.next((l) => l.includes('READY=1'))
    const mainPid = Number(/MAINPID=(\d+)/.exec(ready)![1])
    expect(readFileSync(`/proc/${mainPid}/cmdline`, 'utf8')).toContain('serve')
    // The TCP socket is served too: deliver one message through it.
    const tcp = await RawSession.open(port)
    tcp.write('LHLO t\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n')
    await tcp.waitReplies(5)
    tcp.write('Subject: activated\r\n\r\nhi\r\n.\r\nQUIT\r\n')
    const replies = await tcp.waitReplies(7)
    expect(replies.map((r) => r.code)).toEqual([220, 250, 250, 250, 354, 250, 221])
    // An inherited listener half-closes like a bound one: a client that ends its stream right after the final
    // dot still gets its reply before the server closes its side.
    const half = await RawSession.open(port)
    half.write('LHLO t\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n')
    await half.waitReplies(5)
    half.socket.end('Subject: half-closed\r\n\r\nhi\r\n.\r\n')
    await half.waitClosed()
    expect(half.replies.map((r) => r.code)).toEqual([220, 250, 250, 250, 354, 250])
    const seen = notes.lines.length
    process.kill(mainPid, 'SIGHUP')
    const reloading = await notes.next((l) => l.includes('RELOADING=1'), seen)
    expect(reloading).toMatch(/MONOTONIC_USEC=\d+/)
    const reloaded = await notes.next((l) => l.includes('READY=1') && l.includes('STATUS=reloaded'), seen)
    expect(notes.lines.indexOf(reloaded)).toBeGreaterThan(notes.lines.indexOf(reloading))
    // The session opened before the reload is still served.
    s.write('NOOP\r\n')
    expect((await s.waitReplies(2))[1]!.code).toBe(250)
    s.close()
    const exited = new Promise<number | null>((resolve) => activate.once('exit', (code) => resolve(code)))
    process.kill(mainPid, 'SIGTERM')
    expect(await notes.next((l) => l.includes('STOPPING=1'))).toContain(`MAINPID=${mainPid}`)
    expect(await exited).toBe(0)
    expect(out.lines.some((l) => l.includes('"event":"stopped"'))).toBe(true)
  })
})
