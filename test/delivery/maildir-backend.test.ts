import {mkdir, readdir, readFile, stat, utimes, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {afterEach, beforeEach, describe, expect, test} from 'vitest'
import {MaildirBackend, type MaildirBackendOptions} from '../../src/delivery/maildir-backend.js'
import {encodeHostForMaildir, type FileLike, type MaildirFs, realFs, uniqueName} from '../../src/delivery/maildir.js'
import {MAILDIRSIZE, parseMaildirSize} from '../../src/delivery/quota.js'
import {parseUsersFile} from '../../src/delivery/users.js'
import type {DeliveryResult, Envelope} from '../../src/protocol/backend.js'
import {perRecipient, R} from '../../src/protocol/replies.js'
import {cleanup, envelope, listTree, mkPath, session, tempRoot, UNSAFE_LOCAL_PARTS} from './helpers.js'

const BODY = 'From: bob@example.org\r\nSubject: hello\r\n\r\nHi there.\r\n.leading dot kept\r\n'

let parent: string
let root: string
beforeEach(async () => {
  parent = await tempRoot()
  root = path.join(parent, 'Maildir')
})
afterEach(async () => cleanup(parent))

function backend(extra: Partial<MaildirBackendOptions> = {}): MaildirBackend {
  return new MaildirBackend({root, hostname: 'mx.test', uniqueHost: 'testhost', ...extra})
}

/** Runs a whole transaction: spool the body, deliver, collect results by index (and their order of arrival). */
async function run(b: MaildirBackend, env: Envelope, body: string | Buffer = BODY) {
  const spool = await b.openSpool(env, session)
  const buf = typeof body === 'string' ? Buffer.from(body) : body
  for (let i = 0; i < buf.length; i += 65536) {
    const r = spool.write(buf.subarray(i, i + 65536))
    if (r) await r
  }
  await spool.finish()
  const results: (DeliveryResult | undefined)[] = env.recipients.map(() => undefined)
  let calls = 0
  await b.deliver(env, spool, session, (index, result) => {
    expect(results[index]).toBeUndefined()
    results[index] = result
    calls++
  })
  await spool.discard()
  expect(calls).toBe(env.recipients.length)
  return results as DeliveryResult[]
}

async function newFiles(mailbox: string): Promise<string[]> {
  return readdir(path.join(root, mailbox, 'new')).catch(() => [])
}

describe('checkRecipient', () => {
  const users = parseUsersFile('alice@example.com\nbob@example.com quota=1K\n')

  test.each([
    ['listed user', 'alice@example.com', {ok: true, mailbox: 'example.com/alice'}],
    ['listed, other case', 'ALICE@example.COM', {ok: true, mailbox: 'example.com/alice'}],
    ['unknown user', 'mallory@example.com', {ok: false, reply: R.unknownUser}],
    ['Postmaster', 'Postmaster', {ok: true, mailbox: 'postmaster'}],
    ['postmaster@any', 'postmaster@elsewhere.example', {ok: true, mailbox: 'postmaster'}],
    ['unsafe', '../alice@example.com', {ok: false, reply: R.unsafeMailbox}],
  ])('with a users file: %s', async (_name, address, expected) => {
    expect(await backend({users}).checkRecipient(mkPath(address), session)).toEqual(expected)
  })

  test('without a users file any safe address is accepted', async () => {
    expect(await backend().checkRecipient(mkPath('anyone@anywhere.example'), session)).toEqual({
      ok: true,
      mailbox: 'anywhere.example/anyone',
    })
  })

  test.each(UNSAFE_LOCAL_PARTS)('unsafe local part (%s) -> 550 5.1.3 and nothing created', async (_name, value) => {
    const b = backend()
    expect(await b.checkRecipient(mkPath('x@example.com', value), session)).toEqual({ok: false, reply: R.unsafeMailbox})
    expect(await readdir(parent)).toEqual([])
  })

  test.each([
    ['temporary', R.mailboxFullAtRcpt],
    ['permanent', R.mailboxFullAtRcptPerm],
  ] as const)('checkQuotaAtRcpt refuses a full mailbox (%s)', async (overQuota, reply) => {
    const b = backend({users, checkQuotaAtRcpt: true, overQuota})
    const dir = path.join(root, 'example.com', 'bob')
    await mkdir(dir, {recursive: true})
    await writeFile(path.join(dir, MAILDIRSIZE), '1024S\n1024 3\n')
    expect(await b.checkRecipient(mkPath('bob@example.com'), session)).toEqual({ok: false, reply, mailbox: 'example.com/bob'})
    await writeFile(path.join(dir, MAILDIRSIZE), '1024S\n1000 3\n')
    expect((await b.checkRecipient(mkPath('bob@example.com'), session)).ok).toBe(true)
    // without the option the check waits for the body
    await writeFile(path.join(dir, MAILDIRSIZE), '1024S\n1024 3\n')
    expect((await backend({users}).checkRecipient(mkPath('bob@example.com'), session)).ok).toBe(true)
  })
})

describe('deliver', () => {
  test('delivers each recipient durably with trace headers and LF line ends', async () => {
    const b = backend()
    const [res] = await run(b, envelope('bob@example.org', ['Alice@Example.com']))
    expect(res!.reply).toEqual(perRecipient.delivered('Alice@Example.com', 'tx1'))
    expect(res!.mailbox).toBe('example.com/alice')
    const files = await newFiles('example.com/alice')
    expect(files).toHaveLength(1)
    const file = path.join(root, 'example.com', 'alice', 'new', files[0]!)
    const text = await readFile(file, 'utf8')
    expect(text).toMatch(
      /^Return-Path: <bob@example\.org>\nDelivered-To: Alice@Example\.com\nReceived: from client\.example \(127\.0\.0\.1:40000\)\n\tby mx\.test with LMTP id tx1\n\tfor <Alice@Example\.com>; .+\n/,
    )
    expect(text.endsWith(BODY.replaceAll('\r\n', '\n'))).toBe(true)
    expect(text).not.toContain('\r')
    expect(res!.bytes).toBe(Buffer.byteLength(text))
    expect(files[0]).toContain(`,S=${res!.bytes},W=`)
    expect(files[0]).toContain(`.${encodeHostForMaildir('testhost')},`)
    expect((await stat(file)).mode & 0o777).toBe(0o600)
    expect(await readdir(path.join(root, 'example.com', 'alice', 'tmp'))).toEqual([])
  })

  test('SMTPUTF8 transactions say UTF8LMTP', async () => {
    await run(backend(), envelope('bob@example.org', ['jörg@bücher.example'], true))
    const [f] = await newFiles('bücher.example/jörg')
    expect(await readFile(path.join(root, 'bücher.example', 'jörg', 'new', f!), 'utf8')).toContain(' with UTF8LMTP id ')
  })

  test('duplicates get two deliveries, two files; postmaster goes to ROOT/postmaster', async () => {
    const results = await run(backend(), envelope('', ['a@example.com', 'A@example.com', 'Postmaster', 'postmaster@x.example']))
    expect(results.map((r) => r.reply.code)).toEqual([250, 250, 250, 250])
    expect(await newFiles('example.com/a')).toHaveLength(2)
    expect(await newFiles('postmaster')).toHaveLength(2)
    const [f] = await newFiles('postmaster')
    expect(await readFile(path.join(root, 'postmaster', 'new', f!), 'utf8')).toMatch(/^Return-Path: <>\n/)
  })

  test('a message that already has Delivered-To: <this recipient> is a loop for that recipient only', async () => {
    const body = `Delivered-To: Carol@Example.com\r\n${BODY}`
    const results = await run(backend(), envelope('bob@example.org', ['carol@example.com', 'dave@example.com']), body)
    expect(results[0]!.reply).toEqual(perRecipient.loop('carol@example.com'))
    expect(results[1]!.reply.code).toBe(250)
    expect(await newFiles('example.com/carol')).toEqual([])
  })

  test('Delivered-To in the body is not a loop', async () => {
    const body = `Subject: fwd\r\n\r\nDelivered-To: carol@example.com\r\n`
    const [r] = await run(backend(), envelope('bob@example.org', ['carol@example.com']), body)
    expect(r!.reply.code).toBe(250)
  })

  test('mixed outcomes: one over quota (452 4.2.2), one too big (552 5.2.3), the others delivered', async () => {
    const users = parseUsersFile(
      ['alice@example.com', 'full@example.com quota=10K', 'tiny@example.com quota=100', 'free@example.com quota=none'].join('\n'),
    )
    const b = backend({users, defaultQuota: 1024 * 1024})
    const full = path.join(root, 'example.com', 'full')
    await mkdir(full, {recursive: true})
    await writeFile(path.join(full, MAILDIRSIZE), '10240S\n10200 20\n')
    const env = envelope('bob@example.org', ['alice@example.com', 'full@example.com', 'tiny@example.com', 'free@example.com'])
    const results = await run(b, env)
    expect(results.map((r) => r.reply)).toEqual([
      perRecipient.delivered('alice@example.com', 'tx1'),
      perRecipient.overQuotaTemp('full@example.com'),
      perRecipient.tooBigForMailbox('tiny@example.com'),
      perRecipient.delivered('free@example.com', 'tx1'),
    ])
    expect(await newFiles('example.com/full')).toEqual([])
    // default quota applies to alice: maildirsize was created and counts the message
    const usage = parseMaildirSize(await readFile(path.join(root, 'example.com', 'alice', MAILDIRSIZE), 'utf8'))
    expect(usage).toEqual({limitBytes: 1024 * 1024, bytes: results[0]!.bytes, count: 1})
    // no quota at all: no maildirsize
    await expect(stat(path.join(root, 'example.com', 'free', MAILDIRSIZE))).rejects.toMatchObject({code: 'ENOENT'})
  })

  test('over quota with overQuota=permanent -> 552 5.2.2', async () => {
    // each stored copy is about 270 octets (trace headers + body): three fit in 1000, the fourth does not
    const big = backend({defaultQuota: 1000, overQuota: 'permanent'})
    const first = await run(big, envelope('bob@example.org', ['y@example.com', 'y@example.com', 'y@example.com', 'y@example.com']))
    // The four copies are written in parallel and take the quota in the order they finish: which one is
    // refused is not fixed, that exactly one is.
    const codes = first.map((r) => `${r.reply.code} ${r.reply.enhanced}`).sort()
    expect(codes).toEqual(['250 2.0.0', '250 2.0.0', '250 2.0.0', '552 5.2.2'])
  })

  test('concurrent deliveries to one mailbox keep maildirsize exact', async () => {
    const b = backend({defaultQuota: 10 * 1024 * 1024, concurrency: 8})
    const rcpts = Array.from({length: 24}, () => 'busy@example.com')
    const results = await run(b, envelope('bob@example.org', rcpts))
    expect(results.every((r) => r.reply.code === 250)).toBe(true)
    const usage = parseMaildirSize(await readFile(path.join(root, 'example.com', 'busy', MAILDIRSIZE), 'utf8'))
    const total = results.reduce((s, r) => s + (r.bytes ?? 0), 0)
    expect(usage).toMatchObject({bytes: total, count: 24})
    expect(await newFiles('example.com/busy')).toHaveLength(24)
  })

  test('traversal attempts at delivery time create nothing outside the root', async () => {
    const b = backend()
    const env: Envelope = {
      transactionId: 't',
      from: mkPath('bob@example.org'),
      params: {},
      recipients: [
        ...UNSAFE_LOCAL_PARTS.map(([, value], index) => ({index, path: mkPath('x@example.com', value)})),
        {index: UNSAFE_LOCAL_PARTS.length, path: mkPath('ok@example.com')},
      ],
    }
    const results = await run(b, env)
    expect(results.slice(0, -1).every((r) => r.reply.code === 451)).toBe(true)
    expect(results.at(-1)!.reply.code).toBe(250)
    expect(await readdir(parent)).toEqual(['Maildir'])
    const tree = await listTree(root)
    expect(tree.filter((p) => !p.startsWith('.lmtp-spool'))).toEqual([
      'example.com',
      'example.com/ok',
      'example.com/ok/cur',
      'example.com/ok/new',
      expect.stringMatching(/^example\.com\/ok\/new\/\d+\.M/),
      'example.com/ok/tmp',
    ])
  })

  /** A file system whose message writes fail with `code` for files under `victim`. */
  function failFor(victim: string, code: string): MaildirFs {
    return {
      ...realFs,
      open: async (file, flags, mode) => {
        const h = await realFs.open(file, flags, mode)
        if (!file.includes(`${path.sep}${victim}${path.sep}tmp${path.sep}`)) return h
        const wrapped: FileLike = {
          read: (b, o, l, p) => h.read(b, o, l, p),
          write: async () => {
            throw Object.assign(new Error(`injected ${code}`), {code})
          },
          sync: () => h.sync(),
          close: () => h.close(),
        }
        return wrapped
      },
    }
  }

  test.each([
    ['ENOSPC', perRecipient.diskFull('b@example.com')],
    ['EDQUOT', perRecipient.diskFull('b@example.com')],
    ['EIO', perRecipient.localError('b@example.com')],
  ])('%s for one recipient -> its 4xx; the others are delivered; no temp file left', async (code, reply) => {
    const warnings: string[] = []
    const b = backend({fs: failFor('b', code), onWarning: (m) => warnings.push(m)})
    const results = await run(b, envelope('bob@example.org', ['a@example.com', 'b@example.com', 'c@example.com']))
    expect(results.map((r) => r.reply)).toEqual([perRecipient.delivered('a@example.com', 'tx1'), reply, perRecipient.delivered('c@example.com', 'tx1')])
    // The cause (errno and path) goes with the result, for the recipient's log line; no separate warning.
    expect(results[1]!.cause).toMatch(new RegExp(`^${code} .*example\\.com/b/tmp/`))
    expect(results[0]!.fsyncMs).toBeGreaterThanOrEqual(0)
    expect(await readdir(path.join(root, 'example.com', 'b', 'tmp'))).toEqual([])
    expect(await newFiles('example.com/b')).toEqual([])
    expect(warnings).toHaveLength(0)
  })

  test('a spool that is not finished gives 451 to everyone', async () => {
    const b = backend()
    const env = envelope('bob@example.org', ['a@example.com', 'b@example.com'])
    const spool = await b.openSpool(env, session)
    const got: number[] = []
    await b.deliver(env, spool, session, (_i, r) => got.push(r.reply.code))
    await spool.discard()
    expect(got).toEqual([451, 451])
  })

  test('a 96 MB message is delivered with bounded memory', async () => {
    const b = backend()
    const env = envelope('bob@example.org', ['big@example.com'])
    const spool = await b.openSpool(env, session)
    const line = Buffer.from(`${'y'.repeat(998)}\r\n`)
    const chunk = Buffer.concat(Array.from({length: 64}, () => line))
    const total = 96 * 1024 * 1024
    const before = process.memoryUsage().rss
    let peak = before
    let written = 0
    for (const head = Buffer.from('Subject: big\r\n\r\n'); written === 0; written += head.length) await spool.write(head)
    while (written < total) {
      const r = spool.write(chunk)
      if (r) await r
      written += chunk.length
    }
    await spool.finish()
    const timer = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss)
    }, 5)
    let result: DeliveryResult | undefined
    try {
      await b.deliver(env, spool, session, (_i, r) => {
        result = r
      })
    } finally {
      clearInterval(timer)
    }
    peak = Math.max(peak, process.memoryUsage().rss)
    expect(result!.reply.code).toBe(250)
    const [f] = await newFiles('example.com/big')
    const st = await stat(path.join(root, 'example.com', 'big', 'new', f!))
    expect(st.size).toBe(result!.bytes)
    expect(st.size).toBeLessThan(written)
    expect(peak - before).toBeLessThan(64 * 1024 * 1024)
    await spool.discard()
  })
})

describe('cleanTmp', () => {
  test('removes dead-process files of this host at once, others only after 36 h, never deeper', async () => {
    const b = backend()
    const host = 'testhost'
    const alice = path.join(root, 'example.com', 'alice', 'tmp')
    const pm = path.join(root, 'postmaster', 'tmp')
    const spoolDir = path.join(root, '.lmtp-spool')
    const deep = path.join(root, 'example.com', 'alice', 'new')
    for (const d of [alice, pm, spoolDir, deep]) await mkdir(d, {recursive: true})
    const deadPid = 999_999_999
    const name = (pid: number, h = host) => uniqueName(h).replace(/P\d+Q/, `P${pid}Q`)
    const files = {
      deadOurs: path.join(alice, `${name(deadPid)},S=1,W=1`),
      deadOursSpool: path.join(spoolDir, name(deadPid)),
      deadOursPm: path.join(pm, name(deadPid)),
      liveOurs: path.join(alice, name(process.pid)),
      deadOtherHost: path.join(alice, name(deadPid, 'otherhost')),
      oldOtherHost: path.join(alice, name(deadPid, 'otherhost2')),
      oldForeign: path.join(pm, 'some-other-agent.tmp'),
      youngForeign: path.join(pm, 'young.tmp'),
      inNew: path.join(deep, name(deadPid)),
    }
    for (const f of Object.values(files)) await writeFile(f, 'x')
    const old = new Date(Date.now() - 37 * 3600 * 1000)
    for (const f of [files.oldOtherHost, files.oldForeign, files.inNew]) await utimes(f, old, old)

    const report = await b.cleanTmp({isAlive: (pid) => pid === process.pid})
    const exists = async (f: string) => stat(f).then(() => true, () => false)
    expect({
      deadOurs: await exists(files.deadOurs),
      deadOursSpool: await exists(files.deadOursSpool),
      deadOursPm: await exists(files.deadOursPm),
      liveOurs: await exists(files.liveOurs),
      deadOtherHost: await exists(files.deadOtherHost),
      oldOtherHost: await exists(files.oldOtherHost),
      oldForeign: await exists(files.oldForeign),
      youngForeign: await exists(files.youngForeign),
      inNew: await exists(files.inNew),
    }).toEqual({
      deadOurs: false,
      deadOursSpool: false,
      deadOursPm: false,
      liveOurs: true,
      deadOtherHost: true,
      oldOtherHost: false,
      oldForeign: false,
      youngForeign: true,
      inNew: true,
    })
    expect(report).toEqual({removed: 5, kept: 3, errors: 0})
  })

  test('two instances with one host name in different pid namespaces: the live one\'s in-flight file is kept', async () => {
    // Instance A runs in another pid namespace (a container with host networking) under the same host name:
    // its pid means nothing here. Its in-flight file is simulated by name: our host, a pid not alive here, and
    // A's namespace marker. Instance B (this backend) starts and cleans up: A's file must stay (it is young).
    const b = backend()
    const alice = path.join(root, 'example.com', 'alice', 'tmp')
    await mkdir(alice, {recursive: true})
    const deadHere = 999_999_998
    const ours = uniqueName('testhost').replace(/P\d+Q/, `P${deadHere}Q`)
    const marker = /^\d+\.M\d+(N[0-9a-f]+)P/.exec(ours)?.[1]
    expect(marker, 'unique names carry this pid namespace').toMatch(/^N[0-9a-f]{8}$/)
    const other = ours.replace(marker!, marker === 'N00000000' ? 'N11111111' : 'N00000000')
    const inFlightOfA = path.join(alice, other)
    const deadOfOurs = path.join(alice, uniqueName('testhost').replace(/P\d+Q/, `P${deadHere}Q`))
    await writeFile(inFlightOfA, 'A is still writing this')
    await writeFile(deadOfOurs, 'left by a dead process of this namespace')
    const report = await b.cleanTmp({isAlive: () => false})
    expect(await stat(inFlightOfA).then(() => true, () => false)).toBe(true)
    expect(await stat(deadOfOurs).then(() => true, () => false)).toBe(false)
    expect(report).toEqual({removed: 1, kept: 1, errors: 0})
    // Once older than 36 hours, A's file goes too (its owner cannot be proven alive or dead from here).
    const old = new Date(Date.now() - 37 * 3600 * 1000)
    await utimes(inFlightOfA, old, old)
    expect(await b.cleanTmp({isAlive: () => false})).toEqual({removed: 1, kept: 0, errors: 0})
  })

  test('a missing root is fine', async () => {
    expect(await backend().cleanTmp()).toEqual({removed: 0, kept: 0, errors: 0})
  })
})
