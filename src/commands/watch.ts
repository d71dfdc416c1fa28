import {Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base-command.js'
import {CliError, EXIT} from '../cli/exit-codes.js'
import {SocketFeed} from '../watch/feed-client.js'
import {defaultEventsPaths} from '../protocol/feed-format.js'
import {streamJson} from '../watch/json-stream.js'
import {drawLiveOnTerminal} from '../cli/terminal.js'

/** `lmtp watch`: a live dashboard of a running `lmtp serve` (or its raw event feed as NDJSON). */
export default class Watch extends BaseCommand {
  static override summary = 'Watch a running lmtp serve live: sessions, per-recipient outcomes, throughput'

  static override description = `Connects to the event feed of an lmtp serve run by the same user on this machine (or the socket given with
--events) and draws a live dashboard: connections, messages and outcomes, a throughput sparkline, the open
sessions and every recipient's outcome with its reply code. Keys: q quit, p pause, up/down select a session,
enter its transcript, f failures only, ? help. When the server stops it says so and reconnects when it is back.
With --json, or when stdout is not a terminal, it prints the feed's NDJSON lines instead (for jq).`

  static override examples = [
    {description: 'Watch the server started by `lmtp serve` in another terminal', command: '<%= config.bin %> watch'},
    {description: 'A second server with its own feed', command: '<%= config.bin %> watch --events /run/lmtp/b.sock'},
    {
      description: 'Print every failed recipient as it happens',
      command: `<%= config.bin %> watch --json | jq -c 'select(.type == "recipient.result" and .outcome != "delivered")'`,
    },
  ]

  static override flags = {
    events: Flags.string({description: 'the feed socket of the server (default: the per-user path lmtp serve uses)'}),
    reconnect: Flags.boolean({
      description: 'keep retrying while no server answers; --no-reconnect exits when the server stops',
      default: true,
      allowNo: true,
    }),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(Watch)
    const paths = flags.events ? [flags.events] : defaultEventsPaths()
    const feed = new SocketFeed({paths, reconnect: flags.reconnect})
    if (this.jsonEnabled() || process.stdout.isTTY !== true) {
      const error = await streamJson(feed, {out: process.stdout, note: (line) => process.stderr.write(`${line}\n`)})
      if (error) throw new CliError(`${error}: start lmtp serve, or pass --events PATH`, EXIT.unavailable)
      return
    }
    drawLiveOnTerminal()
    const {runDashboard} = await import('../ui/render-watch.js')
    const dashboard = runDashboard(feed)
    await Promise.race([dashboard.done, feed.done])
    dashboard.close()
    await dashboard.done
    feed.stop()
    if (feed.error) throw new CliError(`${feed.error}: start lmtp serve, or pass --events PATH`, EXIT.unavailable)
  }
}
