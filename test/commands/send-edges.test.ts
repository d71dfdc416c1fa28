/**
 * lmtp send's edges, run as a user would (the real bin/run.js in a child process): Ctrl-C after the message was
 * sent says that every recipient's outcome is unknown and exits 130; Ctrl-C before says nothing was delivered;
 * --bdat to a server without CHUNKING is a capability problem naming CHUNKING; `-h` is help; an unknown command
 * exits 64 and points to `lmtp --help`.
 */
import {spawn} from 'node:child_process'
import net from 'node:net'
import {join} from 'node:path'
import {afterEach, describe, expect, test} from 'vitest'
import {ROOT, runCli} from '../client/run-cli.js'
import {type FakeServer, greetAndLhlo, parseScript, startFakeServer} from '../support/fake-server.js'

let server: net.Server | undefined
let fake: FakeServer | undefined
afterEach(async () => {
  await fake?.close()
  fake = undefined
  if (server) await new Promise<void>((resolve) => server!.close(() => resolve()))
  server = undefined
})

/**
 * A server that answers up to DATA, then resolves `reached` once it has read `until` (the end of data, or the
 * MAIL line) and stays silent: the moment to press Ctrl-C, signalled by the server itself, not by a sleep.
 */
async function silentAfter(until: string): Promise<{port: number; reached: Promise<void>}> {
  let hit: () => void = () => {}
  const reached = new Promise<void>((r) => (hit = r))
  server = net.createServer((s) => {
    s.on('error', () => {})
    let seen = ''
    s.write('220 t LMTP\r\n')
    s.on('data', (d) => {
      seen += d.toString('latin1')
      if (seen.includes(until)) {
        hit()
        return
      }
      const lines = seen.split('\r\n')
      seen = lines.pop() ?? ''
      for (const l of lines) {
        if (l.startsWith('LHLO')) s.write('250-t\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n')
        else if (l.startsWith('MAIL')) s.write('250 2.1.0 ok\r\n')
        else if (l.startsWith('RCPT')) s.write('250 2.1.5 ok\r\n')
        else if (l === 'DATA') s.write('354 go\r\n')
      }
    })
  })
  server.listen(0, '127.0.0.1')
  await new Promise<void>((r) => server!.once('listening', () => r()))
  return {port: (server.address() as net.AddressInfo).port, reached}
}

async function interrupt(port: number, reached: Promise<void>): Promise<{code: number | null; stderr: string}> {
  const child = spawn(process.execPath, [join(ROOT, 'bin/run.js'), 'send', '--server', `127.0.0.1:${port}`, '--to', 'a@example.com,b@example.com'], {
    cwd: ROOT,
    env: {...process.env, NO_COLOR: '1'},
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr.on('data', (d) => (stderr += d))
  child.stdout.resume()
  await reached
  child.kill('SIGINT')
  const code = await new Promise<number | null>((r) => child.once('close', (c) => r(c)))
  return {code, stderr}
}

describe('Ctrl-C', () => {
  test('after the end of the message: each recipient\'s outcome is unknown, exit 130', async () => {
    const {port, reached} = await silentAfter('\r\n.\r\n')
    const {code, stderr} = await interrupt(port, reached)
    expect(code).toBe(130)
    expect(stderr).toMatch(/the server may have delivered/)
    expect(stderr).toMatch(/1 {2}a@example\.com {2}outcome unknown/)
    expect(stderr).toMatch(/2 {2}b@example\.com {2}outcome unknown/)
  })

  test('before the end of the message: nothing was delivered, exit 130', async () => {
    const {port, reached} = await silentAfter('MAIL FROM')
    const {code, stderr} = await interrupt(port, reached)
    expect(code).toBe(130)
    expect(stderr).toMatch(/interrupted before the end of the message was sent: nothing was delivered/)
  })
})

describe('capabilities and the command line', () => {
  test('--bdat to a server without CHUNKING: exit 69 naming CHUNKING and "drop --bdat"; no MAIL sent', async () => {
    fake = await startFakeServer([...greetAndLhlo(['PIPELINING', 'ENHANCEDSTATUSCODES']), ...parseScript('C: QUIT\nS: 221 bye')])
    const run = await runCli(['send', '--server', fake.target, '--to', 'a@example.com', '--bdat'])
    expect(run.code).toBe(69)
    expect(run.stderr).toMatch(/does not offer CHUNKING.*drop --bdat/)
    expect(run.stderr).not.toMatch(/rejected/)
    const session = await fake.session(0)
    expect(session.lines.filter((l) => l.startsWith('MAIL'))).toEqual([])
  })

  test('-h is --help, for the CLI and for a command', async () => {
    const top = await runCli(['-h'])
    expect(top.code).toBe(0)
    expect(top.stdout).toMatch(/COMMANDS/)
    const send = await runCli(['send', '-h'])
    expect(send.code).toBe(0)
    expect(send.stdout).toMatch(/\$ lmtp send \[FILE\]/)
  })

  test('an unknown command: exit 64 and a pointer to lmtp --help', async () => {
    const run = await runCli(['frobnicate'])
    expect(run.code).toBe(64)
    expect(run.stderr).toMatch(/there is no command "frobnicate".*see lmtp --help/)
  })

  test("'-' on a terminal says it reads standard input; from a pipe it says nothing", async () => {
    // util-linux's script(1) gives the command a real terminal; its own stdin (empty) ends the message at once.
    // CI installs util-linux (.ci/install-peers); a machine without script(1) fails here rather than skipping.
    const cmd = `${process.execPath} ${join(ROOT, 'bin/run.js')} send - --server 127.0.0.1:9 --to a@example.com --json`
    const onTty = await new Promise<string>((resolve, reject) => {
      const child = spawn('script', ['-qfec', cmd, '/dev/null'], {cwd: ROOT, env: {...process.env, NO_COLOR: '1'}, stdio: ['pipe', 'pipe', 'pipe']})
      let out = ''
      child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')))
      child.on('error', reject)
      child.on('close', () => resolve(out))
      child.stdin.end()
    })
    expect(onTty).toContain('lmtp send: reading the message from standard input (end it with Ctrl-D on a line of its own)')
    const piped = await runCli(['send', '-', '--server', '127.0.0.1:9', '--to', 'a@example.com', '--json'], {input: ''})
    expect(`${piped.stdout}${piped.stderr}`).not.toContain('reading the message from standard input')
  })
})
