/**
 * Latency per phase, in HDR histograms (hdr-histogram-js): microsecond resolution, three significant digits,
 * constant memory whatever the number of samples, so a million-message run costs no more than a small one.
 */
import {build, type Histogram} from 'hdr-histogram-js'

/** The phases measured: connect (to the greeting), LHLO, MAIL, each RCPT, each recipient's reply after the
 * end of data, and the whole message (from its intended start in open-loop runs: no coordinated omission). */
export const PHASES = ['connect', 'lhlo', 'mail', 'rcpt', 'data', 'message'] as const

/** One phase. */
export type Phase = (typeof PHASES)[number]

/** Percentiles of one phase, in milliseconds (three decimals). */
export interface LatencyStats {
  count: number
  p50: number
  p90: number
  p99: number
  p999: number
  max: number
  mean: number
}

/** Histograms for every phase. */
export class LatencyRecorder {
  private readonly histograms = new Map<Phase, Histogram>()

  constructor() {
    for (const p of PHASES) {
      this.histograms.set(
        p,
        build({lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3, autoResize: true}),
      )
    }
  }

  /** Records a duration in milliseconds (fractions kept down to a microsecond). */
  record(phase: Phase, ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return
    this.histograms.get(phase)!.recordValue(Math.max(1, Math.round(ms * 1000)))
  }

  /** Samples recorded for a phase. */
  count(phase: Phase): number {
    return this.histograms.get(phase)!.totalCount
  }

  /** The percentiles of every phase. */
  stats(): Record<Phase, LatencyStats> {
    const out = {} as Record<Phase, LatencyStats>
    for (const p of PHASES) {
      const h = this.histograms.get(p)!
      // HDR percentiles report the top of a bucket, which can lie just above the exact maximum.
      const ms = (us: number): number => Math.round(Math.min(us, h.maxValue)) / 1000
      out[p] =
        h.totalCount === 0
          ? {count: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0, mean: 0}
          : {
              count: h.totalCount,
              p50: ms(h.getValueAtPercentile(50)),
              p90: ms(h.getValueAtPercentile(90)),
              p99: ms(h.getValueAtPercentile(99)),
              p999: ms(h.getValueAtPercentile(99.9)),
              max: ms(h.maxValue),
              mean: ms(h.mean),
            }
    }
    return out
  }
}
