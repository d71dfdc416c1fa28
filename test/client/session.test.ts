/**
 * openSession(): every phase (connect, greeting, LHLO, STARTTLS, TLS, LHLO again, AUTH) against a scripted
 * server, the phase events, and each typed failure with the exit code outcome.ts maps it to.
 */
import {mkdtemp, rm} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import {afterAll, afterEach, beforeAll, describe, expect, test} from 'vitest'
import {authMechanisms} from '../../src/client/auth.js'
import {exitCodeForSessionError} from '../../src/client/outcome.js'
import {type PhaseEvent, type SessionOptions, SessionOpenError, isLocalTarget, openSession} from '../../src/client/session.js'
import {parseTarget} from '../../src/net/target.js'
import {parseCapabilities} from '../../src/protocol/capabilities.js'
import {type FakeServer, type FakeStep, greetAndLhlo, lhloReply, parseScript, startFakeServer} from '../support/fake-server.js'
import {makeTestCertificate} from '../support/tls-cert.js'

let fake: FakeServer | undefined
afterEach(async () => {
  await fake?.close()
  fake = undefined
})

let certDir = ''
let cert: {cert: Buffer; key: Buffer}
beforeAll(async () => {
  certDir = await mkdtemp(path.join(os.tmpdir(), 'lmtp-session-'))
  cert = makeTestCertificate(certDir, 'localhost')
})
afterAll(async () => {
  await rm(certDir, {recursive: true, force: true})
})

const quick = {greeting: 3000, command: 3000, dataInit: 3000, dataBlock: 3000, dataEnd: 3000}

async function open(steps: FakeStep[], options: Partial<SessionOptions> = {}) {
  fake = await startFakeServer(steps, {expectTimeoutMs: 3000, end: 'stall'})
  const phases: PhaseEvent[] = []
  const trace: string[] = []
  try {
    const s = await openSession(parseTarget(fake.target), {
      lhloName: 'client.test',
      timeouts: quick,
      onPhase: (e) => phases.push(e),
      trace: (d, l) => trace.push(`${d}: ${l}`),
      ...options,
    })
    s.client.close()
    return {session: s, phases, trace, error: undefined}
  } catch (err) {
    return {session: undefined, phases, trace, error: err as SessionOpenError}
  }
}

describe('openSession', () => {
  test('connect, greeting, LHLO: the phases in order, each with a start and a timed end', async () => {
    const {session, phases} = await open(greetAndLhlo(['PIPELINING', 'CHUNKING']))
    expect(session!.greeting.code).toBe(220)
    expect(session!.capabilities.chunking).toBe(true)
    expect(session!.tls).toBeNull()
    expect(phases.map((p) => `${p.phase}:${p.state}`)).toEqual([
      'connect:start',
      'connect:done',
      'greeting:start',
      'greeting:done',
      'lhlo:start',
      'lhlo:done',
    ])
    expect(phases.every((p) => p.state === 'start' || typeof p.ms === 'number')).toBe(true)
  })

  test('STARTTLS, the handshake and LHLO again; TLS facts; capabilities are those of the second LHLO', async () => {
    const ctx = tls.createSecureContext({cert: cert.cert, key: cert.key})
    const {session, phases, error} = await open(
      [
        ...greetAndLhlo(['PIPELINING', 'STARTTLS']),
        {expect: 'STARTTLS'},
        {send: '220 2.0.0 go ahead'},
        {tls: ctx},
        {expect: 'LHLO client.test'},
        {send: lhloReply(['PIPELINING', 'CHUNKING'])},
      ],
      {starttls: true, tlsCa: cert.cert, tlsServername: 'localhost'},
    )
    expect(error).toBeUndefined()
    expect(session!.tls).toMatchObject({verified: true, subject: 'localhost'})
    expect(session!.capabilities.startTls).toBe(false)
    expect(session!.capabilities.chunking).toBe(true)
    expect(phases.filter((p) => p.state === 'done').map((p) => p.phase)).toEqual(['connect', 'greeting', 'lhlo', 'starttls', 'tls', 'lhlo-again'])
  })

  test('a certificate that does not verify: kind tls, exit 74, the message names --tls-ca and --tls-insecure', async () => {
    const ctx = tls.createSecureContext({cert: cert.cert, key: cert.key})
    const {error} = await open(
      [...greetAndLhlo(['STARTTLS']), {expect: 'STARTTLS'}, {send: '220 2.0.0 go ahead'}, {tls: ctx}],
      {starttls: true, tlsServername: 'localhost'},
    )
    expect(error).toBeInstanceOf(SessionOpenError)
    expect(error).toMatchObject({phase: 'tls', kind: 'tls', code: 'DEPTH_ZERO_SELF_SIGNED_CERT'})
    expect(error!.message).toMatch(/--tls-ca FILE.*--tls-insecure/)
    expect(exitCodeForSessionError(error!)).toBe(74)
  })

  test.each([
    {name: 'connection refused', steps: 'closed-port', phase: 'connect', kind: 'connect', exit: 74},
    {name: '421 greeting', steps: 'S: 421 4.3.2 busy', phase: 'greeting', kind: 'refused', exit: 75},
    {name: '554 greeting', steps: 'S: 554 5.3.2 go away', phase: 'greeting', kind: 'refused', exit: 69},
    {name: 'garbage greeting', steps: 'S: hello there', phase: 'greeting', kind: 'protocol', exit: 76},
    {name: 'closed before the greeting', steps: '!close', phase: 'greeting', kind: 'lost', exit: 74},
    {name: 'LHLO refused (an SMTP server)', steps: 'S: 220 smtp.test ESMTP\nC: LHLO *\nS: 500 5.5.1 unknown command', phase: 'lhlo', kind: 'refused', exit: 69},
  ])('$name: $kind in $phase, exit $exit', async ({steps, phase, kind, exit}) => {
    let error: SessionOpenError | undefined
    if (steps === 'closed-port') {
      const f = await startFakeServer([])
      const target = f.target
      await f.close()
      error = await openSession(parseTarget(target), {lhloName: 'x', timeouts: quick}).then(
        () => undefined,
        (e: SessionOpenError) => e,
      )
    } else error = (await open(parseScript(steps))).error
    expect(error).toMatchObject({phase, kind})
    expect(exitCodeForSessionError(error!)).toBe(exit)
    if (phase === 'lhlo') expect(error!.message).toMatch(/SMTP server/)
  })

  test('--starttls when the server does not offer it: capability, exit 69, says drop --starttls', async () => {
    const {error} = await open(greetAndLhlo(['PIPELINING']), {starttls: true})
    expect(error).toMatchObject({phase: 'starttls', kind: 'capability'})
    expect(error!.message).toMatch(/drop --starttls/)
    expect(exitCodeForSessionError(error!)).toBe(69)
  })

  test('requireChunking without CHUNKING: capability, exit 69, names CHUNKING and says drop --bdat', async () => {
    const {error} = await open(greetAndLhlo(['PIPELINING']), {requireChunking: true})
    expect(error).toMatchObject({kind: 'capability'})
    expect(error!.message).toMatch(/CHUNKING.*drop --bdat/)
    expect(exitCodeForSessionError(error!)).toBe(69)
  })
})

describe('AUTH', () => {
  const plain = Buffer.from('\0alice\0s3cret').toString('base64')

  test('PLAIN with an initial response; the password never reaches the trace', async () => {
    const {session, trace, error} = await open(
      [...greetAndLhlo(['PIPELINING', 'AUTH LOGIN PLAIN']), {expect: `AUTH PLAIN ${plain}`}, {send: '235 2.7.0 ok'}],
      {auth: {user: 'alice', password: 's3cret'}},
    )
    expect(error).toBeUndefined()
    expect(session!.authenticated).toBe(true)
    expect(trace).toContain('C: AUTH PLAIN <credentials>')
    expect(trace.join('\n')).not.toContain(plain)
    expect(trace.join('\n')).not.toContain('s3cret')
  })

  test('LOGIN when PLAIN is not offered (old AUTH= form)', async () => {
    const {session, trace} = await open(
      [
        ...greetAndLhlo(['AUTH=LOGIN']),
        {expect: 'AUTH LOGIN'},
        {send: '334 VXNlcm5hbWU6'},
        {expect: Buffer.from('alice').toString('base64')},
        {send: '334 UGFzc3dvcmQ6'},
        {expect: Buffer.from('s3cret').toString('base64')},
        {send: '235 2.7.0 ok'},
      ],
      {auth: {user: 'alice', password: 's3cret'}},
    )
    expect(session!.authenticated).toBe(true)
    expect(trace.join('\n')).not.toContain(Buffer.from('s3cret').toString('base64'))
  })

  test('refused credentials: kind auth, exit 78, the reply kept', async () => {
    const {error} = await open(
      [...greetAndLhlo(['AUTH PLAIN']), {expect: /^AUTH PLAIN /}, {send: '535 5.7.8 authentication failed'}],
      {auth: {user: 'alice', password: 'wrong'}},
    )
    expect(error).toMatchObject({phase: 'auth', kind: 'auth', reply: {code: 535}})
    expect(exitCodeForSessionError(error!)).toBe(78)
  })

  test('no AUTH offered: capability, exit 69; no mechanism in common: capability', async () => {
    const none = await open(greetAndLhlo(['PIPELINING']), {auth: {user: 'a', password: 'b'}})
    expect(none.error).toMatchObject({phase: 'auth', kind: 'capability'})
    expect(none.error!.message).toMatch(/does not offer AUTH/)
    expect(exitCodeForSessionError(none.error!)).toBe(69)
    const other = await open(greetAndLhlo(['AUTH CRAM-MD5']), {auth: {user: 'a', password: 'b'}})
    expect(other.error).toMatchObject({kind: 'capability'})
  })

  test('credentials are never sent in clear text to a remote TCP target', async () => {
    const err = await openSession(parseTarget('192.0.2.1:24'), {lhloName: 'x', auth: {user: 'a', password: 'b'}}).catch((e) => e)
    expect(err).toMatchObject({kind: 'auth', phase: 'auth'})
    expect(err.message).toMatch(/--starttls/)
    expect(isLocalTarget(parseTarget('127.0.0.1:24'))).toBe(true)
    expect(isLocalTarget(parseTarget('[::1]:24'))).toBe(true)
    expect(isLocalTarget(parseTarget('unix:/tmp/x'))).toBe(true)
    expect(isLocalTarget(parseTarget('mx.example:24'))).toBe(false)
  })

  test('authMechanisms reads both keyword forms', () => {
    expect(authMechanisms(parseCapabilities(['x', 'AUTH PLAIN LOGIN']))).toEqual(['PLAIN', 'LOGIN'])
    expect(authMechanisms(parseCapabilities(['x', 'AUTH=login']))).toEqual(['LOGIN'])
    expect(authMechanisms(parseCapabilities(['x', 'PIPELINING']))).toBeUndefined()
  })
})
