/**
 * The reply catalogue: every reply the server sends, named once, used by the server code and by the tests
 * (a test asserts against `R.noValidRecipients`, never against a copied string). Codes follow PROTOCOL.md.
 */
import {type Reply, reply} from './reply.js'

/** Replies that carry a recipient name are built by these helpers so the text always names it. */
export const perRecipient = {
  /**
   * Stored. `id` is the delivery id (the transaction id), also in our log line, so the sender's log of this
   * reply (Postfix: `status=sent (250 2.0.0 <rcpt> ID delivered)`) is joined to ours by grep.
   */
  delivered: (rcpt: string, id?: string): Reply => reply(250, '2.0.0', id ? `<${rcpt}> ${id} delivered` : `<${rcpt}> delivered`),
  overQuotaTemp: (rcpt: string): Reply => reply(452, '4.2.2', `<${rcpt}> mailbox full, try again later`),
  overQuotaPerm: (rcpt: string): Reply => reply(552, '5.2.2', `<${rcpt}> mailbox full`),
  tooBigForMailbox: (rcpt: string): Reply => reply(552, '5.2.3', `<${rcpt}> message larger than the mailbox quota`),
  diskFull: (rcpt: string): Reply => reply(452, '4.3.1', `<${rcpt}> insufficient system storage, try again later`),
  localError: (rcpt: string, what = 'local error in delivery'): Reply =>
    reply(451, '4.3.0', `<${rcpt}> ${what}, try again later`),
  loop: (rcpt: string): Reply => reply(554, '5.4.6', `<${rcpt}> mail loop: message already delivered to this address`),
} as const

/** Named replies. Text is advice a human can act on; the code and enhanced code carry the meaning. */
export const R = {
  // Connection-level
  closing: reply(221, '2.0.0', 'closing connection'),
  idleTimeout: reply(421, '4.4.2', 'idle timeout, closing connection'),
  tooManyErrors: reply(421, '4.7.0', 'too many errors, closing connection'),
  tooManyConnections: reply(421, '4.7.0', 'too many connections, try again later'),
  shuttingDown: reply(421, '4.3.2', 'server shutting down, try again later'),

  // Success
  ok: reply(250, '2.0.0', 'ok'),
  senderOk: reply(250, '2.1.0', 'sender ok'),
  recipientOk: reply(250, '2.1.5', 'recipient ok'),
  resetOk: reply(250, '2.0.0', 'reset ok'),
  chunkOk: (size: number): Reply => reply(250, '2.0.0', `${size} octets received`),
  startData: reply(354, undefined, 'start mail input; end with <CRLF>.<CRLF>'),
  readyForTls: reply(220, '2.0.0', 'ready to start TLS'),
  cannotVerify: reply(252, '2.3.3', 'cannot verify the user, but will accept mail for delivery'),

  // Syntax and sequence
  unknownCommand: reply(500, '5.5.2', 'unknown command'),
  lineTooLong: reply(500, '5.5.2', 'line too long'),
  heloNotLmtp: reply(500, '5.5.1', 'this is an LMTP server: use LHLO'),
  badSequenceLhloFirst: reply(503, '5.5.1', 'send LHLO first'),
  nestedMail: reply(503, '5.5.1', 'sender already given, send RSET to start over'),
  mailFirst: reply(503, '5.5.1', 'send MAIL FROM first'),
  noValidRecipients: reply(503, '5.5.1', 'no valid recipients'),
  mixedDataBdat: reply(503, '5.5.1', 'DATA and BDAT cannot be mixed in one transaction'),
  rcptAfterBody: reply(503, '5.5.1', 'recipients cannot be added once the message body has started'),
  noArgumentsAllowed: reply(501, '5.5.4', 'this command takes no arguments'),
  lhloNeedsDomain: reply(501, '5.5.4', 'LHLO needs a domain or address literal'),
  badArgument: reply(501, '5.5.4', 'syntax error in arguments'),
  controlCharacters: reply(501, '5.5.4', 'control characters are not allowed in commands'),
  badSender: reply(501, '5.1.7', 'bad sender address syntax'),
  badRecipientSyntax: reply(501, '5.1.3', 'bad recipient address syntax'),
  unknownParameter: reply(555, '5.5.4', 'unsupported MAIL/RCPT parameter'),
  badBody: reply(501, '5.5.4', 'BODY must be 7BIT or 8BITMIME'),
  badSize: reply(501, '5.5.4', 'SIZE must be a number of octets'),
  badBdat: reply(501, '5.5.4', 'syntax: BDAT <size> [LAST]'),
  bdatTooLarge: reply(552, '5.3.4', 'BDAT chunk larger than the message size limit'),
  nonAsciiSender: reply(550, '5.6.7', 'non-ASCII sender address needs SMTPUTF8'),
  nonAsciiRecipient: reply(553, '5.6.7', 'non-ASCII recipient address needs SMTPUTF8'),
  vrfyDisabled: reply(502, '5.5.1', 'VRFY is disabled'),
  startTlsUnavailable: reply(454, '4.7.0', 'TLS not available'),
  tlsAlreadyActive: reply(503, '5.5.1', 'TLS already active'),

  // Envelope policy
  messageTooBig: reply(552, '5.3.4', 'message size exceeds the fixed maximum message size'),
  tooManyRecipients: reply(452, '4.5.3', 'too many recipients, send the rest in another transaction'),
  unknownUser: reply(550, '5.1.1', 'no such user here'),
  unsafeMailbox: reply(550, '5.1.3', 'recipient local part cannot be mapped to a mailbox safely'),
  mailboxFullAtRcpt: reply(452, '4.2.2', 'mailbox full, try again later'),
  mailboxFullAtRcptPerm: reply(552, '5.2.2', 'mailbox full'),

  // Whole-message failures (sent once per accepted recipient)
  bareLineEnding: reply(554, '5.6.0', 'message contains a bare CR or LF: refused'),
  localError: reply(451, '4.3.0', 'local error in processing, try again later'),
  insufficientStorage: reply(452, '4.3.1', 'insufficient system storage, try again later'),
} as const
