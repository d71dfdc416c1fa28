/**
 * The shape of a probe: what the caller asks for (ProbeOptions) and what comes back (ProbeReport). The report
 * is the `--json` output of `lmtp probe`, so its fields are a contract with scripts: add, don't rename.
 */
import type {AuthCredentials} from '../client/auth.js'
import type {Target} from '../net/target.js'

/** Outcome of one conformance check: fail for a MUST, warn for a SHOULD or a common deviation. */
export type CheckStatus = 'pass' | 'warn' | 'fail' | 'skip'

/** One line of the conformance checklist. */
export interface CheckResult {
  /** Stable identifier, e.g. `helo-refused` (scripts key on it). */
  id: string
  /** What is checked, in words. */
  title: string
  status: CheckStatus
  /** Where the rule is written, e.g. `RFC 2033 §4.1`. */
  rfc: string
  /** What was seen, and for a warn or fail what it means. */
  detail: string
  /** Wall time the check took, in milliseconds. */
  ms: number
}

/** One advertised LHLO keyword, explained. */
export interface CapabilityInfo {
  /** The keyword as advertised, upper-cased (e.g. `SIZE`). */
  keyword: string
  /** Its parameters as advertised (e.g. `52428800`), '' when none. */
  params: string
  /** What it means for a client, in words. */
  meaning: string
}

/** What the TLS layer looked like after STARTTLS. */
export interface TlsInfo {
  /** True when the server advertised STARTTLS. */
  offered: boolean
  /** True when the handshake was attempted and succeeded. */
  established: boolean
  /** Why it could not be established (handshake failure, refusal). */
  error?: string
  /** e.g. `TLSv1.3`. */
  protocol?: string
  /** e.g. `TLS_AES_256_GCM_SHA384`. */
  cipher?: string
  /** Certificate subject, e.g. `CN=mx.example.com`. */
  subject?: string
  /** Certificate issuer. */
  issuer?: string
  /** Subject alternative names, e.g. `DNS:mx.example.com`. */
  altNames?: string[]
  /** Certificate validity end (ISO 8601). */
  validTo?: string
  /** Whole days until the certificate expires (negative when it has). */
  daysToExpiry?: number
  /** True when the chain verifies against the system CAs and the name matches the target. */
  verified?: boolean
  /** Why it does not verify (e.g. `DEPTH_ZERO_SELF_SIGNED_CERT`). */
  verifyError?: string
  /** Milliseconds from STARTTLS to the end of the handshake. */
  handshakeMs?: number
}

/** One command of the main session and how long its reply took. */
export interface CommandLatency {
  /** The command as sent (e.g. `MAIL FROM:<>`), or `connect` / `greeting` / `TLS handshake`. */
  command: string
  /** The reply, one line (e.g. `250 2.1.0 OK`); '' for connect and the handshake. */
  reply: string
  ms: number
}

/** Everything a probe found. `exitCode` is what `lmtp probe` exits with. */
export interface ProbeReport {
  /** The target as given back in canonical form (`127.0.0.1:24`, `unix:/path`). */
  target: string
  startedAt: string
  durationMs: number
  /** False when the connection failed or the greeting was not 220. */
  reachable: boolean
  /** Why it is unreachable, with the next step. */
  error?: string
  connectMs?: number
  greeting?: {code: number; enhanced?: string; text: string; ms: number}
  /**
   * The LHLO reply: the server's name, its capabilities (keyword lines only) and any free text it added
   * (Cyrus: `Ok SESSIONID=<...>`), which is not a capability.
   */
  lhlo?: {name: string; serverName: string; ms: number; capabilities: CapabilityInfo[]; freeText?: string[]}
  /** What the probe concluded about the protocol spoken: `smtp` when an SMTP server answered instead. */
  speaks?: 'lmtp' | 'smtp'
  /** LMTP AUTH: what the server offers, whether it requires it, and whether the probe authenticated. */
  auth?: AuthInfo
  tls?: TlsInfo
  latency: CommandLatency[]
  checks: CheckResult[]
  summary: Record<CheckStatus, number>
  /** 0: no failure; 76: a conformance failure; 69: unreachable. */
  exitCode: 0 | 69 | 76
}

/** LMTP AUTH as the probe saw it. */
export interface AuthInfo {
  /** The mechanisms advertised (empty when AUTH is not offered). */
  mechanisms: string[]
  /** True when MAIL was refused because the session was not authenticated. */
  required: boolean
  /** The user the checks ran as, when --auth succeeded. */
  user?: string
  /** Why AUTH failed, when it was tried. */
  error?: string
}

/** What to probe and how. */
export interface ProbeOptions {
  target: Target
  /** Upgrade with STARTTLS and run the checks over TLS; a server without STARTTLS is a failure. */
  starttls?: boolean
  /** Accept a certificate that does not verify (reported as a warning instead of a failure). */
  tlsInsecure?: boolean
  /** CA certificates (PEM) to verify the server's certificate with, instead of the system's. */
  tlsCa?: Buffer
  /** LMTP AUTH: every session of the checks authenticates with these. */
  auth?: AuthCredentials
  /** The ids of the checks to report (default: all); see CHECK_IDS. */
  checks?: string[]
  /** Real mailboxes: enables the checks that deliver test messages. */
  deliverTo?: string[]
  /** Per-reply timeout in milliseconds (default 10 000). */
  timeoutMs?: number
  /** The LHLO name (default: this host's name). */
  lhloName?: string
  /** Called as each check finishes (a spinner or progress line). */
  onCheck?: (check: CheckResult) => void
  /** Current time (tests). */
  now?: () => Date
}
