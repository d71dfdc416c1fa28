/**
 * What a check gets to work with: the facts of the main session (greeting, capabilities, TLS), the options,
 * and factories for fresh connections, so a check that disturbs the session state never disturbs another.
 */
import type {Capabilities} from '../protocol/capabilities.js'
import type {LmtpClient} from '../protocol/client.js'
import type {ObservedReply, ProbeConnection} from './connection.js'
import type {AuthInfo, CheckStatus, ProbeOptions, TlsInfo} from './types.js'

/** Options with their defaults filled in. */
export type ResolvedOptions = Required<Omit<ProbeOptions, 'onCheck' | 'now' | 'tlsCa' | 'auth' | 'checks'>> &
  Pick<ProbeOptions, 'tlsCa' | 'auth'>

/** The environment of one check. */
export interface CheckContext {
  options: ResolvedOptions
  /** Capabilities from the main session (after STARTTLS when TLS was used). */
  capabilities: Capabilities
  /** Capabilities advertised inside TLS, when a TLS session was opened (STARTTLS must no longer be there). */
  tlsCapabilities?: Capabilities
  /** LMTP AUTH as the main session saw it. */
  auth: AuthInfo
  /** The greeting of the main session. */
  greeting: {code: number; text: string; ms: number}
  tls?: TlsInfo
  /** True when the checks run over TLS (--starttls and the upgrade worked). */
  overTls: boolean
  /**
   * A fresh raw connection, greeted; upgraded when the checks run over TLS; with `lhlo`, LHLO sent and (with
   * --auth) authenticated. Without `lhlo` it is in the state before LHLO, never authenticated.
   */
  open(options?: {lhlo?: boolean}): Promise<ProbeConnection>
  /** AUTH on a raw connection after its LHLO, when --auth was given (else nothing). */
  authenticate(c: ProbeConnection): Promise<void>
  /** A fresh protocol client through openSession (STARTTLS when the checks run over TLS, AUTH with --auth). */
  openClient(): Promise<LmtpClient>
  /** Every reply seen by the checks so far (the enhanced-status-code check reads it). */
  observed: ObservedReply[]
  now(): Date
}

/** What a check concludes. */
export interface CheckVerdict {
  status: CheckStatus
  detail: string
}

/** One conformance check. */
export interface Check {
  id: string
  title: string
  rfc: string
  /** Needs --deliver-to: it sends a message body and may deliver it. */
  delivers?: boolean
  run(ctx: CheckContext): Promise<CheckVerdict>
}

/** Shorthands for verdicts. */
export const verdict = {
  pass: (detail: string): CheckVerdict => ({status: 'pass', detail}),
  warn: (detail: string): CheckVerdict => ({status: 'warn', detail}),
  fail: (detail: string): CheckVerdict => ({status: 'fail', detail}),
  skip: (detail: string): CheckVerdict => ({status: 'skip', detail}),
}
