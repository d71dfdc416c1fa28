/**
 * Ink decides once, when it is first imported, whether it runs "in CI" (environment variable CI or
 * CONTINUOUS_INTEGRATION set), and then draws only the final frame. A dashboard on a real terminal must draw live
 * even when such a variable leaks into the environment (a CI job that opens tmux, a shell that exports CI), so the
 * commands that draw call this right before they import Ink.
 */
export function drawLiveOnTerminal(stream: NodeJS.WriteStream = process.stdout): void {
  if (stream.isTTY !== true) return
  delete process.env.CI
  delete process.env.CONTINUOUS_INTEGRATION
}
