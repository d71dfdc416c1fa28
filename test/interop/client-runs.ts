/**
 * Shared by the interop tests that drive OUR built CLI (`lmtp send`, `probe`, `replay`) against real LMTP
 * servers (Cyrus, Mailutils): run it with --json and read the fields the tests assert on, make a small corpus,
 * and recognise a message that SMTP smuggling forged.
 *
 * No test asserts on elapsed time. Every run passes a client timeout far longer than the run is given to
 * finish (`runCli` kills it after {@link RUN_LIMIT_MS}): a client that waited its timeout on a server that did
 * nothing wrong never finishes in time, and its test fails on the outcome (exit code null, no JSON).
 */
import {mkdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {type CliRun, runCli} from '../client/run-cli.js'

/** The client timeout given to every run, in seconds (a bare number is seconds for send, probe and replay). */
export const CLIENT_TIMEOUT_S = '600'

/** How long a run may take before runCli kills it (well below the client timeout, above any honest run). */
export const RUN_LIMIT_MS = 50_000

/** One recipient's result, as `send --json` prints it (only the fields asserted on). */
export interface SentRecipient {
  recipient: string
  outcome: string
  stage: string
  code: number
  enhanced?: string
  text: string
}

/** What `send --json` prints (only the fields asserted on). */
export interface SendJson {
  recipients: SentRecipient[]
  violation: string | null
  exitCode: number
}

/** One probe check (only the fields asserted on). */
export interface ProbeCheck {
  id: string
  title: string
  status: 'pass' | 'warn' | 'fail' | 'skip'
  detail: string
}

/** What `probe --json` prints (only the fields asserted on). */
export interface ProbeJson {
  checks: ProbeCheck[]
  lhlo?: {capabilities: {keyword: string; params: string}[]}
  exitCode: number
}

/** What `replay --json` prints (only the fields asserted on). */
export interface ReplayJson {
  messages: {total: number; delivered: number; deferred: number; rejected: number}
  recipients: {total: number; delivered: number}
  connections: {opened: number; lost: number}
  exitCode: number
}

/** A CLI run with its --json output parsed. */
export interface JsonRun<T> {
  run: CliRun
  json: T
}

/** Runs the built CLI with `--json` and parses stdout; throws with both streams when it printed no JSON. */
export async function runJson<T>(args: string[], env?: NodeJS.ProcessEnv): Promise<JsonRun<T>> {
  const run = await runCli([...args, '--json'], {timeoutMs: RUN_LIMIT_MS, env})
  if (run.code === null) {
    throw new Error(
      `lmtp ${args[0]} did not finish within ${RUN_LIMIT_MS} ms and was killed: it waited (for its ${CLIENT_TIMEOUT_S} s timeout?) on a server that had answered\nstderr: ${run.stderr}`,
    )
  }
  try {
    return {run, json: JSON.parse(run.stdout) as T}
  } catch {
    throw new Error(`lmtp ${args[0]} printed no JSON (exit ${run.code}):\nstdout: ${run.stdout}\nstderr: ${run.stderr}`)
  }
}

/** The arguments of `lmtp send` to `server` with a generated test message (add `--json` or not). */
export function sendArgs(server: string, to: string[], ...more: string[]): string[] {
  return ['send', '--server', server, '--from', 'ops@example.org', '--to', to.join(','), '--timeout', CLIENT_TIMEOUT_S, ...more]
}

/** `lmtp send --json` to `server` with a generated test message; `env` adds environment variables. */
export function sendJson(server: string, to: string[], more: string[] = [], env?: NodeJS.ProcessEnv): Promise<JsonRun<SendJson>> {
  return runJson<SendJson>(sendArgs(server, to, ...more), env)
}

/** `lmtp probe --json TARGET`. */
export function probeJson(target: string, ...more: string[]): Promise<JsonRun<ProbeJson>> {
  return runJson<ProbeJson>(['probe', target, '--timeout', CLIENT_TIMEOUT_S, ...more])
}

/** `lmtp replay --json SOURCE` to `server`. */
export function replayJson(source: string, server: string, ...more: string[]): Promise<JsonRun<ReplayJson>> {
  return runJson<ReplayJson>(['replay', source, '--server', server, '--timeout', CLIENT_TIMEOUT_S, ...more])
}

/** [recipient, outcome, stage, code, enhanced] of each result, for one readable comparison. */
export function rows(report: SendJson): [string, string, string, number, string | undefined][] {
  return report.recipients.map((r) => [r.recipient, r.outcome, r.stage, r.code, r.enhanced])
}

/** The ids of the checks with a given status, in report order. */
export function checkIds(report: ProbeJson, status: ProbeCheck['status']): string[] {
  return report.checks.filter((c) => c.status === status).map((c) => c.id)
}

/** One check by id (throws when the probe did not report it). */
export function check(report: ProbeJson, id: string): ProbeCheck {
  const found = report.checks.find((c) => c.id === id)
  if (!found) throw new Error(`probe reported no check '${id}': ${report.checks.map((c) => c.id).join(', ')}`)
  return found
}

/** The probe checks that deliver test messages and must pass on a server that answers them right. */
export const DELIVERY_CHECKS = ['reply-per-recipient', 'dot-stuffing'] as const

/** The three SMTP smuggling checks (bare line ends around the dot). */
export const SMUGGLING_CHECKS = ['smuggling-lf-dot-lf', 'smuggling-crlf-dot-lf', 'smuggling-lf-dot-crlf'] as const

/**
 * True when a stored message is one that probe's smuggling check FORGED: its header section (up to the first
 * empty line) carries the Subject the probe put in the injected lines. When the server does not end the
 * message early, those lines are inside the body of one message and do not count.
 */
export function isForgedBySmuggling(message: string): boolean {
  const header = message.split(/\r?\n\r?\n/, 1)[0] ?? ''
  return /^Subject:.*SMUGGLED/im.test(header)
}

/** Writes `count` small 7-bit messages with unique Message-IDs as DIR/mNN.eml; returns DIR. */
export async function writeEmlCorpus(dir: string, count: number, tag: string): Promise<string> {
  await mkdir(dir, {recursive: true})
  for (let i = 1; i <= count; i++) {
    const n = String(i).padStart(2, '0')
    await writeFile(
      join(dir, `m${n}.eml`),
      [
        'From: sender@example.org',
        'To: rcpt@example.com',
        `Subject: ${tag} replay ${n}`,
        `Message-ID: <${tag}-${n}-${process.pid}@example.org>`,
        '',
        `Message ${n} of the ${tag} replay corpus.`,
        '',
      ].join('\r\n'),
    )
  }
  return dir
}
