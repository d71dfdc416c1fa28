/**
 * useFeed: subscribes to a feed source, folds every line into a WatchModel at once, and re-renders at most
 * every `intervalMs` (default 100 ms, so ~10 frames a second whatever the event rate) plus once a second for
 * the clocks. While paused it keeps returning the frozen view and counts what arrived meanwhile.
 */
import {useEffect, useRef, useState} from 'react'
import type {FeedSource, FeedStatus} from '../../watch/feed-client.js'
import {WatchModel} from '../../protocol/feed-model.js'
import {type DashboardView, buildView} from '../../watch/view.js'

/** Options of {@link useFeed}. */
export interface UseFeedOptions {
  paused: boolean
  failuresOnly: boolean
  /** Shortest time between two renders (default 100 ms). */
  intervalMs?: number
  /** The clock (tests pass a fixed one). */
  now?: () => number
}

/** What {@link useFeed} returns. */
export interface FeedState {
  view: DashboardView
  /** The live model (for the transcript of a selected session). */
  model: WatchModel
  /** Lines that arrived since the view was frozen (0 when not paused). */
  pending: number
}

/** Subscribes to `source` for the component's lifetime; see the module comment. */
export function useFeed(source: FeedSource, o: UseFeedOptions): FeedState {
  const modelRef = useRef<WatchModel | null>(null)
  if (modelRef.current === null) modelRef.current = new WatchModel()
  const model = modelRef.current
  const statusRef = useRef<FeedStatus>({state: 'connecting', path: ''})
  const [, setFrame] = useState(0)
  const interval = o.intervalMs ?? 100

  useEffect(() => {
    let timer: NodeJS.Timeout | undefined
    let last = 0
    const schedule = (): void => {
      if (timer) return
      const wait = Math.max(0, last + interval - Date.now())
      timer = setTimeout(() => {
        timer = undefined
        last = Date.now()
        setFrame((n) => n + 1)
      }, wait)
    }
    const stop = source.subscribe(
      (line) => {
        model.apply(line)
        schedule()
      },
      (status) => {
        statusRef.current = status
        schedule()
      },
    )
    const clock = setInterval(schedule, 1000)
    return () => {
      stop()
      clearInterval(clock)
      if (timer) clearTimeout(timer)
    }
  }, [source, model, interval])

  const frozen = useRef<{view: DashboardView; applied: number} | null>(null)
  const now = o.now ? o.now() : Date.now()
  if (o.paused && frozen.current && frozen.current.view.failuresOnly === o.failuresOnly) {
    return {view: frozen.current.view, model, pending: model.applied - frozen.current.applied}
  }
  const view = buildView(model, statusRef.current, now, {failuresOnly: o.failuresOnly})
  frozen.current = o.paused ? {view, applied: model.applied} : null
  return {view, model, pending: 0}
}
