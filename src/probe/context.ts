/**
 * What a check gets to work with: the facts of the main session (greeting, capabilities, TLS), the options,
 * and factories for fresh connections, so a check that disturbs the session state never disturbs another.
 */
import type {Capabilities} from '../protocol/capabilities.js'
import type {LmtpClient} from '../protocol/client.js'
import type {ObservedReply, ProbeConnection} from './connection.js'
import type {CheckStatus, ProbeOptions, TlsInfo} from './types.js'

/** Options with their defaults filled in. */
export type ResolvedOptions = Required<Omit<ProbeOptions, 'onCheck' | 'now'>>

/** The environment of one check. */
export interface CheckContext {
  options: ResolvedOptions
  /** Capabilities from the main session (after STARTTLS when TLS was used). */
  capabilities: Capabilities
  /** The LHLO keyword lines of the main session before any STARTTLS (what a plaintext client sees). */
  plainKeywords: string[]
  /** The greeting of the main session. */
  greeting: {code: number; text: string; ms: number}
  tls?: TlsInfo
  /** True when the checks run over TLS (--starttls and the upgrade worked). */
  overTls: boolean
  /** A fresh connection, greeted; upgraded when the checks run over TLS; LHLO sent when `lhlo` is true. */
  open(options?: {lhlo?: boolean}): Promise<ProbeConnection>
  /** A fresh protocol client after LHLO (and STARTTLS when the checks run over TLS). */
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
