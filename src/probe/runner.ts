/**
 * Runs a probe: one main session for the facts (connect time, greeting, LHLO capabilities, TLS, per-command
 * latency), then the conformance checklist, each check on its own fresh connection when it would disturb the
 * session. Returns the whole report; the exit code is part of it.
 */
import os from 'node:os'
import type {Duplex} from 'node:stream'
import type tls from 'node:tls'
import {connectTarget, explainConnectError, formatTarget} from '../net/target.js'
import {type Capabilities, parseCapabilities} from '../protocol/capabilities.js'
import {LmtpClient, LmtpClientError, uniformTimeouts} from '../protocol/client.js'
import type {OutgoingCommand} from '../protocol/command.js'
import {formatCommand} from '../protocol/command.js'
import {describeReply, replyText} from '../protocol/reply.js'
import {explainCapability} from './capability-notes.js'
import {type ObservedReply, ProbeConnection} from './connection.js'
import type {Check, CheckContext, ResolvedOptions} from './context.js'
import {deliveryChecks} from './delivery-checks.js'
import {commandChecks, enhancedCodesCheck, envelopeRecipient, factChecks} from './session-checks.js'
import {describeTls, tlsUpgrader} from './tls.js'
import type {CheckResult, CheckStatus, ProbeOptions, ProbeReport, TlsInfo} from './types.js'

/** Default per-reply timeout of a probe (a healthy LMTP server answers in milliseconds). */
export const DEFAULT_PROBE_TIMEOUT_MS = 10_000

/** The LHLO check is decided by the main session itself. */
const LHLO_CHECK = {id: 'lhlo', title: 'LHLO accepted', rfc: 'RFC 2033 §4.1'}

/** Every check in the order it runs (the delivery ones only with --deliver-to), ending with enhanced-codes. */
export const ALL_CHECKS: readonly Check[] = [...factChecks, ...commandChecks, ...deliveryChecks, enhancedCodesCheck]

function resolve(options: ProbeOptions): ResolvedOptions {
  return {
    target: options.target,
    starttls: options.starttls ?? false,
    tlsInsecure: options.tlsInsecure ?? false,
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

/** Probes a server. Never throws for anything the server does; the report says what happened. */
export async function runProbe(input: ProbeOptions): Promise<ProbeReport> {
  const o = resolve(input)
  const now = input.now ?? (() => new Date())
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
    const result: CheckResult = {id: check.id, title: check.title, status, rfc: check.rfc, detail, ms}
    report.checks.push(result)
    input.onCheck?.(result)
  }

  // The main session.
  let socket: Duplex
  try {
    const c = await timed(() => connectTarget(o.target, o.timeoutMs))
    socket = c.value
    report.connectMs = c.ms
    report.latency.push({command: 'connect', reply: '', ms: c.ms})
  } catch (err) {
    report.error = explainConnectError(o.target, err as NodeJS.ErrnoException)
    return finish()
  }
  const observed: ObservedReply[] = []
  const client = new LmtpClient(socket, {timeouts: uniformTimeouts(o.timeoutMs)})
  let plainKeywords: string[] = []
  let caps: Capabilities
  let tlsInfo: TlsInfo | undefined
  let overTls = false
  try {
    const g = await timed(() => client.start()).catch((err: LmtpClientError) => {
      const greeting = client.greeting
      if (greeting) {
        report.greeting = {code: greeting.code, enhanced: greeting.enhanced, text: replyText(greeting), ms: 0}
      }
      throw err
    })
    report.greeting = {code: g.value.code, enhanced: g.value.enhanced, text: replyText(g.value), ms: g.ms}
    report.latency.push({command: 'greeting', reply: describeReply(g.value), ms: g.ms})
    report.reachable = true
  } catch (err) {
    const e = err as LmtpClientError
    report.error =
      e.kind === 'refused'
        ? `${formatTarget(o.target)} answered but refused the session: ${e.message}`
        : `${formatTarget(o.target)} accepted the connection but sent no usable greeting: ${e.message}`
    client.close()
    return finish()
  }

  try {
    const l = await timed(() => lhlo(client, o.lhloName))
    caps = l.value.caps
    plainKeywords = caps.keywords
    report.latency.push({command: `LHLO ${o.lhloName}`, reply: `250 (${caps.keywords.length} capabilities)`, ms: l.ms})
    report.lhlo = {name: o.lhloName, serverName: l.value.serverName, ms: l.ms, capabilities: caps.keywords.map(explainCapability)}
    if (caps.startTls || o.starttls) {
      tlsInfo = {offered: caps.startTls, established: false}
      if (caps.startTls) {
        let secure: tls.TLSSocket | undefined
        const started = performance.now()
        try {
          await client.startTls(tlsUpgrader(o.target, o.timeoutMs, (s) => (secure = s)))
          const ms = Math.round((performance.now() - started) * 10) / 10
          tlsInfo = describeTls(secure!, now(), ms)
          report.latency.push({command: 'STARTTLS + TLS handshake', reply: `${tlsInfo.protocol ?? ''} ${tlsInfo.cipher ?? ''}`.trim(), ms})
          const l2 = await timed(() => lhlo(client, o.lhloName))
          caps = l2.value.caps
          report.latency.push({command: `LHLO ${o.lhloName} (inside TLS)`, reply: `250 (${caps.keywords.length} capabilities)`, ms: l2.ms})
          report.lhlo.capabilities = caps.keywords.map(explainCapability)
          overTls = o.starttls
        } catch (err) {
          tlsInfo = {offered: true, established: false, error: (err as Error).message}
        }
      }
    }
    report.tls = tlsInfo
  } catch (err) {
    addCheck(LHLO_CHECK, 'fail', `LHLO ${o.lhloName}: ${(err as Error).message}`, 0)
    client.close()
    return finish()
  }

  // Per-command latency on the main session: harmless commands, ending with RSET.
  if (!client.closed) {
    const steps: OutgoingCommand[] = [{verb: 'NOOP'}, {verb: 'MAIL', from: ''}, {verb: 'RCPT', to: probeRecipient(o)}, {verb: 'RSET'}]
    for (const cmd of steps) {
      try {
        const r = await timed(() => client.command(cmd))
        report.latency.push({command: formatCommand(cmd), reply: describeReply(r.value), ms: r.ms})
        observed.push({command: formatCommand(cmd), reply: r.value, afterLhlo: true})
      } catch {
        break
      }
    }
    const q = await timed(() => client.quit())
    report.latency.push({command: 'QUIT', reply: '', ms: q.ms})
  }

  const ctx: CheckContext = {
    options: o,
    capabilities: caps,
    plainKeywords,
    greeting: {code: report.greeting!.code, text: report.greeting!.text, ms: report.greeting!.ms},
    tls: tlsInfo,
    overTls,
    observed,
    now,
    open: (opts) => openConnection(o, overTls, observed, opts?.lhlo ?? false),
    openClient: () => openClient(o, overTls),
  }
  const lhloMs = report.lhlo.ms
  const lhloDetail = `"250 ${report.lhlo.serverName}" with ${plainKeywords.length} capabilities in ${lhloMs} ms`
  for (const check of ALL_CHECKS) {
    if (check.id === 'port-25') addCheck(LHLO_CHECK, 'pass', lhloDetail, lhloMs)
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

function probeRecipient(o: ResolvedOptions): string {
  return envelopeRecipient({options: o} as CheckContext)
}

/** A fresh raw connection, greeted, upgraded to TLS when the checks run over TLS, LHLO sent when asked. */
async function openConnection(o: ResolvedOptions, overTls: boolean, observed: ObservedReply[], lhlo: boolean): Promise<ProbeConnection> {
  const socket = await connectTarget(o.target, o.timeoutMs)
  const c = new ProbeConnection(socket, o.timeoutMs, (x) => observed.push(x))
  try {
    const g = await c.read()
    if (g.code !== 220) throw new Error(`a fresh connection was refused: ${describeReply(g)}`)
    if (overTls) {
      const l = await c.command(`LHLO ${o.lhloName}`)
      if (l.code !== 250) throw new Error(`LHLO refused on a fresh connection: ${describeReply(l)}`)
      const s = await c.command('STARTTLS')
      if (s.code !== 220) throw new Error(`STARTTLS refused on a fresh connection: ${describeReply(s)}`)
      await c.upgrade(tlsUpgrader(o.target, o.timeoutMs))
    }
    if (lhlo) {
      const l = await c.command(`LHLO ${o.lhloName}`)
      if (l.code !== 250) throw new Error(`LHLO refused on a fresh connection: ${describeReply(l)}`)
    }
    return c
  } catch (err) {
    c.close()
    throw err
  }
}

/** A fresh protocol client after LHLO, over TLS when the checks run over TLS. */
async function openClient(o: ResolvedOptions, overTls: boolean): Promise<LmtpClient> {
  const socket = await connectTarget(o.target, o.timeoutMs)
  const client = new LmtpClient(socket, {timeouts: uniformTimeouts(o.timeoutMs)})
  try {
    await client.start()
    await client.lhlo(o.lhloName)
    if (overTls) {
      await client.startTls(tlsUpgrader(o.target, o.timeoutMs))
      await client.lhlo(o.lhloName)
    }
    return client
  } catch (err) {
    client.close()
    throw err
  }
}

/** LHLO through the client's command(), keeping the server's name line that Capabilities drops. */
async function lhlo(client: LmtpClient, name: string): Promise<{caps: Capabilities; serverName: string}> {
  const r = await client.command({verb: 'LHLO', domain: name})
  if (r.code !== 250) throw new LmtpClientError('refused', `server refused LHLO: ${describeReply(r)}`, r)
  return {caps: parseCapabilities(r.lines), serverName: (r.lines[0] ?? '').split(' ', 1)[0] ?? ''}
}
