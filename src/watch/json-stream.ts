/**
 * `lmtp watch --json` (or without a terminal): the feed's NDJSON lines copied to stdout as they arrive, for jq
 * and scripts. When stdout is slow the socket is paused, so the server drops events for this watcher (and says
 * so with a `dropped` line) instead of this process buffering without bound.
 */
import type {Writable} from 'node:stream'
import type {SocketFeed} from './feed-client.js'

/** Options of {@link streamJson}. */
export interface JsonStreamOptions {
  out: Writable
  /** Where connection notes go (never stdout: it carries only feed lines). */
  note: (line: string) => void
}

/** Copies the feed to `out` until the feed ends; resolves with the feed's error, if it ended with one. */
export async function streamJson(feed: SocketFeed, o: JsonStreamOptions): Promise<string | undefined> {
  let closedOut = false
  o.out.on('error', () => {
    // The reader went away (jq quit, `| head`): that is a normal end.
    closedOut = true
    feed.stop()
  })
  o.out.on('drain', () => feed.resume())
  let lastNote = ''
  feed.subscribe(
    (_line, raw) => {
      if (closedOut || raw === undefined) return
      if (!o.out.write(`${raw}\n`)) feed.pause()
    },
    (status) => {
      let note = ''
      if (status.state === 'connected') note = `lmtp watch: connected to ${status.path}`
      else if (status.state === 'disconnected') note = `lmtp watch: ${status.reason}; retrying`
      if (note && note !== lastNote) o.note(note)
      lastNote = note || lastNote
    },
  )
  await feed.done
  return closedOut ? undefined : feed.error
}
