/**
 * One-shot LMTP clients written by other people: swaks, smtp-source and Python's smtplib.LMTP. Each returns
 * {code, stdout, stderr} and never throws for a failed delivery, so tests assert on what the peer saw.
 */
import {fileURLToPath} from 'node:url'
import {DEBIAN_PYTHON, peerBinary} from './gate.js'
import {type PeerTarget, type RunOptions, type RunResult, resolveTarget, runPeer} from './proc.js'

/** Runs swaks with `args` (add `--protocol LMTP`, `--server`/`--port` or `--socket` yourself). */
export function runSwaks(args: readonly string[], options?: RunOptions): Promise<RunResult> {
  return runPeer(peerBinary('swaks'), args, options)
}

/** The swaks arguments that point it at a target over LMTP. */
export function swaksTarget(target: PeerTarget): string[] {
  const t = resolveTarget(target)
  return t.kind === 'unix'
    ? ['--protocol', 'LMTP', '--socket', t.path]
    : ['--protocol', 'LMTP', '--server', t.host, '--port', String(t.port)]
}

/** One server reply as swaks printed it in its transcript. */
export interface SwaksReply {
  code: number
  /** The text after the code, as printed. */
  text: string
  /** True when swaks flagged it as a failure (`<**`). */
  failed: boolean
}

/**
 * The server replies in a swaks transcript, in order: each `<-` (ok) or `<**` (failure) line, one per
 * reply line. Continuation lines of a multi-line reply (`250-...`) are returned as separate entries.
 */
export function parseSwaksReplies(transcript: string): SwaksReply[] {
  const replies: SwaksReply[] = []
  for (const line of transcript.split('\n')) {
    const m = /^<(-|\*\*) +(\d{3})[ -]?(.*)$/.exec(line.trimEnd())
    if (m) replies.push({code: Number(m[2]), text: m[3]!, failed: m[1] === '**'})
  }
  return replies
}

/** Runs smtp-source with `args`, e.g. `['-L', '-m', '10', '-s', '2', '127.0.0.1:P']` or `unix:/path`. */
export function runSmtpSource(args: readonly string[], options?: RunOptions): Promise<RunResult> {
  return runPeer(peerBinary('smtp-source'), args, options)
}

/** The smtp-source address argument for a target. */
export function smtpSourceTarget(target: PeerTarget): string {
  const t = resolveTarget(target)
  return t.kind === 'unix' ? `unix:${t.path}` : `${t.host}:${t.port}`
}

/** One recipient's outcome as Python's smtplib.LMTP saw it. */
export interface PythonLmtpReply {
  rcpt: string
  /** Which reply this is: the MAIL reply (MAIL refused), the RCPT reply (refused), or its reply after DATA. */
  stage: 'lhlo' | 'mail' | 'rcpt' | 'data'
  /** The reply code; null when the server closed the connection before replying for this recipient. */
  code: number | null
  text: string
}

/** Options for {@link pythonLmtpSend}. */
export interface PythonLmtpSendOptions {
  /** A loopback port (`number` or `{port}`) or an absolute Unix socket path (`string` or `{socketPath}`). */
  target: PeerTarget | number | string
  from: string
  to: readonly string[]
  /** The whole message (headers and body); bare LF is sent as CRLF, as smtplib does. */
  message: string | Buffer
  /** The LHLO name (default `python.test`: no DNS lookup for the local name). */
  lhlo?: string
  /**
   * Socket timeout per reply (default 30 s); a reply that never comes (a server giving one reply after DATA
   * for several recipients) is then reported with `code: null`.
   */
  timeoutMs?: number
}

/** What {@link pythonLmtpSend} returns: the run, plus the per-recipient replies parsed from its JSON. */
export interface PythonLmtpResult extends RunResult {
  /** One entry per recipient, in the order given (empty when the script failed before printing). */
  replies: PythonLmtpReply[]
}

/** The path of the Python LMTP sender script. */
export const LMTP_SEND_SCRIPT = fileURLToPath(new URL('./lmtp_send.py', import.meta.url))

/**
 * Sends one message with Debian's Python `smtplib.LMTP`, using the low-level mail()/rcpt()/data() calls and
 * then reading the other recipients' replies after DATA by hand with getreply() (`sendmail()` reads only
 * one). Exit code 0 means the conversation completed (whatever the reply codes); 2 means a connection or
 * protocol error (details on stderr).
 */
export async function pythonLmtpSend(options: PythonLmtpSendOptions): Promise<PythonLmtpResult> {
  const t = options.target
  const target = resolveTarget(typeof t === 'number' ? {port: t} : typeof t === 'string' ? {socketPath: t} : t)
  if (target.kind === 'unix' && !target.path.startsWith('/')) {
    throw new Error(`pythonLmtpSend needs an absolute socket path, got ${target.path}`)
  }
  const args = [LMTP_SEND_SCRIPT, '--from', options.from, '--lhlo', options.lhlo ?? 'python.test']
  if (target.kind === 'unix') args.push('--socket', target.path)
  else args.push('--host', target.host, '--port', String(target.port))
  for (const rcpt of options.to) args.push('--to', rcpt)
  const timeoutMs = options.timeoutMs ?? 30_000
  args.push('--timeout', String(timeoutMs / 1000))
  // The socket timeout ends a stuck conversation; the kill is only a backstop.
  const run = await runPeer(peerBinary(DEBIAN_PYTHON), args, {input: options.message, timeoutMs: timeoutMs + 10_000})
  let replies: PythonLmtpReply[] = []
  if (run.code === 0) replies = JSON.parse(run.stdout) as PythonLmtpReply[]
  return {...run, replies}
}
