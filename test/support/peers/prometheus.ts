/**
 * A private Prometheus server (Debian's `prometheus`) scraping one target every second, with its own config,
 * TSDB directory and loopback HTTP port; queried through its HTTP API (/api/v1/query).
 */
import {writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {peerBinary} from './gate.js'
import {PeerProcess, freePort, tempDir, waitFor} from './proc.js'

/** A running Prometheus. */
export interface PrometheusPeer {
  port: number
  /** Runs an instant PromQL query; the result vector as [labels, value] pairs. */
  query(promql: string): Promise<{metric: Record<string, string>; value: number}[]>
  stop(): Promise<void>
}

/** Starts Prometheus scraping `target` (HOST:PORT, path /metrics) every second as job `lmtp`. */
export async function startPrometheus(target: string): Promise<PrometheusPeer> {
  const dir = await tempDir('lmtp-prometheus')
  const config = join(dir.path, 'prometheus.yml')
  await writeFile(
    config,
    ['global:', '  scrape_interval: 1s', '  scrape_timeout: 1s', 'scrape_configs:', '  - job_name: lmtp', '    static_configs:', `      - targets: ['${target}']`, ''].join('\n'),
  )
  const port = await freePort()
  const proc = new PeerProcess('prometheus', peerBinary('prometheus'), [
    `--config.file=${config}`,
    `--storage.tsdb.path=${join(dir.path, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`,
    '--log.level=warn',
  ])
  const base = `http://127.0.0.1:${port}`
  try {
    await waitFor(
      'prometheus to be ready',
      async () => {
        if (proc.exitStatus) throw new Error(`prometheus exited: ${proc.output()}`)
        return fetch(`${base}/-/ready`).then((r) => r.ok, () => false)
      },
      30_000,
      100,
    )
  } catch (err) {
    await proc.stop()
    await dir.cleanup()
    throw err
  }
  return {
    port,
    async query(promql) {
      const r = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(promql)}`)
      const body = (await r.json()) as {status: string; error?: string; data?: {result: {metric: Record<string, string>; value: [number, string]}[]}}
      if (body.status !== 'success') throw new Error(`PromQL ${promql}: ${body.error ?? r.status}`)
      return (body.data?.result ?? []).map((x) => ({metric: x.metric, value: Number(x.value[1])}))
    },
    async stop() {
      await proc.stop()
      await dir.cleanup()
    },
  }
}
