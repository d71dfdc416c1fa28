/**
 * The non-destructive checks: what the server advertises and how it answers commands in every state. None of
 * them sends a message body; the envelope ones use a null sender and end with RSET.
 */
import {requiresAuth} from '../client/outcome.js'
import {type Reply, describeReply} from '../protocol/reply.js'
import type {ProbeConnection} from './connection.js'
import {type Check, type CheckContext, type CheckVerdict, verdict} from './context.js'

const GREETING_SLOW_MS = 5000
const CERT_EXPIRY_WARN_DAYS = 14

/** The recipient used for envelope checks: the first --deliver-to mailbox, or `postmaster` (always valid). */
export function envelopeRecipient(ctx: Pick<CheckContext, 'options'>): string {
  return ctx.options.deliverTo[0] ?? 'postmaster'
}

const is2xx = (r: Reply): boolean => r.code >= 200 && r.code < 300

/** True when the greeting says the server is Dovecot (comparisons with Dovecot are then left out). */
export function isDovecot(ctx: Pick<CheckContext, 'greeting'>): boolean {
  return /\bDovecot\b/i.test(ctx.greeting.text)
}

/** `note` (a comparison with Dovecot, which operators know), or '' when the server probed is Dovecot. */
export function dovecotNote(ctx: Pick<CheckContext, 'greeting'>, note: string): string {
  return isDovecot(ctx) ? '' : note
}

/** Runs `fn` on a fresh connection and always closes it. */
async function withConnection<T>(ctx: CheckContext, lhlo: boolean, fn: (c: ProbeConnection) => Promise<T>): Promise<T> {
  const c = await ctx.open({lhlo})
  try {
    return await fn(c)
  } finally {
    await c.quit()
  }
}

/** Checks that read the facts of the main session. */
export const factChecks: Check[] = [
  {
    id: 'greeting',
    title: 'Greeting 220 within the timeout',
    rfc: 'RFC 5321 §4.3.1',
    async run(ctx) {
      const g = ctx.greeting
      const seen = `${g.code} in ${g.ms} ms ("${g.text}")`
      if (g.ms > GREETING_SLOW_MS) {
        return verdict.warn(`${seen}: slow; a slow greeting usually means reverse DNS lookups or an overloaded server`)
      }
      return verdict.pass(seen)
    },
  },
  {
    id: 'port-25',
    title: 'Not listening on port 25',
    rfc: 'RFC 2033 §5',
    async run(ctx) {
      const t = ctx.options.target
      if (t.kind === 'unix') return verdict.pass('Unix socket')
      if (t.port === 25) {
        return verdict.fail('an LMTP server answers on port 25, the SMTP port: LMTP MUST NOT be used there (mail from the internet would reach a server with no queue)')
      }
      return verdict.pass(`port ${t.port}`)
    },
  },
  {
    id: 'pipelining-advertised',
    title: 'PIPELINING advertised',
    rfc: 'RFC 2033 §5',
    async run(ctx) {
      return ctx.capabilities.pipelining
        ? verdict.pass('advertised')
        : verdict.fail('not advertised: an LMTP server MUST implement PIPELINING (clients then wait for every reply)')
    },
  },
  {
    id: 'enhancedstatuscodes-advertised',
    title: 'ENHANCEDSTATUSCODES advertised',
    rfc: 'RFC 2033 §5',
    async run(ctx) {
      return ctx.capabilities.enhancedStatusCodes
        ? verdict.pass('advertised')
        : verdict.fail('not advertised: an LMTP server MUST implement ENHANCEDSTATUSCODES (an MTA cannot tell "mailbox full" from "no such user" without them)')
    },
  },
  {
    id: '8bitmime-advertised',
    title: '8BITMIME advertised',
    rfc: 'RFC 2033 §5',
    async run(ctx) {
      return ctx.capabilities.eightBitMime
        ? verdict.pass('advertised')
        : verdict.warn('not advertised: an LMTP server SHOULD implement 8BITMIME; an MTA must downgrade or bounce 8-bit mail')
    },
  },
  {
    id: 'dsn-not-advertised',
    title: 'DSN not advertised by a final delivery agent',
    rfc: 'RFC 3461 §4',
    async run(ctx) {
      return ctx.capabilities.dsn
        ? verdict.warn('DSN is advertised: Postfix then treats this server as an intermediate hop, passes NOTIFY on and stops sending the "delivered" notices senders asked for, unless this server really sends them itself')
        : verdict.pass('not advertised (the MTA in front keeps sending delivery notices)')
    },
  },
  {
    id: 'starttls',
    title: 'STARTTLS works and resets the session',
    rfc: 'RFC 3207 §4.2',
    async run(ctx) {
      const t = ctx.tls
      if (!t?.offered) {
        return ctx.options.starttls
          ? verdict.fail('--starttls was asked for, but the server does not offer STARTTLS')
          : verdict.skip('not offered (normal for LMTP on loopback or a Unix socket)')
      }
      if (!t.established) return verdict.fail(`offered, but the upgrade failed: ${t.error ?? 'unknown error'}`)
      const seen = `${t.protocol ?? '?'} ${t.cipher ?? '?'}, handshake ${t.handshakeMs ?? '?'} ms`
      if (ctx.tlsCapabilities?.startTls) {
        return verdict.fail(`${seen}; but STARTTLS is still advertised inside TLS (the session state was not reset)`)
      }
      return verdict.pass(`${seen}; STARTTLS no longer advertised afterwards`)
    },
  },
  {
    id: 'tls-certificate',
    title: 'TLS certificate verifies and is not about to expire',
    rfc: 'RFC 3207 §4.1',
    async run(ctx) {
      const t = ctx.tls
      if (!t?.established) return verdict.skip('no TLS session')
      if (t.daysToExpiry !== undefined && t.daysToExpiry < 0) return verdict.fail(`expired ${-t.daysToExpiry} days ago (${t.validTo})`)
      if (!t.verified) {
        const why = `does not verify against the system CAs (${t.verifyError ?? 'unknown reason'}); clients need --tls-ca or --tls-insecure`
        if (ctx.options.starttls && !ctx.options.tlsInsecure) return verdict.fail(`${why}; pass --tls-insecure to accept it`)
        return verdict.warn(why)
      }
      if (t.daysToExpiry !== undefined && t.daysToExpiry < CERT_EXPIRY_WARN_DAYS) {
        return verdict.warn(`verifies, but expires in ${t.daysToExpiry} days (${t.validTo})`)
      }
      return verdict.pass(`verifies; expires in ${t.daysToExpiry ?? '?'} days`)
    },
  },
]

/** Whether the server requires LMTP AUTH, and whether the checks ran authenticated. */
export const authCheck: Check = {
  id: 'auth',
  title: 'Transactions allowed (LMTP AUTH)',
  rfc: 'RFC 4954 §4, §6',
  async run(ctx) {
    const a = ctx.auth
    const offered = a.mechanisms.length > 0 ? `AUTH ${a.mechanisms.join(' ')} offered` : 'AUTH not offered'
    if (a.error) return verdict.fail(`${a.error}; the other checks ran without authentication`)
    if (a.user) return verdict.pass(`${offered}; the checks ran authenticated as ${a.user}`)
    if (a.required) {
      return verdict.warn(
        `the server requires authentication: MAIL FROM:<> was refused until AUTH, so the checks that need a transaction were skipped or judged unauthenticated; an MTA in front must authenticate too (Postfix: lmtp_sasl_auth_enable). Next: run probe again with --auth USER (password from --auth-password-file FILE or $LMTP_AUTH_PASSWORD)`,
      )
    }
    return a.mechanisms.length > 0 ? verdict.pass(`${offered}, not required`) : verdict.skip(`${offered} (normal: an LMTP server trusts its network or socket)`)
  },
}

/** HELO or EHLO on a fresh connection: any 2xx is a failure. */
function heloCheck(verb: 'HELO' | 'EHLO'): Check {
  return {
    id: `${verb.toLowerCase()}-refused`,
    title: `${verb} not accepted`,
    rfc: 'RFC 2033 §4.1',
    run: (ctx) =>
      withConnection(ctx, false, async (c) => {
        const r = await c.command(`${verb} ${ctx.options.lhloName}`)
        if (is2xx(r)) {
          return verdict.fail(`${verb} got "${describeReply(r)}": an LMTP server MUST NOT accept ${verb}, or an SMTP client could take it for an SMTP server (500 is recommended)`)
        }
        return verdict.pass(`"${describeReply(r)}"`)
      }),
  }
}

/** Checks that open their own connections and send commands, but no message body. */
export const commandChecks: Check[] = [
  heloCheck('HELO'),
  heloCheck('EHLO'),
  {
    id: 'mail-before-lhlo',
    title: 'MAIL before LHLO refused',
    rfc: 'RFC 5321 §4.1.4',
    run: (ctx) =>
      withConnection(ctx, false, async (c) => {
        const r = await c.command('MAIL FROM:<>')
        if (r.code === 503) return verdict.pass(`"${describeReply(r)}"`)
        if (requiresAuth(r)) return verdict.pass(`"${describeReply(r)}": refused, authentication comes first on this server`)
        if (is2xx(r)) {
          await c.command('RSET')
          return verdict.warn(`accepted: "${describeReply(r)}"${dovecotNote(ctx, ' (Dovecot does this too)')}; harmless for MTAs, which always send LHLO first, but the server skips the handshake that negotiates extensions`)
        }
        return verdict.warn(`"${describeReply(r)}": refused, but 503 (bad sequence) is the expected code`)
      }),
  },
  {
    id: 'data-without-rcpt',
    title: 'DATA with no accepted recipient answered 503',
    rfc: 'RFC 2033 §4.2',
    run: (ctx) =>
      withConnection(ctx, true, async (c) => {
        const mail = await c.command('MAIL FROM:<>')
        if (!is2xx(mail)) return verdict.skip(`MAIL FROM:<> was refused: "${describeReply(mail)}"`)
        const r = await c.command('DATA')
        if (r.code === 503) return verdict.pass(`"${describeReply(r)}"`)
        if (r.code === 354) {
          // Never send a body here: drop the connection so the server abandons the transaction.
          c.close()
          return verdict.fail('354: the server invited a message with no recipient; it MUST answer 503')
        }
        return verdict.fail(`"${describeReply(r)}": with no successful RCPT, DATA MUST fail with 503`)
      }),
  },
  {
    id: 'rset-noop',
    title: 'RSET and NOOP work in every state',
    rfc: 'RFC 5321 §4.1.1.5, §4.1.1.9',
    run: (ctx) =>
      withConnection(ctx, false, async (c) => {
        const bad: string[] = []
        const notes: string[] = []
        const probe = async (state: string, line: string): Promise<void> => {
          const r = await c.command(line)
          if (!is2xx(r)) bad.push(`${line} after ${state}: "${describeReply(r)}"`)
        }
        await probe('the greeting', 'NOOP')
        await probe('the greeting', 'RSET')
        const lhlo = await c.command(`LHLO ${ctx.options.lhloName}`)
        if (lhlo.code !== 250) return verdict.fail(`LHLO refused on a fresh connection: "${describeReply(lhlo)}"`)
        await ctx.authenticate(c)
        await probe('LHLO', 'NOOP')
        await probe('LHLO', 'RSET')
        const mail = await c.command('MAIL FROM:<>')
        if (is2xx(mail)) {
          await probe('MAIL', 'NOOP')
          const rcpt = await c.command(`RCPT TO:<${envelopeRecipient(ctx)}>`)
          if (is2xx(rcpt)) {
            await probe('RCPT', 'NOOP')
            await probe('RCPT', 'RSET')
            // After RSET the transaction is gone: a RCPT now must be refused.
            const after = await c.command(`RCPT TO:<${envelopeRecipient(ctx)}>`)
            if (is2xx(after)) bad.push(`RCPT after RSET was accepted ("${describeReply(after)}"): RSET did not clear the transaction`)
          } else {
            notes.push(`RCPT TO:<${envelopeRecipient(ctx)}> was refused ("${describeReply(rcpt)}"), so the RCPT state was not tested; give --deliver-to a real mailbox`)
            await probe('MAIL', 'RSET')
          }
        } else {
          notes.push(`MAIL FROM:<> was refused ("${describeReply(mail)}"), so the MAIL and RCPT states were not tested`)
        }
        if (bad.length > 0) return verdict.fail(bad.join('; '))
        return verdict.pass(['250 in every state tested', ...notes].join('; '))
      }),
  },
  {
    id: 'unknown-command',
    title: 'Unknown command refused, connection kept open',
    rfc: 'RFC 5321 §4.2.4',
    run: (ctx) =>
      withConnection(ctx, true, async (c) => {
        c.write('XLMTPPROBE\r\n', ['XLMTPPROBE'])
        let reply: Reply
        try {
          reply = await c.read()
        } catch (err) {
          return verdict.fail(`no reply to an unknown command: ${(err as Error).message}`)
        }
        const seen = `"${describeReply(reply)}"`
        if (is2xx(reply)) return verdict.fail(`${seen}: an unknown command was accepted`)
        c.write('NOOP\r\n', ['NOOP'])
        const noop = await c.tryRead()
        if (!noop || c.closed) return verdict.fail(`${seen}, then the connection was closed: a client's single typo ends its session`)
        if (reply.code !== 500 && reply.code !== 502) return verdict.warn(`${seen}: refused and kept open, but 500 is the expected code`)
        return verdict.pass(`${seen}; NOOP afterwards: "${describeReply(noop)}"`)
      }),
  },
  {
    id: 'pipelining-order',
    title: 'Pipelined MAIL/RCPT replies come in order',
    rfc: 'RFC 2920 §3.1',
    async run(ctx) {
      if (!ctx.capabilities.pipelining) return verdict.skip('PIPELINING is not advertised, so clients will not pipeline')
      return withConnection(ctx, true, async (c) => {
        const rcpt = `RCPT TO:<${envelopeRecipient(ctx)}>`
        const batch = ['MAIL FROM:<>', 'MAIL FROM:<>', rcpt, 'NOOP', 'RSET']
        c.write(batch.map((l) => `${l}\r\n`).join(''), batch)
        const replies: Reply[] = []
        for (let i = 0; i < batch.length; i++) {
          try {
            replies.push(await c.read())
          } catch (err) {
            return verdict.fail(`${replies.length} of ${batch.length} replies to one pipelined batch, then ${(err as Error).message}`)
          }
        }
        return judgePipelinedOrder(batch, replies)
      })
    },
  },
]

/** The RFC 3463 subject.detail of a reply's enhanced code (`1.5` for 2.1.5), if it has one. */
const subjectOf = (r: Reply): string | undefined => r.enhanced?.slice(2)

/**
 * Whether pipelined replies came in order, judged by which command each reply could answer in the state the
 * earlier replies left the session in, never by expecting success: a refused MAIL (AUTH required, a policy) or
 * an unimplemented NOOP still answers its own command. A reply is out of place when no command in its slot can
 * produce it: 3xx (nothing here asks for data), 221, a 2xx to a nested MAIL or to RCPT with no MAIL open, or a
 * 2xx whose enhanced code names the other address (X.1.5 recipient on MAIL, X.1.0 sender on RCPT).
 */
export function judgePipelinedOrder(commands: string[], replies: Reply[]): CheckVerdict {
  let mailOpen = false
  const refused: string[] = []
  for (const [i, cmd] of commands.entries()) {
    const r = replies[i]!
    const verb = cmd.split(/[ :]/, 1)[0]!.toUpperCase()
    const ok = is2xx(r)
    const nested = verb === 'MAIL' && mailOpen
    let misfit: string | undefined
    if (r.code < 200 || (r.code >= 300 && r.code < 400) || r.code === 221) misfit = `${r.code} answers none of these commands`
    else if (nested && ok) misfit = 'a second MAIL accepted inside a transaction'
    else if (verb === 'MAIL' && ok && subjectOf(r) === '1.5') misfit = 'a recipient code (X.1.5) on MAIL'
    else if (verb === 'RCPT' && ok && !mailOpen) misfit = 'RCPT accepted with no MAIL accepted before it'
    else if (verb === 'RCPT' && ok && subjectOf(r) === '1.0') misfit = 'a sender code (X.1.0) on RCPT'
    if (misfit) {
      const seen = replies.map((x) => x.code).join(', ')
      return verdict.fail(`replies ${seen} to ${commands.join(', ')}: reply ${i + 1} ("${describeReply(r)}") cannot answer ${cmd} (${misfit}): replies out of order, or a broken session state`)
    }
    if (verb === 'MAIL' && ok) mailOpen = true
    if (verb === 'RSET' && ok) mailOpen = false
    if (!ok && !nested) refused.push(`${cmd} -> ${r.code}`)
  }
  const seen = replies.map((r) => r.code).join(', ')
  const note = refused.length > 0 ? ` (judged by which command each reply can answer; refused: ${refused.join(', ')})` : ''
  return verdict.pass(`${replies.length} replies in order: ${seen}${note}`)
}

/**
 * The enhanced status code of a reply, of any class: the parser's (read from every line of a multi-line reply),
 * else the first word of any line that looks like one (a code of the wrong class, which the parser leaves in the
 * text).
 */
function leadingCode(r: Reply): string | undefined {
  if (r.enhanced) return r.enhanced
  for (const line of r.lines) {
    const word = line.split(' ', 1)[0] ?? ''
    if (/^\d\.\d{1,3}\.\d{1,3}$/.test(word)) return word
  }
  return undefined
}

/** Judges every reply the other checks saw: enhanced codes present after LHLO, and of the reply's class. */
export function judgeEnhancedCodes(ctx: Pick<CheckContext, 'observed' | 'capabilities'>): CheckVerdict {
  const mismatched: string[] = []
  const missing: string[] = []
  let counted = 0
  for (const o of ctx.observed) {
    const r = o.reply
    const code = leadingCode(r)
    if (code && Number(code[0]) !== Math.floor(r.code / 100)) {
      mismatched.push(`${o.command} -> "${r.code} ${code}"`)
    }
    // Exempt: the greeting, the LHLO reply, 3xx (no 3.x.x class exists), and anything before LHLO.
    const verb = o.command.split(' ', 1)[0]!.toUpperCase()
    if (!o.afterLhlo || r.code < 200 || (r.code >= 300 && r.code < 400) || verb === 'LHLO' || o.command === 'greeting') continue
    counted++
    if (!code) missing.push(`${o.command} -> "${describeReply(r)}"`)
  }
  const sample = (list: string[]): string => list.slice(0, 3).join('; ') + (list.length > 3 ? `; and ${list.length - 3} more` : '')
  if (mismatched.length > 0) return verdict.fail(`enhanced code of the wrong class: ${sample(mismatched)} (the first digit must equal the reply's)`)
  if (!ctx.capabilities.enhancedStatusCodes) {
    return verdict.skip(`ENHANCEDSTATUSCODES is not advertised${missing.length > 0 ? `; ${missing.length} of ${counted} replies carry no code` : ''}`)
  }
  if (counted === 0) return verdict.skip('no reply after LHLO was seen')
  if (missing.length > 0) return verdict.fail(`${missing.length} of ${counted} replies carry no enhanced code: ${sample(missing)}`)
  return verdict.pass(`all ${counted} replies after LHLO carry a code of the right class`)
}

/** The enhanced-code check; runs last, over what the other checks saw. */
export const enhancedCodesCheck: Check = {
  id: 'enhanced-codes',
  title: 'Enhanced status codes present and of the reply class',
  rfc: 'RFC 2034 §3, RFC 3463 §2',
  async run(ctx) {
    return judgeEnhancedCodes(ctx)
  },
}
