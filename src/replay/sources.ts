/**
 * SOURCE arguments of `lmtp replay`: any mix of transcripts (a file or a directory of them), Maildirs (or a
 * tree of Maildirs), mbox files, directories of .eml files and single .eml files. The kind is detected per
 * file (a `From ` first line is an mbox, a transcript header line is a transcript, anything else a message)
 * and per directory (one with cur/ and new/ is a Maildir); `--format` forces it.
 *
 * Directories are walked lazily with opendir, so the first message is sent while the walk goes on, whatever
 * the number of files. The one exception: the transcripts of one directory are sorted by name (recording
 * time) before they are read, so that `--timing original` sees sessions in the order they happened.
 */
import type {Dir, Dirent, Stats} from 'node:fs'
import {open, opendir, stat} from 'node:fs/promises'
import path from 'node:path'
import {fsReason, type SourceEntry} from './item.js'
import {type MboxOptions, readMbox} from './mbox.js'
import {messageFileItem} from './message-file.js'
import {BODIES_DIR} from './transcript.js'
import {isTranscriptFile, readTranscript} from './transcript-reader.js'

/** What `--format` accepts. */
export const SOURCE_FORMATS = ['auto', 'transcript', 'maildir', 'mbox', 'eml'] as const

/** A source format. */
export type SourceFormat = (typeof SOURCE_FORMATS)[number]

/** Options of the source reader. */
export interface SourceOptions {
  format?: SourceFormat
  mbox?: MboxOptions
  /** Keep the leading trace fields of corpus messages (default: left out; see headers.ts). */
  keepTrace?: boolean
}

/** The kind of a single file, from its first bytes (and its name for .mbox). */
export async function detectFileKind(file: string): Promise<'mbox' | 'transcript' | 'eml'> {
  let first = ''
  try {
    const fh = await open(file, 'r')
    try {
      const buf = Buffer.alloc(512)
      const {bytesRead} = await fh.read(buf, 0, buf.length, 0)
      first = buf.subarray(0, bytesRead).toString('latin1')
    } finally {
      await fh.close()
    }
  } catch {
    return 'eml'
  }
  if (first.startsWith('From ')) return 'mbox'
  if (first.startsWith('{') && (await isTranscriptFile(file))) return 'transcript'
  return 'eml'
}

/** True when `dir` has cur/ and new/ subdirectories. */
export async function isMaildir(dir: string): Promise<boolean> {
  const [cur, nw] = await Promise.all([isDir(path.join(dir, 'cur')), isDir(path.join(dir, 'new'))])
  return cur && nw
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory()
  } catch {
    return false
  }
}

/** Reads every SOURCE in order, lazily. Problems (unreadable paths, bad messages) are yielded, never thrown. */
export async function* readSources(paths: readonly string[], options: SourceOptions = {}): AsyncGenerator<SourceEntry> {
  const format = options.format ?? 'auto'
  for (const p of paths) {
    let st: Stats
    try {
      st = await stat(p)
    } catch (err) {
      yield {problem: {source: p, reason: `cannot read: ${fsReason(err)}`}}
      continue
    }
    if (st.isDirectory()) yield* walkDir(p, format, options)
    else yield* readFile(p, format === 'maildir' ? 'eml' : format, options, true)
  }
}

async function* readFile(file: string, format: SourceFormat, options: SourceOptions, explicit: boolean): AsyncGenerator<SourceEntry> {
  let kind: 'mbox' | 'transcript' | 'eml' | 'maildir' | undefined
  if (format === 'auto') {
    if (explicit) kind = await detectFileKind(file)
    else {
      const ext = path.extname(file).toLowerCase()
      if (ext === '.eml') kind = 'eml'
      else if (ext === '.mbox' || ext === '.mbx') kind = 'mbox'
      else if (ext === '.jsonl' && (await isTranscriptFile(file))) kind = 'transcript'
    }
  } else kind = format
  switch (kind) {
    case 'mbox':
      yield* readMbox(file, {...options.mbox, keepTrace: options.keepTrace})
      break
    case 'transcript':
      yield* readTranscript(file)
      break
    case 'eml':
      yield {item: messageFileItem(file, 'eml', options.keepTrace)}
      break
    default:
      yield {ignored: file}
  }
}

async function* walkDir(dir: string, format: SourceFormat, options: SourceOptions): AsyncGenerator<SourceEntry> {
  if ((format === 'auto' || format === 'maildir') && (await isMaildir(dir))) {
    yield* walkMaildir(dir, format, options)
    return
  }
  const transcripts: string[] = []
  let handle: Dir
  try {
    handle = await opendir(dir)
  } catch (err) {
    yield {problem: {source: dir, reason: `cannot read the directory: ${fsReason(err)}`}}
    return
  }
  try {
    for await (const entry of handle) {
      const p = path.join(dir, entry.name)
      if (entry.name.startsWith('.')) continue
      if (await isDirEntry(entry, p)) {
        if (entry.name === BODIES_DIR && (format === 'auto' || format === 'transcript')) continue
        yield* walkDir(p, format, options)
        continue
      }
      if (format === 'maildir') {
        yield {ignored: p}
        continue
      }
      if ((format === 'transcript' || format === 'auto') && entry.name.endsWith('.jsonl')) {
        transcripts.push(p)
        continue
      }
      yield* readFile(p, format, options, false)
    }
  } catch (err) {
    yield {problem: {source: dir, reason: `cannot read the directory: ${fsReason(err)}`}}
  }
  transcripts.sort()
  for (const t of transcripts) yield* readFile(t, format === 'auto' ? 'auto' : 'transcript', options, false)
}

async function* walkMaildir(dir: string, format: SourceFormat, options: SourceOptions): AsyncGenerator<SourceEntry> {
  for (const sub of ['new', 'cur']) {
    const d = path.join(dir, sub)
    let handle: Dir
    try {
      handle = await opendir(d)
    } catch (err) {
      yield {problem: {source: d, reason: `cannot read the directory: ${fsReason(err)}`}}
      continue
    }
    try {
      for await (const entry of handle) {
        if (entry.name.startsWith('.')) continue
        const p = path.join(d, entry.name)
        if (entry.isDirectory()) continue
        yield {item: messageFileItem(p, 'maildir', options.keepTrace)}
      }
    } catch (err) {
      yield {problem: {source: d, reason: `cannot read the directory: ${fsReason(err)}`}}
    }
  }
  // Maildir++ folders (.Sent, .Archive) and nested Maildirs.
  let handle: Dir
  try {
    handle = await opendir(dir)
  } catch {
    return
  }
  for await (const entry of handle) {
    if (entry.name === 'cur' || entry.name === 'new' || entry.name === 'tmp') continue
    const p = path.join(dir, entry.name)
    if (await isDirEntry(entry, p)) yield* walkDir(p, format, options)
  }
}

async function isDirEntry(entry: Dirent, p: string): Promise<boolean> {
  if (entry.isDirectory()) return true
  if (entry.isSymbolicLink()) return isDir(p)
  return false
}
