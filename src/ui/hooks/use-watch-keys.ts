/**
 * useWatchKeys: the dashboard's keys mapped to actions. Input is read only when stdin supports raw mode
 * (Ink's useInput throws otherwise), so the dashboard still draws when stdin is not a terminal.
 */
import {useInput, useStdin} from 'ink'

/** What a key asks for. */
export type WatchAction = 'quit' | 'pause' | 'up' | 'down' | 'open' | 'back' | 'failures' | 'help'

/** Maps one key press to an action (undefined: not a dashboard key). */
export function keyAction(input: string, key: {upArrow: boolean; downArrow: boolean; return: boolean; escape: boolean; backspace: boolean; delete: boolean}): WatchAction | undefined {
  if (key.upArrow || input === 'k') return 'up'
  if (key.downArrow || input === 'j') return 'down'
  if (key.return) return 'open'
  if (key.escape || key.backspace || key.delete) return 'back'
  switch (input) {
    case 'q':
      return 'quit'
    case 'p':
    case ' ':
      return 'pause'
    case 'f':
      return 'failures'
    case '?':
    case 'h':
      return 'help'
    default:
      return undefined
  }
}

/** Calls `onAction` for every dashboard key pressed. */
export function useWatchKeys(onAction: (action: WatchAction) => void): void {
  const {isRawModeSupported} = useStdin()
  useInput(
    (input, key) => {
      const action = keyAction(input, key)
      if (action) onAction(action)
    },
    {isActive: isRawModeSupported === true},
  )
}
