/**
 * Shared helpers of the security tests: one LMTP exchange over a raw socket with the replies it got, a strict
 * check of a delivered file's trace headers, and a listing of everything under a directory.
 */
import {readdir} from 'node:fs/promises'
import path from 'node:path'
import type {Reply} from '../../src/protocol/reply.js'
import {RawSession} from '../support/serve.js'

/** `code enhanced` of each reply, for compact assertions. */
export function brief(rs: readonly Reply[]): string[] {
  return rs.map((r) => `${r.code} ${r.enhanced ?? ''}`.trim())
}

/**
 * Runs LHLO, MAIL, the RCPTs and (when at least one RCPT got 2xx) DATA with `body` (already terminated with
 * CRLF.CRLF), then QUIT; returns all replies after the greeting and LHLO.
 */
export async function transact(
  target: number | string,
  o: {lhlo?: string; from: string; to: string[]; body: string | Buffer; mailParams?: string},
): Promise<Reply[]> {
  const s = await RawSession.open(target)
  try {
    await s.waitReplies(1)
    s.write(`LHLO ${o.lhlo ?? 'client.test'}\r\n`)
    await s.waitReplies(2)
    s.write(`MAIL FROM:<${o.from}>${o.mailParams ? ` ${o.mailParams}` : ''}\r\n${o.to.map((t) => `RCPT TO:<${t}>\r\n`).join('')}`)
    let n = 2 + 1 + o.to.length
    const env = await s.waitReplies(n)
    const accepted = env.slice(3).filter((r) => r.code >= 200 && r.code < 300).length
    if (env[2]!.code === 250 && accepted > 0) {
      s.write('DATA\r\n')
      n += 1
      const d = await s.waitReplies(n)
      if (d[n - 1]!.code === 354) {
        s.write(o.body)
        n += accepted
        await s.waitReplies(n)
      }
    }
    s.write('QUIT\r\n')
    await s.waitClosed()
    return s.replies.slice(2)
  } finally {
    s.close()
  }
}

/** Every path under `dir` (relative, sorted), symlinks listed but not followed. */
export async function listTree(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, {withFileTypes: true, recursive: true})) {
    out.push(path.relative(dir, path.join(e.parentPath, e.name)))
  }
  return out.sort()
}

/**
 * The five lines of trace headers this server adds, each matched strictly: no control character, no extra
 * header line. Returns the problem, or undefined when the file starts with exactly these lines.
 */
export function traceProblem(content: string): string | undefined {
  const lines = content.split('\n')
  const patterns = [
    /^Return-Path: <[^\x00-\x1f\x7f-\x9f<>]*>$/,
    /^Delivered-To: [^\x00-\x1f\x7f-\x9f]+$/,
    /^Received: from [^\s\x00-\x1f\x7f-\x9f]+ \([^\s\x00-\x1f\x7f-\x9f]+\)$/,
    /^\tby [^\s\x00-\x1f\x7f-\x9f]+ with [A-Z0-9]+ id [^\s\x00-\x1f\x7f-\x9f]+$/,
    /^\tfor <[^\x00-\x1f\x7f-\x9f<>]*>; [^\x00-\x1f\x7f-\x9f]+$/,
  ]
  for (let i = 0; i < patterns.length; i++) {
    if (!patterns[i]!.test(lines[i] ?? '')) return `trace line ${i + 1} is malformed: ${JSON.stringify(lines[i])}`
  }
  if (lines[5]?.startsWith('\t') || lines[5]?.startsWith(' ')) return 'an extra continuation line follows the trace'
  return undefined
}
