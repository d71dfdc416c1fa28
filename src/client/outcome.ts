/**
 * The one mapping from client results to outcome counts and exit codes, for send, probe and replay. A fact is
 * counted once here and shown in many places.
 */
import type {RecipientResult} from '../protocol/client.js'
import type {Outcome} from '../protocol/events.js'
import type {Reply} from '../protocol/reply.js'
import {EXIT, type ExitCode} from '../util/exit-codes.js'
import type {SessionOpenError} from './session.js'

/** Counts of recipient outcomes. */
export interface OutcomeCounts {
  total: number
  delivered: number
  deferred: number
  rejected: number
}

/** Counts outcomes. */
export function countOutcomes(recipients: readonly RecipientResult[]): OutcomeCounts {
  const s: OutcomeCounts = {total: recipients.length, delivered: 0, deferred: 0, rejected: 0}
  for (const r of recipients) s[r.outcome]++
  return s
}

/** The outcome of a whole message: rejected if any recipient was, else deferred if any was, else delivered. */
export function messageOutcome(recipients: readonly RecipientResult[]): Outcome {
  if (recipients.some((r) => r.outcome === 'rejected')) return 'rejected'
  if (recipients.some((r) => r.outcome === 'deferred')) return 'deferred'
  return 'delivered'
}

/** The exit code an outcome count implies: 69 any rejected, 75 some deferred (none rejected), else 0. */
export function exitCodeForCounts(counts: OutcomeCounts): ExitCode {
  if (counts.rejected > 0) return EXIT.unavailable
  if (counts.deferred > 0) return EXIT.tempFail
  return EXIT.ok
}

/**
 * The exit code a set of recipient results implies: 76 when the server broke the protocol (it wins over
 * outcomes), 78 when the server requires authentication that was not given, else by outcome (69, 75, 0).
 */
export function exitCodeFor(
  recipients: readonly RecipientResult[],
  violation?: string | null,
  options: {authRequired?: boolean} = {},
): ExitCode {
  if (violation) return EXIT.protocol
  if (options.authRequired) return EXIT.config
  return exitCodeForCounts(countOutcomes(recipients))
}

/**
 * The exit code of a session that could not be opened: 74 connection failed, lost or stalled, or TLS failed;
 * 69 the server refused (5xx) or lacks what was asked for (STARTTLS, CHUNKING, AUTH); 75 it refused for now
 * (4xx); 78 AUTH refused the credentials, or would have sent them in clear text; 76 protocol violation.
 */
export function exitCodeForSessionError(err: SessionOpenError): ExitCode {
  switch (err.kind) {
    case 'connect':
    case 'lost':
    case 'timeout':
    case 'tls':
      return EXIT.ioErr
    case 'capability':
      return EXIT.unavailable
    case 'auth':
      return err.reply && err.reply.code >= 400 && err.reply.code < 500 ? EXIT.tempFail : EXIT.config
    case 'protocol':
      return EXIT.protocol
    case 'refused':
      return (err.reply?.code ?? 500) < 500 ? EXIT.tempFail : EXIT.unavailable
  }
}

/**
 * True when a reply to MAIL says the server requires authentication: 530 (RFC 4954 section 6), or the 430/454
 * with enhanced code x.7.0/x.7.1 and the word "auth" that some servers (Cyrus lmtpd) send instead.
 */
export function requiresAuth(mail: Reply): boolean {
  if (mail.code === 530) return true
  if (mail.code !== 430 && mail.code !== 454 && mail.code !== 550 && mail.code !== 554) return false
  const text = mail.lines.join(' ')
  return mail.code === 430 || (/^[45]\.7\.[01]$/.test(mail.enhanced ?? '') && /auth/i.test(text))
}

/** What to tell a user whose transaction failed because the server requires authentication. */
export const AUTH_REQUIRED_HINT = 'this server requires authentication: use --auth USER (password from --auth-password-file FILE or LMTP_AUTH_PASSWORD)'
