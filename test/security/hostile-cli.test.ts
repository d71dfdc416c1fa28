/**
 * `lmtp send` and `lmtp replay` (the built CLI, as a user runs them) against the scripted hostile server:
 * correct per-recipient outcomes and exit codes, a clear message, and no hang past `--timeout`.
 */
import {spawn} from 'node:child_process'
import path from 'node:path'
import {afterEach, describe, expect, test} from 'vitest'
import {EXIT} from '../../src/cli/exit-codes.js'
import {cliBuilt, REPO_ROOT} from '../reliability/serve-process.js'
import {type HostileIo, type HostileServer, LHLO_OK, normalEnvelope, startHostileServer} from './hostile-server.js'

let srv: HostileServer | undefined
afterEach(async () => {
  await srv?.close()
  srv = undefined
})

/** Runs the CLI; resolves with exit code, output and wall time (killed after `limitMs`). */
function run(args: string[], limitMs = 30_000): Promise<{code: number | null; out: string; ms: number}> {
  const t0 = Date.now()
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin', 'run.js'), ...args], {
    cwd: REPO_ROOT,
    env: {...process.env, NO_COLOR: '1', OCLIF_SKIP_NEW_VERSION_CHECK: 'true'},
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  child.stdout.on('data', (d) => {
    out += d
  })
  child.stderr.on('data', (d) => {
    out += d
  })
  const timer = setTimeout(() => child.kill('SIGKILL'), limitMs)
  return new Promise((resolve) => {
    child.once('exit', (code) => {
      clearTimeout(timer)
      resolve({code, out, ms: Date.now() - t0})
    })
  })
}

async function serve(script: (io: HostileIo) => Promise<void>): Promise<string> {
  srv = await startHostileServer(script)
  return `127.0.0.1:${srv.port}`
}

const closeAfterOne = async (io: HostileIo): Promise<void> => {
  await normalEnvelope(io, 2)
  await io.line()
  io.write('354 go\r\n')
  await io.dataBody()
  await io.writeAll('250 2.0.0 <a@x.test> delivered\r\n')
  io.socket.destroy()
}

describe.skipIf(!cliBuilt())('lmtp send against a hostile server', () => {
  test('closed after 1 of 2 replies: one delivered, one deferred, exit 75', async () => {
    const server = await serve(closeAfterOne)
    const r = await run(['send', '--server', server, '--to', 'a@x.test', '--to', 'b@x.test', '--timeout', '3', '--json'])
    expect(r.code, r.out).toBe(EXIT.tempFail)
    const report = JSON.parse(r.out.slice(r.out.indexOf('{')))
    expect(report.recipients.map((x: {outcome: string}) => x.outcome)).toEqual(['delivered', 'deferred'])
  })

  test.each([
    ['a greeting that never comes', async (io: HostileIo) => void (await io.closed), /greeting/],
    ['a 10 MB reply line', async (io: HostileIo) => {
      io.write('220 h\r\n')
      await io.line()
      const chunk = Buffer.alloc(64 * 1024, 0x41)
      await io.writeAll('250-')
      for (let sent = 0; sent < 10 * 1024 * 1024 && !io.socket.destroyed; sent += chunk.length) await io.writeAll(chunk)
    }, /longer than/],
    ['a reply before LHLO', async (io: HostileIo) => {
      io.write('220 h\r\n250 2.0.0 early\r\n')
      for (;;) {
        await io.line()
        io.write(LHLO_OK)
      }
    }, /out of turn/],
    ['a greeting dripped one byte per second', async (io: HostileIo) => {
      for (const ch of '220 slow\r\n') {
        if (io.socket.destroyed) return
        io.write(ch)
        await new Promise((r) => setTimeout(r, 1000))
      }
    }, /greeting/],
  ])('%s: a clear error, non-zero exit, no hang past --timeout', async (_name, script, message) => {
    const server = await serve(script)
    const r = await run(['send', '--server', server, '--to', 'a@x.test', '--timeout', '2'])
    expect(r.code).not.toBe(0)
    expect(r.code).not.toBeNull()
    expect(r.out).toMatch(message)
    expect(r.out).not.toMatch(/delivered/)
    expect(r.ms).toBeLessThan(15_000)
  })
})

describe.skipIf(!cliBuilt())('lmtp replay against a hostile server', () => {
  test('closed after 1 of 2 replies on every session: deliveries and deferrals counted, no hang', async () => {
    const server = await serve(closeAfterOne)
    const r = await run([
      'replay',
      '--server', server,
      '--generate', '1K',
      '--count', '3',
      '--to', 'a@x.test,b@x.test',
      '--timeout', '2s',
      '--reconnect-for', '0s',
      '--no-progress',
      '--json',
    ], 60_000)
    expect(r.code).not.toBeNull()
    expect(r.ms).toBeLessThan(45_000)
    const json = JSON.parse(r.out.slice(r.out.indexOf('{')))
    const text = JSON.stringify(json)
    // Every message had one recipient delivered and one deferred: nothing is counted as delivered twice.
    expect(text).toMatch(/"delivered":3\b/)
    expect(text).toMatch(/"deferred":3\b/)
  })
})
