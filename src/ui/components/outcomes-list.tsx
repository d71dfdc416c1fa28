/** Per-recipient outcomes, newest first, coloured by class; deferred and rejected rows stand out. */
import {Text} from 'ink'
import type {Outcome} from '../../protocol/events.js'
import type {OutcomeRecord} from '../../protocol/feed-format.js'
import {type ColumnSpec, fit, formatClock, formatLatency, layoutColumns, shortSessionId} from '../format.js'

/** Props of {@link OutcomesList}. */
export interface OutcomesListProps {
  rows: OutcomeRecord[]
  width: number
  /** Rows available (the title and column header not included). */
  height: number
  failuresOnly: boolean
}

const SPECS: ColumnSpec[] = [
  {width: 8}, // time
  {width: 6}, // session
  {min: 14, grow: 3}, // recipient
  {width: 11}, // outcome
  {width: 9}, // code
  {min: 12, grow: 4}, // mailbox or reason
  {width: 7}, // latency
]

const MARK: Record<Outcome, string> = {delivered: '✓', deferred: '!', rejected: '✗'}
const COLOR: Record<Outcome, string> = {delivered: 'green', deferred: 'yellow', rejected: 'red'}

/** A title, a column header and the newest `height` outcomes. */
export function OutcomesList({rows, width, height, failuresOnly}: OutcomesListProps) {
  const w = layoutColumns(width - 2, SPECS)
  const head = ['TIME', 'SESS', 'RECIPIENT', 'OUTCOME', 'CODE', 'MAILBOX / REASON', 'LATENCY']
  return (
    <>
      <Text bold wrap="truncate-end">
        Outcomes{failuresOnly ? ' (failures only)' : ''}, newest first
      </Text>
      <Text dimColor wrap="truncate-end">
        {'  '}
        {head.map((h, i) => fit(h, w[i]!, i === 6 ? 'right' : 'left')).join(' ')}
      </Text>
      {rows.length === 0 ? <Text dimColor>  {failuresOnly ? '(no failures)' : '(no recipients yet)'}</Text> : null}
      {rows.slice(0, height).map((o, i) => {
        const failed = o.outcome !== 'delivered'
        const code = [String(o.code), o.enhanced].filter(Boolean).join(' ')
        const detail = o.outcome === 'delivered' && o.mailbox ? o.mailbox : `${o.stage === 'RCPT' ? 'at RCPT: ' : ''}${o.text}`
        return (
          // Rows have no stable id (duplicates are legal); their position in the newest-first list is one.
          // biome-ignore lint/suspicious/noArrayIndexKey: see above
          <Text key={i} wrap="truncate-end" color={failed ? COLOR[o.outcome] : undefined} bold={o.outcome === 'rejected'}>
            {failed ? '▌ ' : '  '}
            {fit(formatClock(o.at), w[0]!)} {fit(shortSessionId(o.sessionId), w[1]!)} {fit(o.recipient, w[2]!)}{' '}
            <Text color={COLOR[o.outcome]}>{fit(`${MARK[o.outcome]} ${o.outcome}`, w[3]!)}</Text> {fit(code, w[4]!)}{' '}
            {fit(detail, w[5]!)} {fit(formatLatency(o.latencyMs), w[6]!, 'right')}
          </Text>
        )
      })}
    </>
  )
}
