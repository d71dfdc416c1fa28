/**
 * One message in one file (a .eml file, a file in a Maildir's new/ or cur/): opened once, its header block
 * read to derive the envelope, and the rest streamed from the same file handle. The leading trace fields
 * (Return-Path, Delivered-To, X-Original-To) are left out unless `keepTrace`: see leadingTraceLength.
 */
import {type FileHandle, open} from 'node:fs/promises'
import {envelopeFromHeaders, HeaderError, headerEnd, leadingTraceLength, MAX_HEADER_BLOCK, parseHeaderBlock} from './headers.js'
import {fsReason, InputError, type MessageInfo, type OpenedMessage, type ReplayItem, type SourceKind} from './item.js'
import {measureChunks} from './measure.js'

const READ_SIZE = 256 * 1024

/** An item for a message file. */
export function messageFileItem(file: string, kind: SourceKind, keepTrace = false): ReplayItem {
  return {source: file, kind, open: () => openMessageFile(file, keepTrace)}
}

/**
 * Opens a message file: reads until the end of the header block (at most 1 MiB), derives the envelope, and
 * returns a body that replays the bytes already read and then streams the rest. Throws InputError for an
 * unreadable file, an empty one, or one without headers.
 */
export async function openMessageFile(file: string, keepTrace = false): Promise<OpenedMessage> {
  let fh: FileHandle
  try {
    fh = await open(file, 'r')
  } catch (err) {
    throw new InputError({source: file, reason: `cannot read: ${fsReason(err)}`})
  }
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    await fh.close().catch(() => {})
  }
  try {
    const parts: Buffer[] = []
    let have = 0
    let end = -1
    let eof = false
    while (end < 0) {
      const buf = Buffer.allocUnsafe(READ_SIZE)
      const {bytesRead} = await fh.read(buf, 0, READ_SIZE, null)
      if (bytesRead === 0) {
        eof = true
        break
      }
      parts.push(buf.subarray(0, bytesRead))
      have += bytesRead
      end = headerEnd(parts.length === 1 ? parts[0]! : Buffer.concat(parts, have))
      if (end < 0 && have > MAX_HEADER_BLOCK) throw new HeaderError('the header block is longer than 1 MiB (not a message?)')
    }
    const head = parts.length === 1 ? parts[0]! : Buffer.concat(parts, have)
    if (have === 0) throw new HeaderError('the file is empty')
    const fields = parseHeaderBlock(head.subarray(0, end < 0 ? head.length : end))
    const env = envelopeFromHeaders(fields)
    const skip = keepTrace ? 0 : leadingTraceLength(head.subarray(0, end < 0 ? head.length : end))
    async function* body(): AsyncGenerator<Buffer> {
      try {
        yield skip > 0 ? head.subarray(skip) : head
        if (eof) return
        for (;;) {
          const buf = Buffer.allocUnsafe(READ_SIZE)
          const {bytesRead} = await fh.read(buf, 0, READ_SIZE, null)
          if (bytesRead === 0) return
          yield buf.subarray(0, bytesRead)
        }
      } finally {
        await close()
      }
    }
    // A message read whole with its header block is measured here; a longer one is measured before sending.
    const info: MessageInfo | undefined = eof ? await measureChunks([skip > 0 ? head.subarray(skip) : head]) : undefined
    return {...env, body: body(), close, ...(info ? {info} : {})}
  } catch (err) {
    await close()
    if (err instanceof HeaderError) throw new InputError({source: file, reason: err.message})
    if (err instanceof InputError) throw err
    throw new InputError({source: file, reason: `cannot read: ${fsReason(err)}`})
  }
}
