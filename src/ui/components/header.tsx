/** The dashboard header: server, connection state, uptime, connections, messages, outcomes, throughput. */
import {Text} from 'ink'
import type {DashboardView} from '../../watch/view.js'
import {formatBytes, formatCount, formatDuration, formatRate, sparkline} from '../format.js'

/** Props of {@link Header}. */
export interface HeaderProps {
  view: DashboardView
  paused: boolean
  /** Lines that arrived while paused. */
  pending: number
  width: number
  /** Title when the dashboard runs inside the server (`serve --tui`). */
  title?: string
}

/** True when the feed is live (the status fits in the first line); otherwise a banner line says why not. */
export function isLive(view: DashboardView): boolean {
  return view.status.state === 'connected' || view.status.state === 'in-process'
}

function StatusText({view}: {view: DashboardView}) {
  const s = view.status
  switch (s.state) {
    case 'connected':
      return <Text color="green">● live</Text>
    case 'in-process':
      return <Text color="green">● in-process</Text>
    case 'connecting':
      return <Text color="yellow">○ connecting</Text>
    case 'disconnected':
      return (
        <Text color="red" bold>
          ○ {view.server ? 'server gone' : 'no server'}
        </Text>
      )
    case 'failed':
      return (
        <Text color="red" bold>
          ✗ stopped
        </Text>
      )
  }
}

/** The banner under the header when not live: why, and what happens next. */
function StatusBanner({view}: {view: DashboardView}) {
  const s = view.status
  switch (s.state) {
    case 'connecting':
      return <Text color="yellow" wrap="truncate-end">connecting to {s.path || 'the server'}…</Text>
    case 'disconnected':
      return (
        <Text color="red" bold wrap="truncate-end">
          {s.reason}; reconnecting{s.retryInMs !== undefined ? ` in ${formatDuration(Math.max(1000, s.retryInMs))}` : ''}
          {view.server ? ' (showing the last picture)' : ''}
        </Text>
      )
    case 'failed':
      return (
        <Text color="red" bold wrap="truncate-end">
          {s.reason}
        </Text>
      )
    default:
      return null
  }
}

/** Three lines (four when not live): who and whether live; counts; throughput and modes; why not live. */
export function Header({view, paused, pending, width, title}: HeaderProps) {
  const t = view.totals
  const server = view.server
  return (
    <>
      <Text wrap="truncate-end">
        <Text bold>{title ?? 'lmtp watch'}</Text>
        {server ? (
          <Text>
            {' '}
            {server.hostname} pid {server.pid} · {server.listeners.join(', ') || 'no listeners'} · up {formatDuration(view.uptimeMs ?? 0)}
          </Text>
        ) : null}
        <Text> · </Text>
        <StatusText view={view} />
      </Text>
      <Text wrap="truncate-end">
        <Text>
          conn {formatCount(t.openSessions)} now / {formatCount(t.connections)} · msgs {formatCount(t.messages)} · {formatBytes(t.bytes)} ·{' '}
        </Text>
        <Text color="green">delivered {formatCount(t.delivered)}</Text>
        <Text> · </Text>
        <Text color={t.deferred > 0 ? 'yellow' : undefined}>deferred {formatCount(t.deferred)}</Text>
        <Text> · </Text>
        <Text color={t.rejected > 0 ? 'red' : undefined} bold={t.rejected > 0}>
          rejected {formatCount(t.rejected)}
        </Text>
        <Text> · </Text>
        <Text color={t.refusedAtRcpt > 0 ? 'red' : undefined}>refused at RCPT {formatCount(t.refusedAtRcpt)}</Text>
      </Text>
      <Text wrap="truncate-end">
        <Text>
          {formatRate(view.messagesPerSec)} msg/s · {formatRate(view.recipientsPerSec)} rcpt/s{' '}
        </Text>
        <Text color="cyan">{sparkline(view.spark.slice(-Math.max(5, Math.min(30, width - 60))))}</Text>
        {paused ? (
          <Text color="black" backgroundColor="yellow">
            {' '}
            PAUSED{pending > 0 ? ` +${formatCount(pending)} new` : ''}{' '}
          </Text>
        ) : null}
        {view.failuresOnly ? <Text color="red"> [failures only]</Text> : null}
        {view.dropped > 0 ? <Text color="yellow"> · {formatCount(view.dropped)} events dropped (watcher too slow)</Text> : null}
      </Text>
      {isLive(view) ? null : <StatusBanner view={view} />}
    </>
  )
}
