/** One session's transcript: commands (C:) and replies (S:), with the time since the session opened. */
import {Text} from 'ink'
import type {SessionRecord} from '../../protocol/feed-model.js'
import {fit, formatBytes, formatClock, formatDuration} from '../format.js'

/** Props of {@link TranscriptView}. */
export interface TranscriptViewProps {
  session: SessionRecord | undefined
  sessionId: string
  width: number
  /** Lines available for the transcript itself. */
  height: number
  now: number
}

/** A title line, a facts line, and the last `height` transcript lines. */
export function TranscriptView({session, sessionId, width, height, now}: TranscriptViewProps) {
  if (!session) {
    return (
      <>
        <Text bold>Session {sessionId}</Text>
        <Text dimColor>(no longer known: it closed a while ago) — esc to go back</Text>
      </>
    )
  }
  const entries = session.transcript.slice(-height)
  const end = session.closedAt ?? now
  return (
    <>
      <Text bold wrap="truncate-end">
        Session {session.sessionId} · {session.peer} via {session.listener} · {session.phase}
        {session.closeReason ? ` (${session.closeReason})` : ''} · esc back
      </Text>
      <Text dimColor wrap="truncate-end">
        opened {formatClock(session.openedAt)} · age {formatDuration(end - session.openedAt)} · LHLO {session.lhlo ?? '-'}
        {session.tls ? ` · ${session.tls}` : ''} · {session.messages} messages · {formatBytes(session.bytes)}
        {session.transcript.length > entries.length ? ` · last ${entries.length} of ${session.transcript.length} lines` : ''}
      </Text>
      {entries.length === 0 ? <Text dimColor>(no commands yet)</Text> : null}
      {entries.map((e, i) => {
        const prev = i > 0 ? entries[i - 1]!.at : e.at
        const reply = e.dir === 'S'
        const code = reply ? Number.parseInt(e.text.slice(0, 3), 10) : 0
        const color = reply ? (code >= 500 ? 'red' : code >= 400 ? 'yellow' : 'green') : 'cyan'
        return (
          // biome-ignore lint/suspicious/noArrayIndexKey: transcript lines are positional
          <Text key={i} wrap="truncate-end">
            <Text dimColor>
              {fit(`+${e.at - session.openedAt}ms`, 10, 'right')} {fit(i > 0 ? `Δ${e.at - prev}` : '', 7, 'right')}{' '}
            </Text>
            <Text color={color}>{e.dir}:</Text> {fit(e.text, Math.max(10, width - 23))}
          </Text>
        )
      })}
    </>
  )
}
