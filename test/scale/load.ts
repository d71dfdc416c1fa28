/**
 * Load and accounting checks shared by the scale-out tests: client sessions that deliver numbered messages and
 * keep a ledger of every acknowledged (message, recipient), and a survey of the shared Maildir that finds every
 * stored message by its Message-ID, compares each mailbox's `maildirsize` with its files and checks quotas.
 */
import {readdir, readFile} from 'node:fs/promises'
import path from 'node:path'
import {MAILDIRSIZE, parseMaildirSize, scanUsage, type Usage} from '../../src/delivery/quota.js'
import {connectTarget, type Target} from '../../src/net/target.js'
import {LmtpClient, uniformTimeouts} from '../../src/protocol/client.js'

/** What the sessions sent and what they were told. */
export interface Ledger {
  /** Every (message id, recipient) that got a 250 after the body. */
  acked: {id: string; rcpt: string}[]
  /** Transactions started. */
  transactions: number
  /** Recipients answered 452 4.2.2 (over quota). */
  overQuota: number
  /** Sessions cut (connection lost, timeout). */
  lostSessions: number
}

/** A fresh ledger. */
export function newLedger(): Ledger {
  return {acked: [], transactions: 0, overQuota: 0, lostSessions: 0}
}

/** One message with a Message-ID the survey can find, about `size` octets of body, CRLF line ends. */
export function makeMessage(id: string, size: number): Buffer {
  const head = `Message-ID: <${id}@scale.test>\r\nSubject: scale ${id}\r\nFrom: <sender@example.org>\r\n\r\n`
  const lines: string[] = []
  let n = head.length
  for (let i = 0; n < size; i++) {
    const line = `${id} line ${i} `.padEnd(70, 'x')
    lines.push(line)
    n += line.length + 2
  }
  return Buffer.from(`${head}${lines.join('\r\n')}\r\n`)
}

/** How one client session behaves. */
export interface SessionPlan {
  /** Where to connect (each session opens new connections until its messages are sent). */
  target: () => Target
  /** Recipients of every message. */
  to: string[]
  /** Size of a message body in octets for the n-th message of this session. */
  size: (n: number) => number
  /** Messages per connection before QUIT. */
  perConnection: number
  /** Called after each acknowledged delivery (tests use it as an explicit signal, e.g. to kill an instance). */
  onAck?: (ledger: Ledger) => void
}

/**
 * Runs one session until `count` transactions were attempted. A lost connection counts the transaction as
 * attempted (its unanswered recipients were not acknowledged, so they need not be stored) and reconnects.
 */
export async function runSession(name: string, count: number, plan: SessionPlan, ledger: Ledger, nextId: () => string): Promise<void> {
  let done = 0
  while (done < count) {
    let client: LmtpClient
    try {
      client = new LmtpClient(await connectTarget(plan.target(), 5000), {timeouts: uniformTimeouts(30_000), sessionId: name})
    } catch {
      ledger.lostSessions++
      continue
    }
    try {
      await client.start()
      await client.lhlo(`${name}.scale.test`)
      for (let k = 0; k < plan.perConnection && done < count && !client.closed; k++) {
        const id = nextId()
        done++
        ledger.transactions++
        const res = await client.send({from: 'sender@example.org', to: plan.to, body: [makeMessage(id, plan.size(done))]})
        for (const r of res.recipients) {
          if (r.stage !== 'DATA') continue
          if (r.code === 250) {
            ledger.acked.push({id, rcpt: r.recipient})
            plan.onAck?.(ledger)
          } else if (r.code === 452) ledger.overQuota++
        }
      }
      await client.quit()
    } catch {
      ledger.lostSessions++
      client.close()
    }
  }
}

/** One mailbox as found on disk. */
export interface MailboxSurvey {
  /** Message ids stored (one entry per file, so a duplicate appears twice). */
  ids: string[]
  /** What the files add up to. */
  files: Usage
  /** What maildirsize says (sum of its lines), undefined when missing or malformed. */
  maildirsize: Usage | undefined
  /** Files left in tmp/. */
  tmpLeft: number
}

/** Reads every mailbox `ROOT/<domain>/<local>/`: ids of the stored messages, usage by files and by maildirsize. */
export async function surveyMaildir(root: string, domain: string): Promise<Map<string, MailboxSurvey>> {
  const out = new Map<string, MailboxSurvey>()
  for (const local of await readdir(path.join(root, domain))) {
    const box = path.join(root, domain, local)
    const ids: string[] = []
    for (const sub of ['new', 'cur']) {
      for (const f of await readdir(path.join(box, sub)).catch(() => [] as string[])) {
        const text = (await readFile(path.join(box, sub, f))).toString('latin1')
        ids.push(/^Message-ID: <([^@>]+)@scale\.test>$/m.exec(text)?.[1] ?? `unreadable:${f}`)
      }
    }
    const text = await readFile(path.join(box, MAILDIRSIZE), 'latin1').catch(() => undefined)
    const parsed = text === undefined ? undefined : parseMaildirSize(text)
    const tmpLeft = (await readdir(path.join(box, 'tmp')).catch(() => [] as string[])).length
    out.set(`${local}@${domain}`, {
      ids,
      files: await scanUsage(box),
      maildirsize: parsed && {bytes: parsed.bytes, count: parsed.count},
      tmpLeft,
    })
  }
  return out
}

/** Acknowledged deliveries missing from their mailbox, and messages stored more than once in one mailbox. */
export function reconcile(ledger: Ledger, survey: Map<string, MailboxSurvey>): {lost: string[]; duplicates: string[]} {
  const stored = new Map<string, number>()
  for (const [mailbox, s] of survey) for (const id of s.ids) stored.set(`${id} ${mailbox}`, (stored.get(`${id} ${mailbox}`) ?? 0) + 1)
  const lost = ledger.acked.map((a) => `${a.id} ${a.rcpt}`).filter((k) => !stored.has(k))
  const duplicates = [...stored].filter(([, n]) => n > 1).map(([k]) => k)
  return {lost, duplicates}
}

/** Mailboxes whose maildirsize does not add up to their files (a missing file counts as a mismatch). */
export function maildirsizeMismatches(survey: Map<string, MailboxSurvey>): string[] {
  return [...survey]
    .filter(([, s]) => s.maildirsize === undefined || s.maildirsize.bytes !== s.files.bytes || s.maildirsize.count !== s.files.count)
    .map(
      ([m, s]) =>
        `${m}: maildirsize ${s.maildirsize ? `${s.maildirsize.bytes} B / ${s.maildirsize.count}` : 'missing'}, files ${s.files.bytes} B / ${s.files.count}`,
    )
}

/** Runs `sessions` sessions of `count` transactions each, with ids unique across all of them (`<prefix><n>`). */
export async function runLoad(sessions: number, count: number, plan: (s: number) => SessionPlan, ledger: Ledger, prefix = 'm'): Promise<void> {
  let counter = 0
  await Promise.all(Array.from({length: sessions}, (_, s) => runSession(`s${s}`, count, plan(s), ledger, () => `${prefix}${++counter}`)))
}
