/**
 * Hostile input against a running server (in-process, real sockets, real files): SMTP smuggling through every
 * end-of-data look-alike and bare CR/LF placement, header injection through LHLO/MAIL/RCPT arguments, and path
 * traversal through the local part and the domain. See PROTOCOL.md "Security pitfalls".
 */
import {readdir, readFile} from 'node:fs/promises'
import path from 'node:path'
import {afterAll, beforeAll, beforeEach, describe, expect, test} from 'vitest'
import {RawSession, type TestServer, bodyAfterTrace, deliveredFiles, startServe} from '../support/serve.js'
import {brief, listTree, traceProblem, transact} from './helpers.js'

let srv: TestServer
beforeAll(async () => {
  srv = await startServe()
})
afterAll(async () => {
  await srv.stop()
  await srv.cleanup()
})

/** Removes every delivered mailbox so each case starts from an empty root. */
async function emptyRoot(): Promise<void> {
  const {rm} = await import('node:fs/promises')
  for (const e of await readdir(srv.root)) if (!e.startsWith('.lmtp')) await rm(path.join(srv.root, e), {recursive: true, force: true})
}

const ENDINGS = ['\r\n', '\n', '\r', '']

/** Every `<a>.<b>` with a, b in {CRLF, LF, CR, nothing} except the one real end, plus other near misses. */
const SMUGGLING: string[] = [
  ...ENDINGS.flatMap((a) => ENDINGS.map((b) => `${a}.${b}`)).filter((v) => v !== '\r\n.\r\n' && v !== '.'),
  '\r\n.\r\r\n',
  '\r\n.\n\r\n',
  '\r\n.\x00\r\n',
  '\r\n. \r\n',
  '\r\n..\r\n',
  '\n..\n',
  '\r\n.\r\n'.replace('.', '\u2024'),
  '\r\n\x00.\r\n',
  '\r\r\n\r\n',
]

describe('SMTP smuggling: no second message is ever delivered', () => {
  beforeEach(emptyRoot)

  test.each(SMUGGLING.map((v) => [JSON.stringify(v), v]))('end-of-data look-alike %s', async (_name, variant) => {
    const s = await RawSession.open(srv.port)
    await s.waitReplies(1)
    s.write('LHLO t\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n')
    await s.waitReplies(5)
    s.write(
      `Subject: real\r\n\r\nhello${variant}MAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.com>\r\nRCPT TO:<other@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n`,
    )
    const r = await s.waitReplies(6)
    s.write('NOOP\r\n')
    await s.waitReplies(7)
    s.close()
    // Exactly one reply for the one message, then NOOP's: nothing in the body was read as a command.
    expect(s.replies.length, JSON.stringify(s.replies)).toBe(7)
    expect(brief([s.replies[6]!])).toEqual(['250 2.0.0'])
    const files = await deliveredFiles(srv.root)
    expect(files.length).toBeLessThanOrEqual(1)
    expect(files.every((f) => f.mailbox === 'example.com/victim')).toBe(true)
    if (r[5]!.code === 250) {
      // Accepted as one message: the "smuggled" part is body text of that same message.
      expect(files).toHaveLength(1)
      expect(bodyAfterTrace(files[0]!.content)).toContain('MAIL FROM:<evil@example.net>')
    } else {
      expect(brief([r[5]!])).toEqual(['554 5.6.0'])
      expect(files).toEqual([])
    }
  })

  test.each([
    ['bare LF in a header', 'Subject: a\nX: b\r\n\r\nbody\r\n'],
    ['bare LF ending a body line', 'Subject: a\r\n\r\nbody\nmore\r\n'],
    ['bare LF first', '\nSubject: a\r\n\r\nbody\r\n'],
    ['bare CR mid-line', 'Subject: a\r\n\r\nbo\rdy\r\n'],
    ['bare CR before CRLF', 'Subject: a\r\n\r\nbody\r\r\n'],
    ['bare CR first', '\rSubject: a\r\n\r\nbody\r\n'],
    ['LF CR pair', 'Subject: a\r\n\r\nbody\n\r\n'],
    ['bare LF before the dot line', 'Subject: a\r\n\r\nbody\n\r\n'],
  ])('%s: 554 5.6.0 for every recipient, nothing delivered, the session goes on', async (_name, message) => {
    const to = ['a@example.com', 'b@example.com', 'a@example.com']
    const r = await transact(srv.port, {from: 's@example.org', to, body: `${message}.\r\n`})
    expect(brief(r.slice(-4, -1))).toEqual(['554 5.6.0', '554 5.6.0', '554 5.6.0'])
    expect(brief(r.slice(-1))).toEqual(['221 2.0.0'])
    expect(await deliveredFiles(srv.root)).toEqual([])
  })

  test.each([
    ['dot line inside a BDAT chunk', (b: string) => `BDAT ${b.length} LAST\r\n${b}`],
    ['two chunks, the first ending in CRLF.CRLF', (b: string) => `BDAT 12\r\nxx\r\n.\r\nMAIL \r\nBDAT ${b.length} LAST\r\n${b}`],
  ])('BDAT: %s is one message', async (_name, build) => {
    const s = await RawSession.open(srv.port)
    await s.waitReplies(1)
    const body = 'Subject: b\r\n\r\nline\r\n.\r\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n'
    s.write(`LHLO t\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<victim@example.com>\r\n${build(body)}NOOP\r\n`)
    const r = await s.waitReplies(build(body).startsWith('BDAT 12') ? 7 : 6)
    s.close()
    expect(brief(r.slice(-1))).toEqual(['250 2.0.0'])
    const files = await deliveredFiles(srv.root)
    expect(files).toHaveLength(1)
    expect(bodyAfterTrace(files[0]!.content)).toContain('MAIL FROM:<evil@example.net>')
  })

  test('the payload split into single bytes changes nothing', async () => {
    for (const variant of ['\n.\n', '\r\n.\n', '\r.\r\n']) {
      const s = await RawSession.open(srv.port)
      await s.waitReplies(1)
      s.write('LHLO t\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n')
      await s.waitReplies(5)
      const payload = Buffer.from(`x${variant}MAIL FROM:<evil@example.net>\r\nRCPT TO:<v2@example.com>\r\nDATA\r\nevil\r\n.\r\n`)
      for (const byte of payload) {
        s.write(Buffer.from([byte]))
        await new Promise((r) => setImmediate(r))
      }
      const r = await s.waitReplies(6)
      s.close()
      expect(brief(r.slice(5)), JSON.stringify(variant)).toEqual(['554 5.6.0'])
    }
    expect(await deliveredFiles(srv.root)).toEqual([])
  })
})

describe('header injection through LHLO, MAIL and RCPT arguments', () => {
  beforeEach(emptyRoot)

  // Control characters inside a command line: the line reader only splits on CRLF, so these reach the parser.
  const CONTROL = ['\n', '\r', '\x00', '\x0b', '\x0c', '\x1b', '\x7f', '\t']
  test.each(CONTROL.map((c) => [JSON.stringify(c), c]))('%s inside LHLO, MAIL or RCPT: refused with 501', async (_n, c) => {
    const s = await RawSession.open(srv.port)
    await s.waitReplies(1)
    s.write(`LHLO evil${c}X-Injected: yes\r\nLHLO t\r\nMAIL FROM:<a${c}X-Injected:@example.org>\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<v${c}X-Injected@example.com>\r\nQUIT\r\n`)
    await s.waitClosed()
    expect(brief(s.replies.slice(1))).toEqual(['501 5.5.4', '250', '501 5.5.4', '250 2.1.0', '501 5.5.4', '221 2.0.0'])
  })

  test.each([
    ['LHLO with header-like text', {lhlo: 'x)\tX-Injected:yes', from: 'a@example.org', to: 'v@example.com'}],
    ['LHLO address literal with junk', {lhlo: '[127.0.0.1]', from: 'a@example.org', to: 'v@example.com'}],
    ['quoted local part with a colon and spaces', {lhlo: 't', from: '"x X-Injected: yes"@example.org', to: 'v@example.com'}],
    ['quoted local part with angle brackets', {lhlo: 't', from: '"a>\\"<b"@example.org', to: 'v@example.com'}],
    ['Unicode line separators', {lhlo: 't', from: 'a\u2028X-Injected@example.org', to: 'v@example.com', utf8: true}],
    ['Unicode paragraph separator', {lhlo: 't', from: 'a@example.org', to: 'v\u2029X-Injected@example.com', utf8: true}],
    ['NEL and C1 controls', {lhlo: 't', from: 'a\u0085X-Injected\u009b@example.org', to: 'v@example.com', utf8: true}],
    ['a long sender', {lhlo: 't', from: `${'a'.repeat(64)}@${'b'.repeat(60)}.example`, to: 'v@example.com'}],
    ['source route', {lhlo: 't', from: '@evil.example,@x.example:a@example.org', to: 'v@example.com'}],
  ])('%s: whatever is accepted, the Received header has no injected line', async (_name, c) => {
    const r = await transact(srv.port, {
      lhlo: c.lhlo,
      from: c.from,
      to: [c.to],
      mailParams: 'utf8' in c ? 'SMTPUTF8' : undefined,
      body: 'Subject: inj\r\n\r\nbody\r\n.\r\n',
    })
    const files = await deliveredFiles(srv.root)
    for (const f of files) {
      expect(traceProblem(f.content), f.content.slice(0, 400)).toBeUndefined()
      expect(f.content.split('\n')[5]).toBe('Subject: inj')
      expect(f.content).not.toMatch(/^X-Injected/m)
    }
    // The replies are well-formed either way.
    for (const x of r) expect(x.code).toBeGreaterThanOrEqual(200)
  })
})

describe('path traversal through the recipient', () => {
  beforeEach(emptyRoot)

  const long = (n: number) => 'a'.repeat(n)
  test.each([
    ['..@example.com'],
    ['"..\\/etc"@example.com'],
    ['"../../etc/passwd"@example.com'],
    ['"a/../../b"@example.com'],
    ['"/etc"@example.com'],
    ['"a\\\\..\\\\b"@example.com'],
    ['"\\\\"@example.com'],
    ['.bashrc@example.com'],
    ['"."@example.com'],
    ['".."@example.com'],
    ['a..b@example.com'],
    ['%2e%2e@example.com'],
    ['%2e%2e%2f%2e%2e%2fetc@example.com'],
    ['a%2fb@example.com'],
    ['user%evil.example@example.com'],
    ['"\u2024\u2024"@example.com'],
    ['"\uFF0E\uFF0E"@example.com'],
    ['"a\uFF0Fb"@example.com'],
    ['"a\u2215b"@example.com'],
    ['"a\uFF3Cb"@example.com'],
    ['"a\uFE52\uFE52"@example.com'],
    ['"a\u2044b"@example.com'],
    ['"a b"@example.com'],
    ['"a\\\u0000b"@example.com'],
    [`${long(65)}@example.com`],
    [`${long(300)}@example.com`],
    ['x@..'],
    ['x@.'],
    ['x@example..com'],
    ['x@[127.0.0.1]'],
    ['x@postmaster'],
    ['x@.lmtp-spool'],
    ['x@a/b'],
    [`x@${'a.'.repeat(130)}com`],
  ])('%s is refused and creates nothing', async (addr) => {
    const r = await transact(srv.port, {from: 'a@example.org', to: [addr], mailParams: 'SMTPUTF8', body: 'x\r\n.\r\n'})
    const rcpt = r.find((x, i) => i >= 1 && x.code !== 250) ?? r[1]!
    expect(rcpt.code, JSON.stringify(r)).toBeGreaterThanOrEqual(500)
    expect((await readdir(srv.root)).filter((e) => !e.startsWith('.lmtp'))).toEqual([])
    expect((await readdir(srv.dir)).sort()).toEqual(['Maildir', 'lmtp.sock'])
  })

  test('NUL octets in the local part (raw, not quoted) are refused as control characters', async () => {
    const r = await transact(srv.port, {from: 'a@example.org', to: ['a\x00b@example.com', '\x00@example.com'], body: 'x\r\n.\r\n'})
    expect(brief(r.slice(1, 3))).toEqual(['501 5.5.4', '501 5.5.4'])
    expect(await listTree(srv.root).then((t) => t.filter((p) => !p.startsWith('.lmtp')))).toEqual([])
  })

  test('look-alikes that are real letters map inside the root, never across it', async () => {
    const r = await transact(srv.port, {from: 'a@example.org', to: ['Ünïcode@example.com', 'UPPER@Example.COM'], mailParams: 'SMTPUTF8', body: 'x\r\n.\r\n'})
    expect(brief(r.slice(-3, -1))).toEqual(['250 2.0.0', '250 2.0.0'])
    const tree = await listTree(srv.root)
    expect(tree.filter((p) => p.split(path.sep).length === 2).sort()).toEqual(['example.com/upper', 'example.com/ünïcode'].sort())
    const file = (await deliveredFiles(srv.root))[0]!
    expect(await readFile(path.join(srv.root, file.mailbox, 'new', file.name), 'utf8')).toContain('\nx\n')
  })
})
