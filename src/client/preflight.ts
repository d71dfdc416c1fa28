/**
 * Checks before sending: everything that can be known to fail from the LHLO capabilities and the measured
 * message is refused before MAIL, so nothing is ever half-sent. Also chooses the MAIL parameters (SIZE, BODY,
 * SMTPUTF8) the message needs.
 */
import {parsePath} from '../protocol/address.js'
import type {Capabilities} from '../protocol/capabilities.js'
import type {MailParams} from '../protocol/command.js'
import {formatSize} from '../util/units.js'
import type {MessageInfo} from './message-source.js'

const NON_ASCII = /[^\x00-\x7f]/

/** What the preflight pass decided. */
export interface PreflightResult {
  /** MAIL parameters to send. */
  params: MailParams
  /** Reasons not to send, each with what to change; empty when the message may go. */
  problems: string[]
}

/** The envelope and message to check. */
export interface PreflightInput {
  capabilities: Capabilities
  message: MessageInfo
  from: string
  to: string[]
  /** The server as the user wrote it, for messages. */
  server: string
}

/** What the MAIL parameters depend on: the message's measured facts and the envelope. */
export interface MessageFacts {
  /** Octets of the message (after line-end normalisation). */
  size: number
  /** True when the message has octets above 127. */
  has8bit: boolean
}

/**
 * The MAIL parameters one message needs, decided per message from its content and what the server offers:
 * SIZE when the server advertises SIZE, BODY=8BITMIME only for 8-bit content, SMTPUTF8 only for a non-ASCII
 * address. Nothing more: some servers (GNU Mailutils lmtpd) refuse any MAIL parameter, so a 7-bit message with
 * ASCII addresses to a server without SIZE goes with none. send and replay both decide with this.
 */
export function mailParamsFor(caps: Capabilities, message: MessageFacts, from: string, to: readonly string[]): MailParams {
  const params: MailParams = {}
  if (caps.size !== undefined) params.size = message.size
  if (message.has8bit && caps.eightBitMime) params.body = '8BITMIME'
  if (caps.smtputf8 && [from, ...to].some((a) => NON_ASCII.test(a))) params.smtputf8 = true
  return params
}

/**
 * Checks the message and the envelope against what the server offers: 8-bit content needs 8BITMIME, a
 * non-ASCII address needs SMTPUTF8, and the message must fit the advertised SIZE.
 */
export function preflight(input: PreflightInput): PreflightResult {
  const {capabilities: caps, message, server} = input
  const problems: string[] = []
  const params = mailParamsFor(caps, message, input.from, input.to)
  if (message.has8bit && !caps.eightBitMime) {
    problems.push(
      `the message has 8-bit content but ${server} does not offer 8BITMIME: encode the non-ASCII parts as quoted-printable or base64, or send to a server that offers 8BITMIME`,
    )
  }
  const utf8 = [input.from, ...input.to].filter((a) => NON_ASCII.test(a))
  if (utf8.length > 0 && !caps.smtputf8) {
    problems.push(
      `${utf8.map((a) => `<${a}>`).join(', ')} ${utf8.length === 1 ? 'is' : 'are'} not ASCII but ${server} does not offer SMTPUTF8: use an ASCII address (an IDN domain can be written in punycode, xn--...)`,
    )
  }
  if (caps.size !== undefined && caps.size > 0 && message.size > caps.size) {
    problems.push(
      `the message is ${message.size} octets (${formatSize(message.size)}) but ${server} accepts at most ${caps.size} (${formatSize(caps.size)}, its SIZE): send a smaller message, or raise the server's limit (lmtp serve --max-size)`,
    )
  }
  return {params, problems}
}

/**
 * Checks an address given on the command line; returns why it cannot be sent, or undefined when it can.
 * `''` is the null sender `<>` (legal only as sender).
 */
export function addressProblem(address: string, kind: 'sender' | 'recipient'): string | undefined {
  const r = parsePath(`<${address}>`, kind)
  if (r.ok && r.rest === '') return undefined
  if (address === '') return 'an empty recipient address'
  return `${JSON.stringify(address)} is not a valid ${kind} address (write local-part@domain, without angle brackets)`
}
