/**
 * Telling an SMTP server from an LMTP one when LHLO fails: the usual mistake is pointing probe at an MTA's
 * port (Postfix smtpd) instead of the delivery agent behind it. The clues are an ESMTP greeting and a 250 to
 * EHLO on a fresh connection; no mail is ever sent to it.
 */
import type {SessionOpenError} from '../client/session.js'
import {connectTarget} from '../net/target.js'
import {type Reply, describeReply} from '../protocol/reply.js'
import {ProbeConnection} from './connection.js'
import type {ResolvedOptions} from './context.js'

/** True when a greeting says SMTP or ESMTP (RFC 5321 section 4.3.1 servers usually do). */
export function greetingSaysSmtp(text: string): boolean {
  return /\bE?SMTP\b/i.test(text) && !/\bLMTP\b/i.test(text)
}

/** What to say when LHLO was refused by an SMTP server; `ehlo` is its reply to EHLO, when one was tried. */
export function describeSmtpServer(greeting: string, lhlo: Reply | undefined, ehlo: Reply | undefined): string | undefined {
  const answersEhlo = ehlo !== undefined && ehlo.code === 250
  if (!answersEhlo && !greetingSaysSmtp(greeting)) return undefined
  const clues = [
    lhlo ? `LHLO got "${describeReply(lhlo)}"` : 'LHLO was refused',
    ...(greetingSaysSmtp(greeting) ? [`the greeting says "${greeting}"`] : []),
    ...(answersEhlo ? ['EHLO is answered 250'] : []),
  ]
  return `this is an SMTP server, not LMTP: ${clues.join(', ')}. Point probe at the LMTP listener (the delivery agent behind the MTA, e.g. Dovecot's lmtp socket or port 24), not at the MTA's SMTP port; no mail was sent to it`
}

/** When LHLO failed with 5xx: asks EHLO on a fresh connection and says whether this is an SMTP server. */
export async function smtpVerdict(o: ResolvedOptions, greeting: string, err: SessionOpenError): Promise<string | undefined> {
  if (err.kind !== 'refused' || !err.reply || err.reply.code < 500) return undefined
  let ehlo: Reply | undefined
  try {
    const c = new ProbeConnection(await connectTarget(o.target, o.timeoutMs), o.timeoutMs)
    try {
      if ((await c.read()).code === 220) ehlo = await c.command(`EHLO ${o.lhloName}`)
    } finally {
      await c.quit()
    }
  } catch {
    // No second look: the greeting alone decides.
  }
  return describeSmtpServer(greeting, err.reply, ehlo)
}
