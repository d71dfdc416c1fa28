/** Message sources: exact generated sizes, file checks, stdin spooling, measuring like the client sends. */
import {spawnSync} from 'node:child_process'
import {readdir, chmod, mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {pathToFileURL} from 'node:url'
import {afterAll, beforeAll, describe, expect, test} from 'vitest'
import {
  MessageSourceError,
  fileSource,
  formatRfc5322Date,
  generatedSource,
  measure,
  stdinSource,
} from '../../src/client/message-source.js'
import {REPO_ROOT, cliBuilt} from '../reliability/serve-process.js'
import {systemUser} from '../support/peers/proc.js'

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lmtp-source-'))
})
afterAll(async () => {
  await rm(dir, {recursive: true, force: true})
})

async function collect(chunks: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const c of chunks) parts.push(c)
  return Buffer.concat(parts)
}

async function* of(...parts: string[]): AsyncIterable<Buffer> {
  for (const p of parts) yield Buffer.from(p, 'utf8')
}

describe('measure', () => {
  test.each([
    {parts: ['a\r\nb\r\n'], size: 6, has8bit: false},
    {parts: ['a\nb\n'], size: 6, has8bit: false},
    {parts: ['a\r', '\nb'], size: 6, has8bit: false},
    {parts: ['.dot\n'], size: 6, has8bit: false},
    {parts: ['', 'x'], size: 3, has8bit: false},
    {parts: ['grüße\n'], size: 9, has8bit: true},
    {parts: [], size: 0, has8bit: false},
  ])('$parts -> $size octets, 8-bit $has8bit', async ({parts, size, has8bit}) => {
    expect(await measure(of(...parts))).toEqual({size, has8bit})
  })
})

describe('generated test message', () => {
  const base = {from: 'ops@example.org', to: ['a@example.com', 'b@example.com'], hostname: 'host.test', date: new Date(Date.UTC(2024, 0, 2, 3, 4, 5))}

  test('has the headers a test message needs, CRLF line ends, and a short body', async () => {
    const text = (await collect(generatedSource(base).open())).toString()
    expect(text).toMatch(/^Date: \w{3}, \d\d \w{3} 2024 \d\d:\d\d:\d\d [+-]\d{4}\r\n/)
    expect(text).toMatch(/\r\nMessage-ID: <[^>]+@host\.test>\r\n/)
    expect(text).toContain('\r\nFrom: <ops@example.org>\r\n')
    expect(text).toContain('\r\nTo: <a@example.com>,\r\n <b@example.com>\r\n')
    expect(text).toContain('\r\nSubject: lmtp send test message\r\n')
    expect(text).toContain('\r\n\r\nThis is a test message sent by `lmtp send`.\r\n')
    expect(text.replace(/\r\n/g, '')).not.toMatch(/[\r\n]/)
    expect(text.endsWith('\r\n')).toBe(true)
  })

  test.each([1000, 1001, 4096, 300_000, 1_048_576])('--size %i pads to exactly that many octets', async (size) => {
    const src = generatedSource({...base, size})
    const bytes = await collect(src.open())
    expect(bytes.length).toBe(size)
    expect(await src.scan()).toEqual({size, has8bit: false})
    // Every line stays well under the 1000-octet limit.
    expect(Math.max(...bytes.toString().split('\r\n').map((l) => l.length))).toBeLessThan(100)
  })

  test('a --size smaller than the headers leaves the message as it is', async () => {
    const plain = await collect(generatedSource(base).open())
    const small = await collect(generatedSource({...base, size: 10}).open())
    expect(small.length).toBe(plain.length)
  })

  test('non-ASCII addresses make the message 8-bit, charset utf-8', async () => {
    const src = generatedSource({...base, to: ['josé@example.com']})
    expect((await src.scan()).has8bit).toBe(true)
    expect((await collect(src.open())).toString()).toContain('charset=utf-8')
  })

  test('formatRfc5322Date', () => {
    const d = new Date(2024, 0, 2, 3, 4, 5)
    expect(formatRfc5322Date(d)).toMatch(/^Tue, 02 Jan 2024 03:04:05 [+-]\d{4}$/)
  })
})

describe('file source', () => {
  test('streams the file, can be read twice, measures it', async () => {
    const file = join(dir, 'm.eml')
    await writeFile(file, 'Subject: x\n\nbody\n')
    const src = await fileSource(file)
    expect(src.description).toBe(file)
    expect(await src.scan()).toEqual({size: 20, has8bit: false})
    expect((await collect(src.open())).toString()).toBe('Subject: x\n\nbody\n')
    expect((await collect(src.open())).toString()).toBe('Subject: x\n\nbody\n')
  })

  test.each([
    {name: 'missing', path: () => join(dir, 'nope.eml'), message: /no such file/},
    {name: 'a directory', path: () => dir, message: /is a directory/},
  ])('$name: MessageSourceError naming the file', async ({path, message}) => {
    const err = await fileSource(path()).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(MessageSourceError)
    expect((err as Error).message).toMatch(message)
    expect((err as Error).message).toContain(path())
  })

  test('unreadable: permission denied (as root, checked as nobody in a child process)', async () => {
    const file = join(dir, 'secret.eml')
    await writeFile(file, 'x')
    await chmod(file, 0)
    if (process.getuid?.() !== 0) {
      await expect(fileSource(file)).rejects.toThrow(/permission denied/)
      return
    }
    // Root reads any file: the same call runs in a child that is `nobody` (the built module, as the CLI runs it).
    const nobody = systemUser('nobody')
    if (!nobody) throw new Error('no user nobody on this host: the permission check cannot run as root')
    if (!cliBuilt()) throw new Error('dist/ is missing: run `npm run build` first (npm test does)')
    await chmod(dir, 0o755)
    const mod = pathToFileURL(join(REPO_ROOT, 'dist', 'client', 'message-source.js')).href
    const script = `const {fileSource} = await import(${JSON.stringify(mod)}); await fileSource(process.argv[1]).then(() => console.log('opened'), (e) => console.log(e.constructor.name + ': ' + e.message))`
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, file], {uid: nobody.uid, gid: nobody.gid, encoding: 'utf8'})
    expect(r.stdout.trim()).toMatch(/^MessageSourceError: .*permission denied/)
    expect(r.stdout).toContain(file)
  })
})

describe('stdin source', () => {
  test('spools to a private file, measures on the way, removes the spool on dispose', async () => {
    const spoolDir = await mkdtemp(join(dir, 'spool-'))
    const input = Readable.from([Buffer.from('Subject: s\n\n'), Buffer.from('.grüße\n')])
    const src = await stdinSource(input, spoolDir)
    expect(src.description).toBe('stdin')
    expect(await src.scan()).toEqual({size: 24, has8bit: true})
    expect((await collect(src.open())).toString()).toBe('Subject: s\n\n.grüße\n')
    expect((await collect(src.open())).toString()).toBe('Subject: s\n\n.grüße\n')
    expect(await readdir(spoolDir)).toHaveLength(1)
    await src.dispose()
    expect(await readdir(spoolDir)).toEqual([])
  })
})
