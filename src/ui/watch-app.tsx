/**
 * The dashboard: header, live sessions, per-recipient outcomes, a session's transcript, help. State that is
 * the user's (pause, filter, selection, which screen) lives here; everything about the server comes from
 * useFeed; the components only present.
 */
import {Text, useApp} from 'ink'
import {useRef, useState} from 'react'
import type {FeedSource} from '../watch/feed-client.js'
import {Header, isLive} from './components/header.js'
import {HelpView} from './components/help-view.js'
import {OutcomesList} from './components/outcomes-list.js'
import {SessionsTable} from './components/sessions-table.js'
import {TranscriptView} from './components/transcript-view.js'
import {useFeed} from './hooks/use-feed.js'
import {type TerminalSize, useTerminalSize} from './hooks/use-terminal-size.js'
import {type WatchAction, useWatchKeys} from './hooks/use-watch-keys.js'

/** Props of {@link WatchApp}. */
export interface WatchAppProps {
  source: FeedSource
  /** Title in the header (default `lmtp watch`). */
  title?: string
  /** Fixed size (tests); default: the terminal's, following resizes. */
  size?: TerminalSize
  /** The clock (tests). */
  now?: () => number
  /** Shortest time between renders (default 100 ms). */
  intervalMs?: number
  /** The latest server log line, shown in the footer (`serve --tui`, whose log cannot use the terminal). */
  logLine?: () => string | undefined
}

type Screen = 'main' | 'transcript' | 'help'

/** Lines the main screen uses besides the session and outcome rows. */
const CHROME = 9

/** Splits the rows between sessions and outcomes: sessions get what they need, up to ~40%. */
export function splitRows(rows: number, sessionCount: number, extra = 0): {sessions: number; outcomes: number} {
  const body = Math.max(2, rows - 1 - CHROME - extra)
  const sessions = Math.max(1, Math.min(Math.max(1, sessionCount), Math.floor(body * 0.4)))
  return {sessions, outcomes: Math.max(1, body - sessions)}
}

/** The whole dashboard. */
export function WatchApp({source, title, size, now, intervalMs, logLine}: WatchAppProps) {
  const {exit} = useApp()
  const [paused, setPaused] = useState(false)
  const [failuresOnly, setFailuresOnly] = useState(false)
  const [selectedId, setSelectedId] = useState<string | undefined>(undefined)
  const [screen, setScreen] = useState<Screen>('main')
  const terminal = useTerminalSize()
  const {columns, rows} = size ?? terminal
  const {view, model, pending} = useFeed(source, {paused, failuresOnly, now, intervalMs})
  // Keys can arrive before React re-subscribes the handler: read the latest state through a ref.
  const latest = useRef({sessions: view.sessions, selectedId, screen})
  latest.current = {sessions: view.sessions, selectedId, screen}
  const select = (id: string | undefined): void => {
    latest.current.selectedId = id
    setSelectedId(id)
  }
  const show = (next: Screen): void => {
    latest.current.screen = next
    setScreen(next)
  }

  useWatchKeys((action: WatchAction) => {
    const {sessions: list, selectedId: current, screen: shown} = latest.current
    const index = list.findIndex((r) => r.sessionId === current)
    switch (action) {
      case 'quit':
        exit()
        return
      case 'pause':
        setPaused((p) => !p)
        return
      case 'failures':
        setFailuresOnly((f) => !f)
        return
      case 'help':
        show(shown === 'help' ? 'main' : 'help')
        return
      case 'back':
        show('main')
        return
      case 'open':
        if (shown === 'transcript') show('main')
        else if (current !== undefined) show('transcript')
        return
      case 'up':
      case 'down': {
        if (list.length === 0) return
        const step = action === 'up' ? -1 : 1
        const next = index < 0 ? (step > 0 ? 0 : list.length - 1) : Math.min(list.length - 1, Math.max(0, index + step))
        select(list[next]!.sessionId)
        return
      }
    }
  })

  const width = Math.max(40, columns)
  const banner = isLive(view) ? 0 : 1
  const split = splitRows(rows, view.sessions.length, banner)
  const log = logLine?.()
  return (
    <>
      <Header view={view} paused={paused} pending={pending} width={width} title={title} />
      {screen === 'help' ? <HelpView /> : null}
      {screen === 'transcript' && selectedId !== undefined ? (
        <TranscriptView
          session={model.findSession(selectedId)}
          sessionId={selectedId}
          width={width}
          height={Math.max(1, rows - 7 - banner)}
          now={view.now}
        />
      ) : null}
      {screen === 'main' ? (
        <>
          <SessionsTable rows={view.sessions} selectedId={selectedId} width={width} height={split.sessions} />
          <OutcomesList rows={view.outcomes} width={width} height={split.outcomes} failuresOnly={failuresOnly} />
        </>
      ) : null}
      <Text dimColor wrap="truncate-end">
        q quit · p {paused ? 'resume' : 'pause'} · ↑↓ select · enter transcript · f {failuresOnly ? 'all outcomes' : 'failures only'} · ? help
        {log ? ` │ ${log}` : ''}
      </Text>
    </>
  )
}
