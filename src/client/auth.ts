/**
 * LMTP AUTH (RFC 4954 over LMTP): SASL PLAIN (RFC 4616) and LOGIN, the mechanisms servers such as Cyrus lmtpd
 * offer. Credentials go through LmtpClient.exchange, which keeps them out of transcripts and events.
 */
import type {Capabilities} from '../protocol/capabilities.js'
import type {LmtpClient} from '../protocol/client.js'
import {type Reply, describeReply} from '../protocol/reply.js'

/** The SASL mechanisms this client speaks, in order of preference. */
export const AUTH_MECHANISMS = ['PLAIN', 'LOGIN'] as const

/** One of the mechanisms this client speaks. */
export type AuthMechanism = (typeof AUTH_MECHANISMS)[number]

/** Credentials for AUTH. */
export interface AuthCredentials {
  /** The authentication identity (the user name). */
  user: string
  password: string
  /** Force a mechanism (default: PLAIN when offered, else LOGIN). */
  mechanism?: AuthMechanism
}

/**
 * The SASL mechanisms a server advertises (`AUTH PLAIN LOGIN`, or the old `AUTH=PLAIN LOGIN` form), upper-cased;
 * undefined when it does not offer AUTH at all.
 */
export function authMechanisms(caps: Capabilities): string[] | undefined {
  let found: string[] | undefined
  for (const kw of caps.keywords) {
    const m = /^AUTH(?:[ =])(.*)$/i.exec(kw)
    if (!m && kw.toUpperCase() !== 'AUTH') continue
    found ??= []
    for (const mech of (m?.[1] ?? '').split(/\s+/)) if (mech !== '') found.push(mech.toUpperCase())
  }
  return found
}

/** Why authentication did not succeed. */
export class AuthError extends Error {
  constructor(
    /** `unsupported`: no mechanism in common; `refused`: the server refused the credentials or the exchange. */
    readonly kind: 'unsupported' | 'refused',
    message: string,
    readonly reply?: Reply,
  ) {
    super(message)
    this.name = 'AuthError'
  }
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64')

/** Authenticates with the first mechanism both sides speak; resolves with the 235 reply, else throws AuthError. */
export async function authenticate(client: Pick<LmtpClient, 'exchange'>, caps: Capabilities, cred: AuthCredentials): Promise<Reply> {
  const offered = authMechanisms(caps) ?? []
  const mechanism = cred.mechanism ?? AUTH_MECHANISMS.find((m) => offered.includes(m))
  if (!mechanism || (cred.mechanism && !offered.includes(cred.mechanism))) {
    throw new AuthError(
      'unsupported',
      `the server offers AUTH ${offered.join(' ') || '(no mechanism)'}, none of which this client speaks (${AUTH_MECHANISMS.join(', ')})`,
    )
  }
  if (/[\0]/.test(cred.user) || /[\0]/.test(cred.password)) throw new AuthError('unsupported', 'a user name or password cannot contain NUL')
  let r: Reply
  if (mechanism === 'PLAIN') {
    r = await client.exchange(`AUTH PLAIN ${b64(`\0${cred.user}\0${cred.password}`)}`, 'AUTH PLAIN <credentials>')
    // A server that does not take an initial response asks with an empty 334 challenge.
    if (r.code === 334) r = await client.exchange(b64(`\0${cred.user}\0${cred.password}`), '<credentials>')
  } else {
    r = await client.exchange('AUTH LOGIN', 'AUTH LOGIN')
    if (r.code === 334) r = await client.exchange(b64(cred.user), '<user name>')
    if (r.code === 334) r = await client.exchange(b64(cred.password), '<password>')
  }
  if (r.code === 334) {
    // More challenges than the mechanism has: cancel the exchange (RFC 4954 section 4).
    r = await client.exchange('*', '*')
  }
  if (r.code !== 235) throw new AuthError('refused', `AUTH ${mechanism} as ${JSON.stringify(cred.user)} was refused: ${describeReply(r)}`, r)
  return r
}
