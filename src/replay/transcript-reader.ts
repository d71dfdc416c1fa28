/**
 * Reads recorded transcripts back as replay items: one item per transaction that has a stored body, with its
 * recorded envelope, MAIL parameters and per-recipient outcomes (for --compare). The body is streamed from
 * `bodies/<sha256>` when the item is sent; a missing or truncated body file is a problem, not a crash.
 */
import {createReadStream} from 'node:fs'
import {stat} from 'node:fs/promises'
import path from 'node:path'
import readline from 'node:readline'
import {fsReason, InputError, type SourceEntry} from './item.js'
import {isSessionLine, type TransactionLine} from './transcript.js'

/** True when the file's first line is a transcript header (reads at most the first 64 KiB). */
export async function isTranscriptFile(file: string): Promise<boolean> {
  try {
    const stream = createReadStream(file, {start: 0, end: 64 * 1024 - 1})
    let first = ''
    for await (const chunk of stream) {
      first += (chunk as Buffer).toString('utf8')
      const nl = first.indexOf('\n')
      if (nl >= 0) {
        first = first.slice(0, nl)
        stream.destroy()
        break
      }
    }
    return isSessionLine(JSON.parse(first))
  } catch {
    return false
  }
}

/**
 * Yields the transactions of one transcript file. Lines that are not JSON are reported with their line
 * number and skipped; a transaction without a stored body (refused or aborted before the end of data) is
 * reported as not replayable.
 */
export async function* readTranscript(file: string): AsyncGenerator<SourceEntry> {
  const dir = path.dirname(file)
  let sessionAt: number | undefined
  let lineNo = 0
  let rl: readline.Interface
  try {
    rl = readline.createInterface({input: createReadStream(file), crlfDelay: Number.POSITIVE_INFINITY})
    for await (const line of rl) {
      lineNo++
      if (line.trim() === '') continue
      let value: unknown
      try {
        value = JSON.parse(line)
      } catch {
        yield {problem: {source: file, line: lineNo, reason: 'not a JSON line; skipped'}}
        continue
      }
      if (lineNo === 1) {
        if (!isSessionLine(value)) {
          yield {problem: {source: file, line: 1, reason: 'not an lmtp transcript (no session header line)'}}
          return
        }
        if (value.v > 1) yield {problem: {source: file, line: 1, reason: `transcript version ${value.v} is newer than this lmtp reads (1); reading what it can`}}
        sessionAt = value.at
        continue
      }
      const rec = value as Partial<TransactionLine>
      if (rec.type !== 'transaction') continue
      if (typeof rec.tx !== 'string' || !Array.isArray(rec.rcpts) || typeof rec.from !== 'string') {
        yield {problem: {source: file, line: lineNo, reason: 'malformed transaction record; skipped'}}
        continue
      }
      const source = `${file}#${rec.tx}`
      if (!rec.body) {
        yield {problem: {source, line: lineNo, reason: 'no body recorded (the transaction was refused or aborted before the end of data); not replayable', notMail: true}}
        continue
      }
      const body = rec.body
      const bodyFile = path.resolve(dir, body.file)
      const recipients = rec.rcpts.map((r) => r.to)
      const from = rec.from
      yield {
        item: {
          source,
          kind: 'transcript',
          params: {...(rec.params ?? {}), size: body.bytes},
          via: body.via,
          recorded: rec.rcpts,
          key: `tx:${rec.tx}`,
          at: sessionAt === undefined ? undefined : sessionAt + (rec.start ?? 0),
          open: async () => {
            let size: number
            try {
              size = (await stat(bodyFile)).size
            } catch (err) {
              throw new InputError({source, reason: `cannot read the body ${body.file}: ${fsReason(err)}`})
            }
            if (size !== body.bytes) {
              throw new InputError({source, reason: `the body ${body.file} has ${size} octets, the transcript says ${body.bytes}`})
            }
            const stream = createReadStream(bodyFile, {highWaterMark: 256 * 1024})
            return {from, to: recipients, body: stream as AsyncIterable<Buffer>, close: async () => void stream.destroy()}
          },
        },
      }
    }
  } catch (err) {
    yield {problem: {source: file, line: lineNo || undefined, reason: `cannot read: ${fsReason(err)}`}}
  }
}
