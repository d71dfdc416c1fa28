/**
 * Python aiosmtpd's LMTP server: a real but non-compliant LMTP peer (one reply after DATA, no PIPELINING or
 * ENHANCEDSTATUSCODES advertised) that `lmtp probe` must diagnose.
 */
import {readFile} from 'node:fs/promises'
import {fileURLToPath} from 'node:url'
import {DEBIAN_PYTHON, peerBinary} from './gate.js'
import {PeerProcess, tempDir, waitFor, waitForListening} from './proc.js'

/** The path of the aiosmtpd LMTP server script. */
export const AIOSMTPD_SCRIPT = fileURLToPath(new URL('./aiosmtpd_lmtp.py', import.meta.url))

/** Options for {@link startAiosmtpdLmtp}. */
export interface AiosmtpdOptions {
  /** The single reply it gives after DATA (default `250 2.0.0 OK`). */
  reply?: string
}

/** One message aiosmtpd accepted. */
export interface AiosmtpdMessage {
  mail_from: string
  rcpt_tos: string[]
  size: number
}

/** A running aiosmtpd LMTP server. */
export interface AiosmtpdLmtp {
  port: number
  pid: number
  /** The messages it accepted so far, in order. */
  messages(): Promise<AiosmtpdMessage[]>
  /** Stops it (by pid) and removes its temp dir. */
  stop(): Promise<void>
}

/** Starts aiosmtpd's LMTP class on a free loopback port (it binds port 0 itself: no race). */
export async function startAiosmtpdLmtp(options: AiosmtpdOptions = {}): Promise<AiosmtpdLmtp> {
  const python = peerBinary(DEBIAN_PYTHON)
  const dir = await tempDir('lmtp-aiosmtpd')
  const record = `${dir.path}/messages.jsonl`
  const args = [AIOSMTPD_SCRIPT, '--port', '0', '--record', record]
  if (options.reply) args.push('--reply', options.reply)
  const proc = new PeerProcess('aiosmtpd', python, args)
  try {
    const port = await waitFor(
      'aiosmtpd to print its port',
      () => {
        if (proc.exitStatus) throw new Error(`aiosmtpd exited before listening\n${proc.output()}`)
        const m = /\{"port": (\d+)\}/.exec(proc.stdout())
        return m ? Number(m[1]) : undefined
      },
      20_000,
    )
    await waitForListening({port}, {process: proc, greeting: true})
    return {
      port,
      pid: proc.pid,
      async messages() {
        const text = await readFile(record, 'utf8').catch(() => '')
        return text
          .split('\n')
          .filter(Boolean)
          .map((line) => JSON.parse(line) as AiosmtpdMessage)
      },
      async stop() {
        await proc.stop()
        await dir.cleanup()
      },
    }
  } catch (err) {
    await proc.stop()
    await dir.cleanup()
    throw err
  }
}
