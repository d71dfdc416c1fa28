/** The key help shown by `?`. */
import {Text} from 'ink'

const KEYS: [string, string][] = [
  ['q', 'quit (ctrl-c too)'],
  ['p / space', 'pause the display (events are still counted; p again to catch up)'],
  ['↑ ↓ (k j)', 'select a session'],
  ['enter', "show the selected session's transcript (commands and replies, with timings)"],
  ['esc', 'back from the transcript or this help'],
  ['f', 'show only deferred and rejected recipients'],
  ['?', 'this help'],
]

/** The key list. */
export function HelpView() {
  return (
    <>
      <Text bold>Keys</Text>
      {KEYS.map(([k, what]) => (
        <Text key={k} wrap="truncate-end">
          {'  '}
          <Text color="cyan">{k.padEnd(10)}</Text> {what}
        </Text>
      ))}
      <Text> </Text>
      <Text dimColor wrap="truncate-end">
        Outcomes: ✓ delivered (2xx) · ! deferred (4xx, the sender retries) · ✗ rejected (5xx, bounced). Failures are marked ▌.
      </Text>
    </>
  )
}
