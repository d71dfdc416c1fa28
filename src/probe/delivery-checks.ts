/**
 * The checks that need --deliver-to: they send message bodies to real mailboxes, so a vulnerable or broken
 * server may really deliver the test messages (each says in its Subject that it comes from `lmtp probe`).
 * The smuggling checks write raw bytes on the socket, because the protocol client's encoder would repair the
 * very line ends under test.
 */
import {randomBytes} from 'node:crypto'
import type {TransactionResult} from '../protocol/client.js'
import {type Reply, describeReply} from '../protocol/reply.js'
import type {RepliesEnd} from './connection.js'
import {type Check, type CheckContext, type CheckVerdict, verdict} from './context.js'
import {dovecotNote} from './session-checks.js'

/** A small test message (CRLF line ends) whose Subject says what it is for. */
export function probeMessage(ctx: CheckContext, purpose: string, bodyLines: string[]): string {
  const host = ctx.options.lhloName
  const headers = [
    `From: lmtp probe <lmtp-probe@${host}>`,
    `To: ${ctx.options.deliverTo.map((a) => `<${a}>`).join(', ')}`,
    `Subject: lmtp probe: ${purpose}`,
    `Date: ${ctx.now().toUTCString()}`,
    `Message-ID: <probe.${Date.now().toString(36)}.${randomBytes(4).toString('hex')}@${host}>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=us-ascii',
  ]
  return [...headers, '', `This message was sent by \`lmtp probe\` to test ${purpose}.`, 'It can be deleted.', '', ...bodyLines, ''].join('\r\n')
}

async function* once(text: string): AsyncIterable<Buffer> {
  yield Buffer.from(text)
}

/** Records a client transaction's replies for the enhanced-code check. */
function observeTransaction(ctx: CheckContext, res: TransactionResult): void {
  ctx.observed.push({command: 'MAIL FROM:<>', reply: res.mail, afterLhlo: true})
  for (const r of res.recipients) {
    if (r.synthetic) continue
    const reply: Reply = {code: r.code, enhanced: r.enhanced, lines: [r.text]}
    ctx.observed.push({command: r.stage === 'RCPT' ? `RCPT TO:<${r.recipient}>` : 'end of data', reply, afterLhlo: true})
  }
}

/** Sends one message with the protocol client over a fresh connection; always closes it. */
async function transaction(
  ctx: CheckContext,
  to: string[],
  body: string,
  extra: {bdat?: boolean; chunkSize?: number} = {},
): Promise<TransactionResult> {
  const client = await ctx.openClient()
  try {
    const res = await client.send({from: '', to, body: once(body), verifyReplyCount: true, lastInSession: true, ...extra})
    observeTransaction(ctx, res)
    return res
  } finally {
    await client.quit()
  }
}

/** Common verdicts for a transaction that could not test anything, or undefined when it did. */
function unusable(res: TransactionResult): CheckVerdict | undefined {
  if (res.mail.code !== 250) return verdict.skip(`MAIL FROM:<> was refused: "${describeReply(res.mail)}"`)
  if (res.recipients.every((r) => r.stage === 'RCPT')) {
    const first = res.recipients[0]!
    return verdict.skip(`every recipient was refused at RCPT ("${first.code} ${first.enhanced ?? ''} ${first.text}"); give --deliver-to a mailbox that exists`)
  }
  return undefined
}

/** A summary of per-recipient replies: `250 2.0.0, 452 4.2.2`. */
function codes(res: TransactionResult): string {
  return res.recipients.map((r) => (r.synthetic ? 'no reply' : `${r.code}${r.enhanced ? ` ${r.enhanced}` : ''}`)).join(', ')
}

const replyPerRecipient: Check = {
  id: 'reply-per-recipient',
  title: 'One reply per accepted RCPT after the body, duplicates included, in order',
  rfc: 'RFC 2033 §4.2',
  delivers: true,
  async run(ctx) {
    const list = ctx.options.deliverTo
    // The first mailbox twice: a duplicate still needs its own reply.
    const to = [list[0]!, list[0]!, ...list.slice(1)]
    const res = await transaction(ctx, to, probeMessage(ctx, 'one reply per recipient (the first recipient is given twice)', ['Nothing to see here.']))
    const bad = unusable(res)
    if (bad) return bad
    const accepted = res.recipients.filter((r) => r.stage === 'DATA')
    if (res.violation) return verdict.fail(`${res.violation} (replies: ${codes(res)}); an MTA waits for the missing replies until it times out, then defers the mail`)
    const lost = accepted.filter((r) => r.synthetic)
    if (lost.length > 0) return verdict.fail(`no reply for ${lost.length} of ${accepted.length} accepted recipients: ${lost[0]!.text}`)
    const lower = to.map((a) => a.toLowerCase())
    for (const r of accepted) {
      const named = /<([^<>@\s]+@[^<>\s]+)>/.exec(r.text)?.[1]?.toLowerCase()
      if (named && named !== lower[r.index] && lower.includes(named)) {
        return verdict.fail(`reply ${r.index + 1} ("${r.code} ${r.text}") names <${named}>, but recipient ${r.index + 1} is <${to[r.index]}>: replies out of RCPT order`)
      }
    }
    const dup = res.recipients[1]!
    const dupNote = dup.stage === 'RCPT' ? `; the duplicate RCPT was refused ("${dup.code} ${dup.text}")` : ''
    return verdict.pass(`${accepted.length} replies for ${accepted.length} accepted RCPTs, in order: ${codes(res)}${dupNote}`)
  },
}

const dotStuffing: Check = {
  id: 'dot-stuffing',
  title: 'Lines starting with a dot are accepted (dot-stuffing)',
  rfc: 'RFC 5321 §4.5.2',
  delivers: true,
  async run(ctx) {
    const lines = ['.', '..', '.a line starting with one dot', '..a line starting with two dots', '. a dot and a space']
    const res = await transaction(ctx, [ctx.options.deliverTo[0]!], probeMessage(ctx, 'dot-stuffing (five lines below start with dots)', lines))
    const bad = unusable(res)
    if (bad) return bad
    if (res.violation) return verdict.fail(res.violation)
    const r = res.recipients[0]!
    if (r.outcome !== 'delivered') return verdict.fail(`"${r.code} ${r.enhanced ?? ''} ${r.text}": a message with dot-stuffed lines was not delivered`)
    return verdict.pass(`accepted ("${r.code} ${r.enhanced ?? ''} ${r.text}"); the probe cannot read the mailbox: check that the message "lmtp probe: dot-stuffing" shows its five lines with their leading dots, one dot removed from each stuffed line`)
  },
}

const bdat: Check = {
  id: 'bdat',
  title: 'BDAT (CHUNKING) delivers a message sent in chunks',
  rfc: 'RFC 3030 §2, RFC 2033 §4.3',
  delivers: true,
  async run(ctx) {
    if (!ctx.capabilities.chunking) return verdict.skip('CHUNKING is not advertised')
    const filler = Array.from({length: 12}, (_, i) => `line ${i + 1} of a body sent in 256-octet BDAT chunks`)
    const res = await transaction(ctx, [ctx.options.deliverTo[0]!], probeMessage(ctx, 'BDAT chunks', filler), {bdat: true, chunkSize: 256})
    const bad = unusable(res)
    if (bad) return bad
    if (res.violation) return verdict.fail(res.violation)
    if (res.data && res.data.code !== 250) return verdict.fail(`a BDAT chunk was refused: "${describeReply(res.data)}"`)
    const r = res.recipients[0]!
    if (r.outcome !== 'delivered') return verdict.fail(`"${r.code} ${r.enhanced ?? ''} ${r.text}" after BDAT LAST`)
    return verdict.pass(`${res.bytes} octets in ${Math.ceil(res.bytes / 256)} chunks: "${r.code} ${r.enhanced ?? ''} ${r.text}"`)
  },
}

const bdatNoRecipients: Check = {
  id: 'bdat-last-no-recipients',
  title: 'BDAT LAST with no accepted recipient gets no reply',
  rfc: 'RFC 2033 §4.3',
  delivers: true,
  async run(ctx) {
    if (!ctx.capabilities.chunking) return verdict.skip('CHUNKING is not advertised')
    const c = await ctx.open({lhlo: true})
    try {
      const mail = await c.command('MAIL FROM:<>')
      if (mail.code !== 250) return verdict.skip(`MAIL FROM:<> was refused: "${describeReply(mail)}"`)
      // No RCPT at all: zero successful recipients. A NOOP and a QUIT follow at once; the NOOP's reply must be
      // the only thing before the QUIT's 221.
      const {replies, end} = await c.writeThenQuit('BDAT 7 LAST\r\nprobe\r\nNOOP\r\n')
      if (end !== 'quit') return verdict.fail(`the pipelined NOOP and QUIT got no complete answer (${end}); replies seen: ${replies.map(describeReply).join(' | ') || 'none'}`)
      if (replies.length === 1) return verdict.pass(`no reply to BDAT LAST; the NOOP's reply came first ("${describeReply(replies[0]!)}")`)
      if (replies.length === 0) return verdict.fail('not even the NOOP was answered')
      const first = replies[0]!
      if (first.code >= 200 && first.code < 300) {
        return verdict.fail(`BDAT LAST with no recipient got "${describeReply(first)}": a success for a message that goes nowhere`)
      }
      return verdict.warn(`BDAT LAST with no recipient got "${describeReply(first)}" before the NOOP's reply; RFC 2033 says zero replies, so a client that pipelines BDAT LAST after refused RCPTs gets one reply too many${dovecotNote(ctx, ' (Dovecot answers 503 here)')}`)
    } finally {
      await c.quit()
    }
  },
}

/** The three bare-line-end endings that must not end a message, and readable names for them. */
export const SMUGGLING_VARIANTS: {id: string; name: string; bytes: string}[] = [
  {id: 'lf-dot-lf', name: '<LF>.<LF>', bytes: '\n.\n'},
  {id: 'crlf-dot-lf', name: '<CR><LF>.<LF>', bytes: '\r\n.\n'},
  {id: 'lf-dot-crlf', name: '<LF>.<CR><LF>', bytes: '\n.\r\n'},
]

/**
 * When a smuggling failure matters: only a client that writes bare line ends can exploit it. Postfix's LMTP
 * client writes every line with CRLF and dot-stuffs it, so behind Postfix the bytes never arrive as sent.
 */
export const SMUGGLING_UPSTREAM_NOTE =
  'closed upstream when Postfix is the only client: Postfix rewrites every line end to <CR><LF> and dot-stuffs before LMTP, so bare line ends never reach this server; it stays open to anything else that can connect here (scripts, other MTAs, fetchmail)'

/** What the server's replies to a smuggling attempt (the replies before the pipelined QUIT's 221) mean. */
export function judgeSmuggling(name: string, replies: Reply[], end: RepliesEnd): CheckVerdict {
  const seen = replies.map((r) => String(r.code)).join(', ')
  if (replies.length > 1 || replies.some((r) => r.code === 354)) {
    const last = replies.at(-1)?.code ?? 0
    const second = replies.some((r) => r.code === 354) && last >= 200 && last < 300
    return verdict.fail(
      `the server ended the message at ${name} and ran the injected commands as a new transaction (replies ${seen}${second ? '; a second, forged message was delivered' : ''}): SMTP smuggling; only <CR><LF>.<CR><LF> may end the data. The risk is ${SMUGGLING_UPSTREAM_NOTE}`,
    )
  }
  if (replies.length === 1) {
    const r = replies[0]!
    if (r.code >= 200 && r.code < 300) return verdict.pass(`one reply for the whole body ("${describeReply(r)}"): ${name} did not end the message`)
    return verdict.pass(`the message was refused as a whole ("${describeReply(r)}"), nothing was injected`)
  }
  if (end === 'closed' || end === 'quit') return verdict.warn(`the server ${end === 'quit' ? 'answered QUIT' : 'closed the connection'} without answering the message (nothing was injected, but no reply either)`)
  return verdict.fail(`no reply after the real end of data (${end}): the server may still be reading, or lost track of the body`)
}

function smugglingCheck(v: {id: string; name: string; bytes: string}): Check {
  return {
    id: `smuggling-${v.id}`,
    title: `SMTP smuggling: ${v.name} in the body does not end the message`,
    rfc: 'RFC 5321 §4.1.1.4, §2.3.8',
    delivers: true,
    async run(ctx) {
      const rcpt = ctx.options.deliverTo[0]!
      const c = await ctx.open({lhlo: true})
      try {
        const mail = await c.command('MAIL FROM:<>')
        if (mail.code !== 250) return verdict.skip(`MAIL FROM:<> was refused: "${describeReply(mail)}"`)
        const r = await c.command(`RCPT TO:<${rcpt}>`)
        if (r.code < 200 || r.code >= 300) return verdict.skip(`RCPT TO:<${rcpt}> was refused: "${describeReply(r)}"`)
        const data = await c.command('DATA')
        if (data.code !== 354) return verdict.fail(`DATA got "${describeReply(data)}" with an accepted recipient`)
        const head = probeMessage(ctx, `SMTP smuggling with ${v.name}`, ['The next line ends with a bare line end.']).replace(/\r\n$/, '')
        const injected = [
          'MAIL FROM:<>',
          `RCPT TO:<${rcpt}>`,
          'DATA',
          `Subject: lmtp probe: SMUGGLED message (${v.name} ended the previous one)`,
          '',
          'If this arrived as a message of its own, the server is open to SMTP smuggling.',
        ].join('\r\n')
        const {replies, end} = await c.writeThenQuit(`${head}${v.bytes}${injected}\r\n.\r\n`)
        return judgeSmuggling(v.name, replies, end)
      } finally {
        await c.quit()
      }
    },
  }
}

/** Every check that delivers, in the order they run. */
export const deliveryChecks: Check[] = [replyPerRecipient, dotStuffing, bdat, bdatNoRecipients, ...SMUGGLING_VARIANTS.map(smugglingCheck)]
