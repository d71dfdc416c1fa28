/**
 * Replay against real peers: a generated Maildir tree, an mbox and an .eml directory into Dovecot (every
 * message arrives once, counts match the summary); open-loop --rate against smtp-sink (the achieved rate is
 * reported, not asserted); a corrupt corpus item skipped and counted; smtp-sink killed mid-run gives deferred
 * outcomes and reconnects, not a crash.
 */
import {mkdir, mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, expect, test} from 'vitest'
import {runReplay, type ReplayOptions} from '../../src/replay/driver.js'
import {generateMessages} from '../../src/replay/generate.js'
import {renderSummary} from '../../src/replay/render.js'
import {readSources} from '../../src/replay/sources.js'
import {type Dovecot, describePeers, type SmtpSink, startDovecot, startSmtpSink} from '../support/peers.js'
import {startServe} from '../support/serve.js'

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'lmtp-replay-peers-'))
})
afterAll(async () => {
  await rm(dir, {recursive: true, force: true})
})

const base = (port: number): Pick<ReplayOptions, 'target' | 'lhloName' | 'concurrency'> => ({
  target: {kind: 'tcp', host: '127.0.0.1', port},
  lhloName: 'replay.test',
  concurrency: 3,
})

function message(user: string, id: string): string {
  return `Delivered-To: ${user}@example.com\nReturn-Path: <sender@example.org>\nMessage-ID: <${id}@replay.test>\nSubject: ${id}\n\nbody of ${id}\n`
}

describePeers('replay a corpus into Dovecot', ['dovecot'], () => {
  let dovecot: Dovecot
  beforeAll(async () => {
    dovecot = await startDovecot({users: []})
  })
  afterAll(async () => {
    await dovecot?.stop()
  })

  async function arrived(user: string): Promise<string[]> {
    const names = await dovecot.newMessages(user)
    const ids = await Promise.all(
      names.map(async (n) => /Message-ID: <([^@>]+)@/.exec(await readFile(path.join(dovecot.maildir(user), 'new', n), 'utf8'))?.[1] ?? '?'),
    )
    return ids.sort()
  }

  test('a Maildir tree, an mbox and an .eml directory: every message arrives once, counts match', async () => {
    // Maildir tree with a Maildir++ folder: 4 messages for user md.
    const md = path.join(dir, 'maildir')
    for (const box of ['', '.Archive']) for (const sub of ['cur', 'new', 'tmp']) await mkdir(path.join(md, box, sub), {recursive: true})
    await writeFile(path.join(md, 'new', '1.M1.h'), message('md', 'md1'))
    await writeFile(path.join(md, 'new', '2.M2.h'), message('md', 'md2'))
    await writeFile(path.join(md, 'cur', '3.M3.h:2,S'), message('md', 'md3'))
    await writeFile(path.join(md, '.Archive', 'cur', '4.M4.h:2,S'), message('md', 'md4'))
    await writeFile(path.join(md, 'tmp', '5.M5.h'), message('md', 'never'))
    // mbox: 3 messages for user mb, one with an escaped From line.
    const mbox = path.join(dir, 'corpus.mbox')
    await writeFile(
      mbox,
      ['mb1', 'mb2', 'mb3']
        .map((id) => `From sender@example.org Thu Nov 27 10:00:00 2025\n${message('mb', id)}>From the body\n\n`)
        .join(''),
    )
    // .eml directory: 2 messages for user em plus one corrupt item.
    const emls = path.join(dir, 'emls')
    await mkdir(emls)
    await writeFile(path.join(emls, 'a.eml'), message('em', 'em1').replace(/\n/g, '\r\n'))
    await writeFile(path.join(emls, 'b.eml'), message('em', 'em2'))
    await writeFile(path.join(emls, 'corrupt.eml'), '\n\x00\x01 not a message\n')

    const summary = await runReplay({...base(dovecot.port), input: () => readSources([md, mbox, emls])})
    expect(summary.messages).toEqual({total: 9, delivered: 9, deferred: 0, rejected: 0})
    expect(summary.recipients.delivered).toBe(9)
    expect(summary.input.skipped).toBe(1)
    expect(summary.input.problems).toEqual([expect.objectContaining({reason: expect.stringMatching(/no headers/)})])
    // Every message sent was delivered, but one input item was not sent: not a success.
    expect(summary.exitCode).toBe(65)
    expect(await arrived('md')).toEqual(['md1', 'md2', 'md3', 'md4'])
    expect(await arrived('mb')).toEqual(['mb1', 'mb2', 'mb3'])
    expect(await arrived('em')).toEqual(['em1', 'em2'])
    const mbBody = await readFile(path.join(dovecot.maildir('mb'), 'new', (await dovecot.newMessages('mb'))[0]!), 'utf8')
    expect(mbBody).toMatch(/\nFrom the body\n/)
    expect(mbBody).not.toMatch(/>From the body/)
  })
})

describePeers('--compare against Dovecot, whose replies carry a unique id', ['dovecot'], () => {
  test('12 changes, each reply text different (<bob> <id> Saved): one group, its totals, nothing left out unsaid', async () => {
    // Recorded on lmtp serve, which knows alice only: bob was refused (550 5.1.1) 12 times.
    const rec = path.join(dir, 'rec-compare')
    const usersFile = path.join(dir, 'users-alice')
    await writeFile(usersFile, 'alice@example.com\n')
    const recorder = await startServe({record: rec, usersFile})
    const recorded = await runReplay({
      ...base(recorder.port),
      concurrency: 1,
      count: 12,
      generated: true,
      from: 'load@example.org',
      to: ['alice@example.com', 'bob@example.com'],
      input: () => generateMessages({size: 300, from: 'load@example.org', to: ['alice@example.com', 'bob@example.com']}),
    })
    await recorder.stop()
    await recorder.cleanup()
    expect(recorded.recipients.rejected).toBe(12)
    // Dovecot knows everyone: bob is now delivered, with a reply text of its own each time.
    const dovecot = await startDovecot({users: []})
    try {
      const summary = await runReplay({...base(dovecot.port), compare: true, input: () => readSources([rec])})
      const texts = new Set(summary.compare!.changes.map((c) => c.now.text))
      expect(texts.size).toBe(12)
      expect(summary.compare).toMatchObject({compared: 24, unchanged: 12, changed: 12})
      expect(summary.compare!.groups).toEqual([
        expect.objectContaining({recorded: {code: 550, enhanced: '5.1.1'}, now: expect.objectContaining({code: 250, text: 'Saved'}), count: 12, recipientCount: 1}),
      ])
      const text = renderSummary(summary)
      expect(text).toMatch(/\n {2}changed {3}550 5\.1\.1 -> 250 2\.0\.0 "Saved": 12 changes, 1 recipient \(first in .*\)\n {14}bob@example\.com x12$/)
      expect(summary.exitCode).toBe(76)
    } finally {
      await dovecot.stop()
    }
  })
})

describePeers('replay load against smtp-sink', ['smtp-sink'], () => {
  test('open loop --rate: the achieved rate is reported (measured, not asserted)', async () => {
    const sink = await startSmtpSink()
    try {
      const summary = await runReplay({
        ...base(sink.port),
        concurrency: 4,
        rate: 200,
        count: 200,
        from: 'load@example.org',
        to: ['sink@example.com'],
        generated: true,
        input: () => generateMessages({size: 1024, from: 'load@example.org', to: ['sink@example.com']}),
      })
      console.log(`[replay] --rate 200 against smtp-sink: started ${summary.throughput.startedPerSec}/s, finished ${summary.throughput.messagesPerSec}/s, message p99 ${summary.latency.message.p99} ms`)
      expect(summary.mode).toBe('open-loop')
      expect(summary.targetRate).toBe(200)
      expect(summary.messages.delivered).toBe(200)
      expect(summary.throughput.startedPerSec).toBeGreaterThan(0)
      expect(summary.latency.message.count).toBe(200)
      expect(summary.exitCode).toBe(0)
    } finally {
      await sink.stop()
    }
  })

  test('smtp-sink killed mid-run and started again: in-flight recipients deferred, workers reconnect, the run completes', async () => {
    let sink: SmtpSink | undefined = await startSmtpSink()
    const port = sink.port
    let killed = false
    let restarted: Promise<void> | undefined
    const summary = await runReplay({
      ...base(port),
      concurrency: 4,
      rate: 100,
      count: 150,
      from: 'load@example.org',
      to: ['sink@example.com'],
      generated: true,
      reconnectForMs: 20_000,
      input: () => generateMessages({size: 1024, from: 'load@example.org', to: ['sink@example.com']}),
      onProgress: (p) => {
        if (!killed && p.done >= 40) {
          killed = true
          const old = sink!
          sink = undefined
          restarted = old.stop().then(async () => {
            sink = await startSmtpSink({port})
          })
        }
      },
    })
    await restarted
    await sink?.stop()
    expect(killed).toBe(true)
    expect(summary.messages.total).toBe(150)
    expect(summary.recipients.delivered).toBeGreaterThan(40)
    expect(summary.recipients.delivered + summary.recipients.deferred).toBe(150)
    expect(summary.connections.opened).toBeGreaterThan(4)
    // The sessions the kill ended are lost; the ones replay QUIT at the end are not.
    expect(summary.connections.lost).toBeGreaterThan(0)
    expect(summary.connections.closed + summary.connections.lost).toBe(summary.connections.opened)
    expect(summary.aborted).toBeUndefined()
    expect([0, 75]).toContain(summary.exitCode)
  })

  test('smtp-sink killed and gone: deferred outcomes and exit 74 after --reconnect-for, not a crash', async () => {
    const sink = await startSmtpSink()
    let stopping: Promise<void> | undefined
    const summary = await runReplay({
      ...base(sink.port),
      concurrency: 2,
      rate: 100,
      count: 1000,
      from: 'load@example.org',
      to: ['sink@example.com'],
      generated: true,
      reconnectForMs: 1000,
      input: () => generateMessages({size: 1024, from: 'load@example.org', to: ['sink@example.com']}),
      onProgress: (p) => {
        if (!stopping && p.done >= 20) stopping = sink.stop()
      },
    })
    await stopping
    expect(summary.messages.total).toBeLessThan(1000)
    expect(summary.recipients.deferred).toBeGreaterThan(0)
    expect(summary.aborted).toMatch(/gave up after 1s/)
    expect(summary.exitCode).toBe(74)
  })
})
