/** The live sessions table: one row per open (then recently closed) session; the selected row is inverted. */
import {Text} from 'ink'
import type {SessionPhase} from '../../protocol/feed-format.js'
import type {SessionRow} from '../../watch/view.js'
import {type ColumnSpec, fit, formatBytes, formatDuration, layoutColumns, shortSessionId} from '../format.js'

/** Props of {@link SessionsTable}. */
export interface SessionsTableProps {
  rows: SessionRow[]
  selectedId?: string
  width: number
  /** Rows available for sessions (the header line not included). */
  height: number
}

const SPECS: ColumnSpec[] = [
  {width: 5}, // session
  {min: 16, grow: 1}, // peer
  {width: 10}, // state
  {min: 10, grow: 1}, // lhlo
  {min: 12, grow: 2}, // mail from
  {width: 4}, // rcpt
  {width: 8}, // bytes
  {width: 6}, // age
  {min: 10, grow: 2}, // last command
]

const PHASE_COLOR: Partial<Record<SessionPhase, string>> = {
  data: 'cyan',
  delivering: 'magenta',
  closing: 'gray',
  closed: 'gray',
}

/** The first visible row so that `selected` is on screen. */
export function scrollStart(count: number, height: number, selected: number): number {
  if (selected < 0 || count <= height) return 0
  return Math.min(Math.max(0, selected - height + 1), count - height)
}

/** A title, a column header and up to `height` rows. */
export function SessionsTable({rows, selectedId, width, height}: SessionsTableProps) {
  const w = layoutColumns(width - 2, SPECS)
  const open = rows.filter((r) => r.phase !== 'closed').length
  const selected = rows.findIndex((r) => r.sessionId === selectedId)
  const start = scrollStart(rows.length, height, selected)
  const visible = rows.slice(start, start + height)
  const head = ['SESS', 'PEER', 'STATE', 'LHLO', 'MAIL FROM', 'RCPT', 'BYTES', 'AGE', 'LAST COMMAND']
  return (
    <>
      <Text bold wrap="truncate-end">
        Sessions: {open} open{rows.length > open ? `, ${rows.length - open} recently closed` : ''}
        {rows.length > height ? ` (${start + 1}-${start + visible.length} of ${rows.length})` : ''}
      </Text>
      <Text dimColor wrap="truncate-end">
        {'  '}
        {head.map((h, i) => fit(h, w[i]!, i === 5 || i === 6 || i === 7 ? 'right' : 'left')).join(' ')}
      </Text>
      {visible.length === 0 ? <Text dimColor>  (no sessions yet)</Text> : null}
      {visible.map((r) => {
        const isSelected = r.sessionId === selectedId
        const closed = r.phase === 'closed'
        const cells = [
          fit(shortSessionId(r.sessionId), w[0]!),
          fit(r.peer, w[1]!),
          fit(closed ? 'closed' : r.phase, w[2]!),
          fit(r.lhlo ?? '-', w[3]!),
          fit(r.from === undefined ? '-' : `<${r.from}>`, w[4]!),
          fit(String(r.recipients), w[5]!, 'right'),
          fit(formatBytes(r.bytes), w[6]!, 'right'),
          fit(formatDuration(r.ageMs), w[7]!, 'right'),
          fit(closed ? (r.closeReason ?? '') : (r.lastCommand ?? ''), w[8]!),
        ]
        return (
          <Text key={r.sessionId} wrap="truncate-end" inverse={isSelected} dimColor={closed && !isSelected}>
            {isSelected ? '▶ ' : '  '}
            {cells.slice(0, 2).join(' ')} <Text color={PHASE_COLOR[r.phase]}>{cells[2]}</Text> {cells.slice(3).join(' ')}
          </Text>
        )
      })}
    </>
  )
}
