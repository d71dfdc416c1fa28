/**
 * Runs a probe: one main session for the facts (connect time, greeting, LHLO capabilities, TLS, AUTH,
 * per-command latency), then the conformance checklist, each check on its own fresh connection when it would
 * disturb the session. Every session that behaves opens through openSession (src/client/session.ts); only the
 * checks that must misbehave use a raw ProbeConnection. Returns the whole report; the exit code is part of it.
 */
import os from 'node:os'
import {authMechanisms, authenticate} from '../client/auth.js'
import {requiresAuth} from '../client/outcome.js'
import {type OpenSession, type SessionPhase, SessionOpenError, openSession} from '../client/session.js'
import {type TlsInfo as SessionTls, tlsUpgrader} from '../client/tls.js'
import {connectTarget, formatTarget} from '../net/target.js'
import type {Capabilities} from '../protocol/capabilities.js'
import {type LmtpClient, uniformTimeouts} from '../protocol/client.js'
import {type OutgoingCommand, formatCommand} from '../protocol/command.js'
import {type Reply, describeReply, replyText} from '../protocol/reply.js'
import {explainCapability} from './capability-notes.js'
import {type ObservedReply, ProbeConnection} from './connection.js'
import type {Check, CheckContext, ResolvedOptions} from './context.js'
import {deliveryChecks} from './delivery-checks.js'
import {authCheck, commandChecks, enhancedCodesCheck, envelopeRecipient, factChecks} from './session-checks.js'
import {smtpVerdict} from './smtp.js'
import type {AuthInfo, CheckResult, CheckStatus, ProbeOptions, ProbeReport, TlsInfo} from './types.js'

/** Default per-reply timeout of a probe (a healthy LMTP server answers in milliseconds). */
export const DEFAULT_PROBE_TIMEOUT_MS = 10_000

/** The LHLO check is decided by the main session itself. */
const LHLO_CHECK = {id: 'lhlo', title: 'LHLO accepted', rfc: 'RFC 2033 §4.1'}

/** Every check in the order it runs (the delivery ones only with --deliver-to), ending with enhanced-codes. */
export const ALL_CHECKS: readonly Check[] = [...factChecks, authCheck, ...commandChecks, ...deliveryChecks, enhancedCodesCheck]

/** The stable id of every check, in report order (what --only and --skip take). */
export const CHECK_IDS: readonly string[] = ALL_CHECKS.flatMap((c) => (c.id === 'port-25' ? [LHLO_CHECK.id, c.id] : [c.id]))

const DAY_MS = 86_400_000

function resolve(options: ProbeOptions): ResolvedOptions {
  return {
    target: options.target,
    starttls: options.starttls ?? false,
    tlsInsecure: options.tlsInsecure ?? false,
    tlsCa: options.tlsCa,
    auth: options.auth,
    deliverTo: options.deliverTo ?? [],
    timeoutMs: options.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS,
    lhloName: options.lhloName ?? os.hostname(),
  }
}

/** The exit code of a finished report: 69 unreachable, 76 any failed check, else 0. */
export function exitCodeOf(report: Pick<ProbeReport, 'reachable' | 'checks'>): 0 | 69 | 76 {
  if (!report.reachable) return 69
  return report.checks.some((c) => c.status === 'fail') ? 76 : 0
}

function summarise(checks: CheckResult[]): Record<CheckStatus, number> {
  const s: Record<CheckStatus, number> = {pass: 0, warn: 0, fail: 0, skip: 0}
  for (const c of checks) s[c.status]++
  return s
}

async function timed<T>(fn: () => Promise<T>): Promise<{value: T; ms: number}> {
  const t0 = performance.now()
  const value = await fn()
  return {value, ms: Math.round((performance.now() - t0) * 10) / 10}
}

/** An attempt to open a session: the session, or the error with what was seen before it (the greeting). */
interface Attempt {
  session?: OpenSession
  error?: SessionOpenError
  greeting?: Reply
  /** Milliseconds each phase took. */
  phases: Partial<Record<SessionPhase, number>>
}

/** Opens a session the one way (openSession), keeping the greeting and phase times even when it fails. */
async function attempt(o: ResolvedOptions, starttls: boolean, auth: ResolvedOptions['auth']): Promise<Attempt> {
  const a: Attempt = {phases: {}}
  try {
    a.session = await openSession(o.target, {
      lhloName: o.lhloName,
      starttls,
      // The certificate is judged by the tls-certificate check, so an unverifiable one never stops the probe.
      tlsInsecure: true,
      tlsCa: o.tlsCa,
      auth,
      timeouts: uniformTimeouts(o.timeoutMs),
      connectTimeoutMs: o.timeoutMs,
      onPhase: (e) => {
        if (e.state === 'done') a.phases[e.phase] = e.ms ?? 0
      },
      emit: (e) => {
        if (e.type === 'reply' && !a.greeting) a.greeting = {code: e.code, enhanced: e.enhanced, lines: [e.text]}
      },
    })
    a.greeting = a.session.greeting
  } catch (err) {
    if (!(err instanceof SessionOpenError)) throw err
    a.error = err
  }
  return a
}

/** The probe's TLS facts from what openSession negotiated. */
function tlsFacts(t: SessionTls, handshakeMs: number | undefined, now: Date): TlsInfo {
  const validTo = t.validTo ? new Date(t.validTo) : undefined
  const valid = validTo !== undefined && !Number.isNaN(validTo.getTime())
  return {
    offered: true,
    established: true,
    protocol: t.protocol,
    cipher: t.cipher,
    subject: t.subject,
    issuer: t.issuer,
    altNames: t.altNames,
    verified: t.verified,
    ...(t.verifyError ? {verifyError: t.verifyError} : {}),
    ...(valid ? {validTo: validTo.toISOString(), daysToExpiry: Math.floor((validTo.getTime() - now.getTime()) / DAY_MS)} : {}),
    ...(handshakeMs === undefined ? {} : {handshakeMs}),
  }
}

/** Probes a server. Never throws for anything the server does; the report says what happened. */
export async function runProbe(input: ProbeOptions): Promise<ProbeReport> {
  const o = resolve(input)
  const now = input.now ?? (() => new Date())
  const selected = new Set(input.checks ?? CHECK_IDS)
  const startedAt = now()
  const t0 = performance.now()
  const report: ProbeReport = {
    target: formatTarget(o.target),
    startedAt: startedAt.toISOString(),
    durationMs: 0,
    reachable: false,
    latency: [],
    checks: [],
    summary: summarise([]),
    exitCode: 69,
  }
  const finish = (): ProbeReport => {
    report.summary = summarise(report.checks)
    report.exitCode = exitCodeOf(report)
    report.durationMs = Math.round(performance.now() - t0)
    return report
  }
  const addCheck = (check: Pick<Check, 'id' | 'title' | 'rfc'>, status: CheckStatus, detail: string, ms: number): void => {
    if (!selected.has(check.id)) return
    const result: CheckResult = {id: check.id, title: check.title, status, rfc: check.rfc, detail, ms}
    report.checks.push(result)
    input.onCheck?.(result)
  }

  // The main session: over TLS when asked, authenticated when asked.
  let main = await attempt(o, o.starttls, o.auth)
  let tlsInfo: TlsInfo | undefined
  let tlsCapabilities: Capabilities | undefined
  const auth: AuthInfo = {mechanisms: [], required: false}
  const failedPhase = main.error?.phase
  if (main.error && (failedPhase === 'starttls' || failedPhase === 'tls' || failedPhase === 'lhlo-again' || failedPhase === 'auth')) {
    // TLS or AUTH failed: say so, and run the rest of the checklist on a plain, unauthenticated session.
    if (failedPhase === 'auth') auth.error = main.error.message
    else tlsInfo = {offered: main.error.kind !== 'capability', established: false, error: main.error.message}
    main = await attempt(o, false, undefined)
  }
  if (main.greeting) report.greeting = {code: main.greeting.code, enhanced: main.greeting.enhanced, text: replyText(main.greeting), ms: main.phases.greeting ?? 0}
  if (main.phases.connect !== undefined) report.connectMs = main.phases.connect
  if (!main.session) {
    const err = main.error!
    if (err.phase === 'connect' || err.phase === 'greeting') {
      report.error = err.message
      return finish()
    }
    // Greeted, but LHLO failed: an SMTP server, or something else that is not LMTP.
    report.reachable = true
    const smtp = await smtpVerdict(o, report.greeting?.text ?? '', err)
    if (smtp) report.speaks = 'smtp'
    addCheck(LHLO_CHECK, 'fail', smtp ?? `LHLO ${o.lhloName}: ${err.message}`, main.phases.lhlo ?? 0)
    return finish()
  }
  report.reachable = true
  report.speaks = 'lmtp'
  const session = main.session
  const client = session.client
  const caps = session.capabilities
  const phaseMs = main.phases
  report.latency.push({command: 'connect', reply: '', ms: phaseMs.connect ?? 0})
  report.latency.push({command: 'greeting', reply: describeReply(session.greeting), ms: phaseMs.greeting ?? 0})
  report.latency.push({command: `LHLO ${o.lhloName}`, reply: `250 (${caps.keywords.length} capabilities)`, ms: phaseMs.lhlo ?? 0})
  if (session.tls) {
    tlsInfo = tlsFacts(session.tls, phaseMs.tls, now())
    tlsCapabilities = caps
    report.latency.push({command: 'STARTTLS + TLS handshake', reply: `${session.tls.protocol} ${session.tls.cipher}`, ms: (phaseMs.starttls ?? 0) + (phaseMs.tls ?? 0)})
    report.latency.push({command: `LHLO ${o.lhloName} (inside TLS)`, reply: `250 (${caps.keywords.length} capabilities)`, ms: phaseMs['lhlo-again'] ?? 0})
  }
  if (session.authenticated) {
    auth.user = o.auth!.user
    report.latency.push({command: 'AUTH', reply: 'authenticated', ms: phaseMs.auth ?? 0})
  }
  auth.mechanisms = authMechanisms(caps) ?? []
  report.lhlo = {
    name: o.lhloName,
    serverName: caps.serverName ?? '',
    ms: phaseMs.lhlo ?? 0,
    capabilities: caps.keywords.map(explainCapability),
    ...(caps.freeText && caps.freeText.length > 0 ? {freeText: caps.freeText} : {}),
  }

  // STARTTLS offered but not asked for: a separate session for the TLS facts (the checks stay in plain text).
  if (!session.tls && !tlsInfo && caps.startTls) {
    const t = await attempt(o, true, undefined)
    if (t.session?.tls) {
      tlsInfo = tlsFacts(t.session.tls, t.phases.tls, now())
      tlsCapabilities = t.session.capabilities
      await t.session.client.quit()
    } else tlsInfo = {offered: true, established: false, error: t.error?.message ?? 'unknown error'}
  } else if (!tlsInfo && o.starttls) tlsInfo = {offered: false, established: false}
  report.tls = tlsInfo ?? (caps.startTls ? {offered: true, established: false} : undefined)

  // Per-command latency on the main session: harmless commands, ending with RSET.
  const observed: ObservedReply[] = []
  const steps: OutgoingCommand[] = [{verb: 'NOOP'}, {verb: 'MAIL', from: ''}, {verb: 'RCPT', to: envelopeRecipient({options: o})}, {verb: 'RSET'}]
  for (const cmd of steps) {
    if (client.closed) break
    try {
      const r = await timed(() => client.command(cmd))
      report.latency.push({command: formatCommand(cmd), reply: describeReply(r.value), ms: r.ms})
      observed.push({command: formatCommand(cmd), reply: r.value, afterLhlo: true})
      if (cmd.verb === 'MAIL' && !session.authenticated && requiresAuth(r.value)) auth.required = true
    } catch {
      break
    }
  }
  if (!client.closed) {
    const q = await timed(() => client.quit())
    report.latency.push({command: 'QUIT', reply: '', ms: q.ms})
  }
  if (auth.mechanisms.length > 0 || auth.error || auth.user) report.auth = auth

  const overTls = session.tls !== null
  const ctx: CheckContext = {
    options: o,
    capabilities: caps,
    tlsCapabilities,
    auth,
    greeting: {code: report.greeting!.code, text: report.greeting!.text, ms: report.greeting!.ms},
    tls: tlsInfo,
    overTls,
    observed,
    now,
    open: (opts) => openConnection(o, overTls, session.authenticated ? caps : undefined, observed, opts?.lhlo ?? false),
    authenticate: async (c) => {
      if (session.authenticated) await authenticate(c, caps, o.auth!)
    },
    openClient: () => openClient(o, overTls, session.authenticated),
  }
  const lhloDetail = `"250 ${report.lhlo.serverName}" with ${caps.keywords.length} capabilities in ${report.lhlo.ms} ms${
    report.lhlo.freeText ? ` (free text, not capabilities: ${report.lhlo.freeText.map((t) => `"${t}"`).join(', ')})` : ''
  }`
  for (const check of ALL_CHECKS) {
    if (check.id === 'port-25') addCheck(LHLO_CHECK, 'pass', lhloDetail, report.lhlo.ms)
    if (!selected.has(check.id)) continue
    if (check.delivers && o.deliverTo.length === 0) {
      addCheck(check, 'skip', 'needs --deliver-to ADDR (a real mailbox): this check delivers test messages', 0)
      continue
    }
    const started = performance.now()
    let status: CheckStatus
    let detail: string
    try {
      const v = await check.run(ctx)
      status = v.status
      detail = v.detail
    } catch (err) {
      status = 'fail'
      detail = `the check could not complete: ${(err as Error).message}`
    }
    addCheck(check, status, detail, Math.round(performance.now() - started))
  }
  return finish()
}

/**
 * A fresh raw connection for a check that must misbehave: greeted, upgraded with STARTTLS when the checks run
 * over TLS (the one upgrader), LHLO sent and AUTH done when `lhlo` is asked for.
 */
async function openConnection(o: ResolvedOptions, overTls: boolean, authCaps: Capabilities | undefined, observed: ObservedReply[], lhlo: boolean): Promise<ProbeConnection> {
  const socket = await connectTarget(o.target, o.timeoutMs)
  const c = new ProbeConnection(socket, o.timeoutMs, (x) => observed.push(x))
  try {
    const g = await c.read()
    if (g.code !== 220) throw new Error(`a fresh connection was refused: ${describeReply(g)}`)
    if (overTls) {
      await lhloRaw(o, c)
      const s = await c.command('STARTTLS')
      if (s.code !== 220) throw new Error(`STARTTLS refused on a fresh connection: ${describeReply(s)}`)
      await c.upgrade(tlsUpgrader(o.target, {insecure: true, ca: o.tlsCa, handshakeTimeoutMs: o.timeoutMs}))
    }
    if (lhlo) {
      await lhloRaw(o, c)
      if (authCaps && o.auth) await authenticate(c, authCaps, o.auth)
    }
    return c
  } catch (err) {
    c.close()
    throw err
  }
}

async function lhloRaw(o: ResolvedOptions, c: ProbeConnection): Promise<void> {
  const l = await c.command(`LHLO ${o.lhloName}`)
  if (l.code !== 250) throw new Error(`LHLO refused on a fresh connection: ${describeReply(l)}`)
}

/** A fresh protocol client through openSession, as the main session was opened. */
async function openClient(o: ResolvedOptions, overTls: boolean, auth: boolean): Promise<LmtpClient> {
  const a = await attempt(o, overTls, auth ? o.auth : undefined)
  if (!a.session) throw a.error!
  return a.session.client
}
