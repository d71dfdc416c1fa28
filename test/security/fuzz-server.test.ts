/**
 * Fuzzing a running server (in-process, real sockets and files) with thousands of seeded random sessions:
 * valid and invalid commands and parameters, pipelined bursts split at random points, random bytes, overlong
 * lines, DATA bodies with edge cases (dots, bare CR/LF, NUL, oversize) and BDAT chunks. A model of the protocol
 * counts the replies each command is owed (one per command line; 354 then one per accepted recipient after a
 * body; one per non-LAST BDAT chunk, one per accepted recipient after LAST, none for LAST without recipients;
 * 421 and close after the 10th protocol error; 221 and close after QUIT) and the session is checked against it.
 * Invariants: no crash or hang (every wait is bounded), every reply well-formed with an enhanced code of the
 * reply's class (except the greeting, the LHLO reply and 354), exactly the replies the model expects, nothing
 * written outside the Maildir root, and a clean session still delivers.
 * Repeat a failure with FUZZ_SEED=<seed> (and FUZZ_RUNS=<n> for a longer run).
 */
import {readdir} from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import fc from 'fast-check'
import {afterAll, beforeAll, describe, expect, test} from 'vitest'
import {LmtpClient} from '../../src/protocol/client.js'
import {type Reply, ReplyParser} from '../../src/protocol/reply.js'
import {type TestServer, startServe} from '../support/serve.js'

const SEED = Number(process.env.FUZZ_SEED ?? 20_251_129)
const RUNS = Number(process.env.FUZZ_RUNS ?? 2000)
const MAX_SIZE = 64 * 1024
const MAX_ERRORS = 10
const WAIT_MS = 10_000

/** What the run covered, printed at the end (a fuzz run that never reaches a body proves little). */
const stats = {replies: 0, bodies: 0, delivered: 0, bare: 0, tooManyErrors: 0, bdatLast: 0}

/** A raw connection that parses replies and records (instead of throwing on) anything malformed. */
class Conn {
  readonly replies: Reply[] = []
  malformed: string | undefined
  closed = false
  private readonly parser = new ReplyParser({maxLineLength: 1 << 16})
  private wake: (() => void) | undefined

  constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      try {
        this.replies.push(...this.parser.push(d))
      } catch (err) {
        this.malformed ??= `${(err as Error).message}: ${JSON.stringify(d.toString('latin1').slice(0, 200))}`
      }
      this.wake?.()
    })
    socket.on('close', () => {
      this.closed = true
      this.wake?.()
    })
    socket.on('error', () => {})
  }

  static open(port: number): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const s = net.connect({host: '127.0.0.1', port}, () => resolve(new Conn(s)))
      s.once('error', reject)
    })
  }

  /** Waits until `n` replies in total arrived, the connection closed, or the deadline passed. */
  async waitFor(n: number, ms = WAIT_MS): Promise<void> {
    const deadline = Date.now() + ms
    while (this.replies.length < n && !this.closed && !this.malformed) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`hang: waited ${ms} ms for reply ${n}, have ${this.replies.length}`)
      await new Promise<void>((r) => {
        const t = setTimeout(r, left)
        this.wake = () => {
          clearTimeout(t)
          r()
        }
      })
    }
  }

  async waitClosed(ms = WAIT_MS): Promise<void> {
    const deadline = Date.now() + ms
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('hang: the server did not close the connection')
      await new Promise((r) => setTimeout(r, 5))
    }
  }

  /** Writes `data` in pieces cut at the given fractions, yielding to the event loop between pieces. */
  async write(data: Buffer, cuts: number[]): Promise<void> {
    const points = [...new Set(cuts.map((c) => Math.floor(c * data.length)))].filter((p) => p > 0 && p < data.length).sort((a, b) => a - b)
    let at = 0
    for (const p of [...points, data.length]) {
      if (this.closed) return
      this.socket.write(data.subarray(at, p))
      at = p
      await new Promise((r) => setImmediate(r))
    }
  }
}

// ---- the generated sessions ------------------------------------------------------------------------------

type Label = 'LHLO' | 'MAIL' | 'RCPT' | 'RSET' | 'QUIT' | 'OTHER'
type Step =
  | {kind: 'line'; label: Label; line: Buffer}
  | {kind: 'data'; body: Buffer}
  | {kind: 'bdat'; size: number; last: boolean; junkSuffix: boolean; payload: Buffer}

const line = (label: Label) => (text: string | Buffer): Step => ({kind: 'line', label, line: Buffer.isBuffer(text) ? text : Buffer.from(text)})

/** Removes CRLF pairs from random bytes, so a random line stays one line. */
function oneLine(b: Uint8Array): Buffer {
  const out = Buffer.from(b)
  for (let i = 0; i + 1 < out.length; i++) if (out[i] === 0x0d && out[i + 1] === 0x0a) out[i + 1] = 0x78
  if (out.length > 0 && out[out.length - 1] === 0x0d) out[out.length - 1] = 0x78
  return out
}

const address = fc.oneof(
  {weight: 6, arbitrary: fc.constantFrom('a@example.com', 'b@example.com', 'B@Example.COM', 'c@example.org', 'Postmaster', 'postmaster@example.com')},
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '',
      '../x@example.com',
      '.x@example.com',
      'x@[192.0.2.1]',
      '"a b"@example.com',
      '"a\\"b"@example.com',
      'ü@example.com',
      'x@',
      '@',
      'a@b@c',
      `${'x'.repeat(70)}@example.com`,
      '@a.example,@b.example:d@example.com',
      'x@postmaster',
    ),
  },
  {weight: 1, arbitrary: fc.string({maxLength: 12}).map((s) => `${s}@example.com`)},
)
const mailParams = fc.subarray(['SIZE=100', 'SIZE=99999999', 'SIZE=', 'SIZE=-1', 'BODY=8BITMIME', 'BODY=7BIT', 'BODY=BINARYMIME', 'SMTPUTF8', 'FOO=bar', 'AUTH=<>', 'RET=FULL'], {maxLength: 3})
const mailStep = fc
  .tuple(fc.constantFrom('MAIL FROM:', 'mail from:', 'MAIL FROM: ', 'MAIL FROM'), address, mailParams, fc.boolean())
  .map(([verb, a, params, brackets]) => line('MAIL')(`${verb}${brackets ? `<${a}>` : a}${params.map((p) => ` ${p}`).join('')}`))
const rcptStep = fc
  .tuple(fc.constantFrom('RCPT TO:', 'rcpt to:', 'RCPT TO: '), address, fc.subarray(['NOTIFY=NEVER', 'ORCPT=rfc822;x@y', 'X=1'], {maxLength: 1}))
  .map(([verb, a, params]) => line('RCPT')(`${verb}<${a}>${params.map((p) => ` ${p}`).join('')}`))
const lhloStep = fc.constantFrom('LHLO client.test', 'lhlo x', 'LHLO [127.0.0.1]', 'LHLO', 'LHLO a b').map((t) => line(t === 'LHLO' || t === 'LHLO a b' ? 'OTHER' : 'LHLO')(t))
const otherStep = fc.oneof(
  fc.constantFrom('NOOP', 'NOOP anything', 'RSET x', 'QUIT x', 'VRFY a@example.com', 'HELO x', 'EHLO x', 'STARTTLS', 'DATA x', 'BDAT', 'BDAT x', 'BDAT -1', 'BDAT 99999999999999999999999', '', ' ', 'XYZZY', 'AUTH PLAIN AAAA').map(line('OTHER')),
  fc.string({maxLength: 80}).map((s) => line('OTHER')(`#${s}`)),
  fc.uint8Array({maxLength: 60}).map((b) => line('OTHER')(Buffer.concat([Buffer.from('#'), oneLine(b)]))),
  fc.integer({min: 2049, max: 6000}).map((n) => line('OTHER')('X'.repeat(n))),
)
const bodyPiece = fc.oneof(
  fc.constantFrom('.', '..', '.\r\n', '\r\n', '\n', '\r', '\r\n.\n', '\n.\r\n', '\x00', 'Subject: x\r\n', '\r\n\r\n', 'From here\r\n', '.hidden\r\n', 'é'),
  fc.string({maxLength: 40}),
  fc.uint8Array({maxLength: 40}).map((b) => Buffer.from(b).toString('latin1')),
  fc.integer({min: 900, max: 1100}).map((n) => `${'L'.repeat(n)}\r\n`),
)
const body = fc.oneof(
  {weight: 9, arbitrary: fc.array(bodyPiece, {maxLength: 12}).map((parts) => Buffer.from(parts.join(''), 'latin1'))},
  {weight: 1, arbitrary: fc.integer({min: MAX_SIZE - 100, max: MAX_SIZE + 5000}).map((n) => Buffer.from(`${'y'.repeat(78)}\r\n`.repeat(Math.ceil(n / 80))))},
)
const dataStep = body.map((b): Step => ({kind: 'data', body: b}))
const bdatStep = fc
  .tuple(fc.oneof({weight: 9, arbitrary: fc.integer({min: 0, max: 300})}, {weight: 1, arbitrary: fc.integer({min: MAX_SIZE - 10, max: MAX_SIZE + 2000})}), fc.boolean(), fc.integer({min: 0, max: 20}))
  .chain(([size, last, junk]) =>
    fc.uint8Array({minLength: Math.min(size, 200), maxLength: Math.min(size, 200)}).map((seed): Step => {
      const payload = Buffer.alloc(size)
      for (let i = 0; i < size; i++) payload[i] = seed.length > 0 ? seed[i % seed.length]! : 0x61
      return {kind: 'bdat', size, last, junkSuffix: junk === 0, payload}
    }),
  )
const step = fc.oneof(
  {weight: 9, arbitrary: mailStep},
  {weight: 12, arbitrary: rcptStep},
  {weight: 6, arbitrary: lhloStep},
  {weight: 6, arbitrary: dataStep},
  {weight: 6, arbitrary: bdatStep},
  {weight: 3, arbitrary: fc.constantFrom('RSET', 'rset').map(line('RSET'))},
  {weight: 1, arbitrary: fc.constant(line('QUIT')('QUIT'))},
  {weight: 9, arbitrary: otherStep},
)
/** A mostly well-formed transaction (so that bodies are reached), with random steps mixed in. */
const goodRcpt = fc
  .constantFrom('a@example.com', 'b@example.com', 'B@example.com', 'Postmaster', 'c@example.org', 'd@example.net')
  .map((a) => line('RCPT')(`RCPT TO:<${a}>`))
const bdatChunks = fc.array(bdatStep, {minLength: 0, maxLength: 2}).chain((chunks) =>
  bdatStep.map((lastChunk): Step[] => [
    ...chunks.map((c) => (c.kind === 'bdat' ? {...c, last: false, junkSuffix: false} : c)),
    lastChunk.kind === 'bdat' ? {...lastChunk, last: true, junkSuffix: false} : lastChunk,
  ]),
)
const transaction = fc
  .tuple(
    fc.oneof({weight: 4, arbitrary: fc.constantFrom('MAIL FROM:<s@example.org>', 'MAIL FROM:<> BODY=8BITMIME', 'MAIL FROM:<s@example.org> SIZE=500 SMTPUTF8').map(line('MAIL'))}, {weight: 1, arbitrary: mailStep}),
    fc.array(fc.oneof({weight: 4, arbitrary: goodRcpt}, {weight: 1, arbitrary: rcptStep}), {minLength: 1, maxLength: 4}),
    fc.oneof(dataStep.map((d) => [d]), bdatChunks),
    fc.array(fc.oneof(otherStep, step), {maxLength: 2}),
    fc.nat(),
  )
  .map(([mail, rcpts, bodySteps, noise, at]) => {
    const steps: Step[] = [mail, ...rcpts, ...bodySteps]
    // Noise lands anywhere, including between a RCPT and the body.
    steps.splice(at % (steps.length + 1), 0, ...noise)
    return steps
  })
const fragment = fc.oneof({weight: 3, arbitrary: transaction}, {weight: 2, arbitrary: step.map((s) => [s])})
const session = fc.record({
  lhloFirst: fc.oneof({weight: 5, arbitrary: fc.constant(true)}, {weight: 1, arbitrary: fc.constant(false)}),
  steps: fc.array(fragment, {maxLength: 5}).map((fs) => fs.flat()),
  cuts: fc.array(fc.double({min: 0, max: 1, noNaN: true}), {maxLength: 4}),
})

// ---- the model -------------------------------------------------------------------------------------------

/** Replies that the server counts as protocol errors (its fail() path). */
function isProtocolError(r: Reply): boolean {
  return [500, 501, 503, 555].includes(r.code) || (r.code === 454 && r.enhanced === '4.7.0') || (r.code === 550 && r.enhanced === '5.6.7')
}

/** A reply is well-formed: a known class, and an enhanced code of the same class unless exempt. */
function checkReply(r: Reply, exempt: boolean): string | undefined {
  const cls = Math.floor(r.code / 100)
  if (![2, 3, 4, 5].includes(cls)) return `reply code ${r.code} of no known class`
  if (exempt || r.code === 354) return undefined
  if (!r.enhanced) return `${r.code} without an enhanced code: ${JSON.stringify(r.lines)}`
  if (Number(r.enhanced[0]) !== cls) return `${r.code} with enhanced code ${r.enhanced} of another class`
  return undefined
}

/** Stuffs dots so the body holds no end-of-data, and terminates it; says whether it has a bare CR or LF. */
function frameBody(b: Buffer): {wire: Buffer; bare: boolean; size: number} {
  const s = b.toString('latin1')
  let stuffed = s.replace(/\r\n\./g, '\r\n..')
  if (stuffed.startsWith('.')) stuffed = `.${stuffed}`
  const content = stuffed.length === 0 || stuffed.endsWith('\r\n') ? stuffed : `${stuffed}\r\n`
  const bare = /\r(?!\n)|(?<!\r)\n/.test(content)
  return {wire: Buffer.from(`${content}.\r\n`, 'latin1'), bare, size: Buffer.byteLength(content, 'latin1')}
}

let srv: TestServer
beforeAll(async () => {
  srv = await startServe({maxSize: MAX_SIZE})
})
afterAll(async () => {
  await srv.stop()
  await srv.cleanup()
})

/** Runs one generated session against the server and checks it against the model; throws on a violation. */
async function runSession(input: {lhloFirst: boolean; steps: Step[]; cuts: number[]}): Promise<void> {
  const c = await Conn.open(srv.port)
  let got = 0
  let greeted = false
  let tx: {accepted: number; viaBdat: boolean} | undefined
  let errors = 0
  let ended = false
  const fail = (why: string): never => {
    throw new Error(`${why}\nreplies: ${JSON.stringify(c.replies.map((r) => `${r.code} ${r.enhanced ?? ''} ${r.lines.join('|')}`))}`)
  }
  /** Takes the next `n` replies (failing on a short count or a malformed one) and applies the error rule. */
  const take = async (n: number, what: string, exempt = (_r: Reply) => false): Promise<Reply[]> => {
    if (n === 0) return []
    await c.waitFor(got + n)
    if (c.malformed) fail(`malformed reply after ${what}: ${c.malformed}`)
    if (c.replies.length < got + n) fail(`connection closed: ${what} was owed ${n} replies, got ${c.replies.length - got}`)
    const rs = c.replies.slice(got, got + n)
    got += n
    for (const r of rs) {
      const problem = checkReply(r, exempt(r))
      if (problem) fail(`${what}: ${problem}`)
    }
    return rs
  }
  const countErrors = async (rs: Reply[], what: string): Promise<void> => {
    for (const r of rs) if (isProtocolError(r)) errors++
    if (errors >= MAX_ERRORS && !ended) {
      const [bye] = await take(1, `the ${MAX_ERRORS}th error (${what})`)
      if (bye!.code !== 421 || bye!.enhanced !== '4.7.0') fail(`expected 421 4.7.0 after ${MAX_ERRORS} errors, got ${bye!.code}`)
      ended = true
      stats.tooManyErrors++
    }
  }

  await take(1, 'the greeting', () => true).then(([g]) => g!.code === 220 || fail('no 220 greeting'))
  const steps: Step[] = input.lhloFirst ? [line('LHLO')('LHLO fuzz.test'), ...input.steps] : input.steps
  // Bursts: everything up to and including a DATA is written at once (DATA must wait for its 354).
  let i = 0
  while (i < steps.length && !ended) {
    let j = i
    while (j < steps.length && steps[j]!.kind !== 'data') j++
    const burst = steps.slice(i, Math.min(j + 1, steps.length))
    const bytes: Buffer[] = []
    for (const s of burst) {
      if (s.kind === 'line') bytes.push(s.line, Buffer.from('\r\n'))
      else if (s.kind === 'data') bytes.push(Buffer.from('DATA\r\n'))
      else bytes.push(Buffer.from(`BDAT ${s.size}${s.last ? ' LAST' : ''}${s.junkSuffix ? ' JUNK' : ''}\r\n`), s.payload)
    }
    await c.write(Buffer.concat(bytes), input.cuts)
    for (const s of burst) {
      if (ended) break
      if (s.kind === 'line') {
        const [r] = await take(1, `line ${JSON.stringify(s.line.toString('latin1').slice(0, 60))}`, (x) => s.label === 'LHLO' && x.code === 250)
        if (s.label === 'LHLO' && r!.code === 250) {
          greeted = true
          tx = undefined
        } else if (s.label === 'MAIL' && r!.code === 250) {
          if (!greeted || tx) fail('MAIL accepted out of sequence')
          tx = {accepted: 0, viaBdat: false}
        } else if (s.label === 'RCPT' && r!.code >= 200 && r!.code < 300) {
          if (!tx || tx.viaBdat) fail('RCPT accepted out of sequence')
          tx!.accepted++
        } else if (s.label === 'RSET' && r!.code === 250) {
          tx = undefined
        } else if (s.label === 'QUIT') {
          if (r!.code !== 221) fail(`QUIT got ${r!.code}`)
          ended = true
          await c.waitClosed()
          break
        }
        await countErrors([r!], 'a command')
      } else if (s.kind === 'data') {
        const [r] = await take(1, 'DATA')
        const expect354 = greeted && tx !== undefined && !tx.viaBdat && tx.accepted > 0
        if ((r!.code === 354) !== expect354) fail(`DATA got ${r!.code}, model expected ${expect354 ? 354 : 'a refusal'}`)
        if (r!.code !== 354) {
          await countErrors([r!], 'DATA')
          continue
        }
        const framed = frameBody(s.body)
        await c.write(framed.wire, input.cuts)
        const rs = await take(tx!.accepted, 'the end of data')
        stats.bodies++
        stats.delivered += rs.filter((x) => x.code === 250).length
        if (framed.bare) stats.bare++
        if (framed.bare && framed.size <= MAX_SIZE) for (const x of rs) if (x.code !== 554 || x.enhanced !== '5.6.0') fail(`bare CR/LF body got ${x.code}`)
        if (!framed.bare) for (const x of rs) if (x.code === 554 && x.enhanced === '5.6.0') fail('a clean body was refused as bare CR/LF')
        if (framed.size > MAX_SIZE) for (const x of rs) if (x.code !== 552) fail(`an oversize body got ${x.code}`)
        tx = undefined
      } else {
        let owed: number
        if (s.junkSuffix || !greeted || !tx) owed = 1
        else if (tx.accepted === 0) owed = s.last ? 0 : 1
        else owed = s.last ? tx.accepted : 1
        const rs = await take(owed, `BDAT ${s.size}${s.last ? ' LAST' : ''}`)
        if (s.last && owed > 0 && !s.junkSuffix && greeted && tx && tx.accepted > 0) {
          stats.bdatLast++
          stats.delivered += rs.filter((x) => x.code === 250).length
        }
        if (!s.junkSuffix && greeted && tx) {
          if (tx.accepted === 0 && s.last) tx = undefined
          else if (tx.accepted > 0) {
            tx.viaBdat = true
            if (s.last) tx = undefined
          }
        }
        await countErrors(rs, 'BDAT')
      }
    }
    i = j + 1
  }
  if (ended) {
    await c.waitClosed()
  } else {
    c.socket.write('QUIT\r\n')
    const [r] = await take(1, 'the final QUIT')
    if (r!.code !== 221) fail(`final QUIT got ${r!.code}`)
    await c.waitClosed()
  }
  if (c.malformed) fail(`malformed reply: ${c.malformed}`)
  if (c.replies.length !== got) fail(`${c.replies.length - got} replies more than the protocol allows`)
  stats.replies += got
  c.socket.destroy()
}

/** A clean delivery through the real client. */
async function cleanDelivery(tag: string): Promise<number[]> {
  const socket = net.connect({host: '127.0.0.1', port: srv.port})
  await new Promise<void>((r, j) => {
    socket.once('connect', () => r())
    socket.once('error', j)
  })
  const client = new LmtpClient(socket, {timeouts: {greeting: WAIT_MS, command: WAIT_MS, dataInit: WAIT_MS, dataBlock: WAIT_MS, dataEnd: WAIT_MS}})
  await client.start()
  await client.lhlo('clean.test')
  const res = await client.send({from: 'clean@example.org', to: ['probe@example.com'], body: [Buffer.from(`Subject: ${tag}\r\n\r\nstill works\r\n`)]})
  await client.quit()
  return res.recipients.map((r) => r.code)
}

/** Everything under the root has the Maildir shape: <domain>/<local>/{tmp,new,cur,maildirsize}, postmaster, spool. */
async function unexpectedPaths(): Promise<string[]> {
  const odd: string[] = []
  for (const e of await readdir(srv.root, {withFileTypes: true, recursive: true})) {
    const rel = path.relative(srv.root, path.join(e.parentPath, e.name)).split(path.sep)
    if (rel[0] === '.lmtp-spool') continue
    const inMaildir = (parts: string[]) => parts.length === 1 || (['tmp', 'new', 'cur'].includes(parts[1]!) && parts.length <= 3) || (parts.length === 2 && parts[1] === 'maildirsize')
    const ok = rel[0] === 'postmaster' ? inMaildir(rel.slice(0)) : rel.length === 1 || inMaildir(rel.slice(1))
    if (!ok || e.isSymbolicLink()) odd.push(rel.join('/'))
  }
  return odd
}

describe('fuzzing a running server', () => {
  test(`${RUNS} seeded random sessions keep to the protocol (seed ${SEED})`, {timeout: 240_000}, async () => {
    let n = 0
    await fc.assert(
      fc.asyncProperty(session, async (input) => {
        await runSession(input)
        if (++n % 100 === 0) expect(await cleanDelivery(`after ${n}`)).toEqual([250])
      }),
      {seed: SEED, numRuns: RUNS, endOnFailure: true},
    )
    console.log(`[fuzz] ${n} sessions (seed ${SEED}): ${JSON.stringify(stats)}`)
    expect(stats.bodies).toBeGreaterThan(RUNS / 20)
    expect(stats.bdatLast).toBeGreaterThan(RUNS / 50)
    expect(await cleanDelivery('final')).toEqual([250])
    // Nothing outside the root, nothing odd inside it, no temp file or spool file left behind.
    expect((await readdir(srv.dir)).sort()).toEqual(['Maildir', 'lmtp.sock'])
    expect(await unexpectedPaths()).toEqual([])
    for (let k = 0; k < 100 && (await readdir(path.join(srv.root, '.lmtp-spool')).catch(() => [])).length > 0; k++) await new Promise((r) => setTimeout(r, 20))
    expect(await readdir(path.join(srv.root, '.lmtp-spool')).catch(() => [])).toEqual([])
  })
})
