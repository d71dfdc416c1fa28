/**
 * A 100 MB message through a real `lmtp serve` process: delivered intact, and the server's peak memory does
 * not grow with the message (bodies stream to disk, never held whole).
 */
import {type ChildProcess, spawn} from 'node:child_process'
import {createHash} from 'node:crypto'
import {existsSync, readFileSync} from 'node:fs'
import {mkdtemp, readdir, rm, stat} from 'node:fs/promises'
import {createReadStream} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, expect, test} from 'vitest'
import {connectTarget} from '../../src/net/target.js'
import {LmtpClient} from '../../src/protocol/client.js'

const repo = path.resolve(import.meta.dirname, '..', '..')
let dir = ''
let child: ChildProcess | undefined
const sock = (): string => path.join(dir, 'lmtp.sock')

function vm(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return Number(m![1]) * 1024
}

beforeAll(async () => {
  if (!existsSync(path.join(repo, 'dist', 'commands', 'serve.js'))) throw new Error('dist/ is missing: run `npm run build` first (npm test does)')
  dir = await mkdtemp(path.join(os.tmpdir(), 'lmtp-mem-'))
  child = spawn(process.execPath, [path.join(repo, 'bin', 'run.js'), 'serve', '--no-events', '--maildir', path.join(dir, 'Maildir'), '--listen', `unix:${sock()}`, '--max-size', '200M'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {...process.env, NO_COLOR: '1'},
  })
  await new Promise<void>((resolve, reject) => {
    let out = ''
    child!.stdout!.on('data', (d) => {
      out += d
      if (out.includes('listening on')) resolve()
    })
    child!.on('exit', (code) => reject(new Error(`serve exited early with ${code}`)))
  })
})

afterAll(async () => {
  if (child && child.exitCode === null) {
    child.kill('SIGTERM')
    await new Promise((r) => child!.once('exit', r))
  }
  if (dir) await rm(dir, {recursive: true, force: true})
})

async function send(body: AsyncIterable<Buffer>): Promise<number[]> {
  const client = new LmtpClient(await connectTarget({kind: 'unix', path: sock()}))
  await client.start()
  await client.lhlo('mem.test')
  const res = await client.send({from: 'a@example.org', to: ['big@example.com'], body})
  await client.quit()
  return res.recipients.map((r) => r.code)
}

test('a 100 MB message streams: peak RSS grows by less than 64 MB', async () => {
  expect(await send((async function* () {
    yield Buffer.from('Subject: warm-up\r\n\r\nsmall\r\n')
  })())).toEqual([250])
  const pid = child!.pid!
  const before = vm(pid, 'VmHWM')
  const line = Buffer.from(`${'0123456789'.repeat(9)}abcdefg\r\n`)
  const block = Buffer.concat(Array.from({length: 640}, () => line))
  const hash = createHash('sha256')
  const total = 100 * 1024 * 1024
  async function* gen(): AsyncGenerator<Buffer> {
    const head = Buffer.from('Subject: big\r\n\r\n')
    hash.update(head)
    yield head
    for (let sent = 0; sent < total; sent += block.length) {
      hash.update(block)
      yield block
    }
  }
  expect(await send(gen())).toEqual([250])
  const after = vm(pid, 'VmHWM')
  const growth = after - before
  console.log(`[memory] serve peak RSS before ${(before / 2 ** 20).toFixed(1)} MB, after 100 MB message ${(after / 2 ** 20).toFixed(1)} MB, growth ${(growth / 2 ** 20).toFixed(1)} MB`)
  expect(growth).toBeLessThan(64 * 1024 * 1024)
  // The stored file is the message with LF line ends after the trace headers.
  const newDir = path.join(dir, 'Maildir', 'example.com', 'big', 'new')
  const files = await readdir(newDir)
  const big = files.find((f) => /,S=(\d+)/.exec(f) && Number(/,S=(\d+)/.exec(f)![1]) > total / 2)!
  const st = await stat(path.join(newDir, big))
  expect(st.size).toBeGreaterThan(total * 0.98)
  // Compare the body (CRLF -> LF) against what was sent, streaming.
  const want = hash.digest('hex')
  const got = createHash('sha256')
  let headerDone = false
  let carry = ''
  for await (const chunk of createReadStream(path.join(newDir, big))) {
    let text = carry + (chunk as Buffer).toString('latin1')
    if (!headerDone) {
      const i = text.indexOf('\nSubject: big\n')
      if (i < 0) {
        carry = text
        continue
      }
      text = text.slice(i + 1)
      headerDone = true
    }
    carry = ''
    got.update(Buffer.from(text.replace(/\n/g, '\r\n'), 'latin1'))
  }
  expect(got.digest('hex')).toBe(want)
}, 180_000)
