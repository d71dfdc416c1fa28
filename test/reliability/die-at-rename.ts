/**
 * Child process of quota-crash.test.ts: delivers one message to a quota'd mailbox normally, then a second one
 * that stops at the rename into new/ (`before`: the rename never happens; `after`: the rename happened) and
 * prints READY, waiting there to be SIGKILLed: a crash at exactly the moment where quota accounting can drift.
 * Usage: node --import tsx die-at-rename.ts ROOT before|after
 */
import {MaildirBackend} from '../../src/delivery/maildir-backend.js'
import {type MaildirFs, realFs} from '../../src/delivery/maildir.js'
import {envelope, session, spoolOf} from '../delivery/helpers.js'

const [root, point] = process.argv.slice(2) as [string, 'before' | 'after']
let armed = false
const forever = new Promise<never>(() => {})
const fs: MaildirFs = {
  ...realFs,
  rename: async (from, to) => {
    if (!armed || !to.includes('/new/')) return realFs.rename(from, to)
    if (point === 'after') await realFs.rename(from, to)
    process.stdout.write('READY\n')
    return forever
  },
}
const backend = new MaildirBackend({root, hostname: 'mx.test', defaultQuota: 1_000_000, fs})
const env = envelope('a@example.org', ['q@example.com'])
const spool = await spoolOf(`${root}/.lmtp-spool`, `Subject: one\r\n\r\n${'x'.repeat(5000)}\r\n`)
await backend.deliver(env, spool, session, () => {})
armed = true
const spool2 = await spoolOf(`${root}/.lmtp-spool`, `Subject: two\r\n\r\n${'y'.repeat(7000)}\r\n`)
await backend.deliver(env, spool2, session, () => {})
