/** Waiting on the lines a child process prints (an event, not a sleep). */

/** Lines a child prints, with a way to wait for one that matches. */
export class LineWatch {
  readonly lines: string[] = []
  private waiters: {match: (l: string) => boolean; resolve: (l: string) => void}[] = []

  constructor(stream: NodeJS.ReadableStream) {
    let partial = ''
    stream.on('data', (chunk: Buffer) => {
      const parts = (partial + chunk.toString('utf8')).split('\n')
      partial = parts.pop() ?? ''
      for (const line of parts) {
        this.lines.push(line)
        for (const w of this.waiters.filter((x) => x.match(line))) {
          this.waiters.splice(this.waiters.indexOf(w), 1)
          w.resolve(line)
        }
      }
    })
  }

  /** Resolves with the first line (already seen from index `from`, or to come) that matches. */
  next(match: (l: string) => boolean, from = 0): Promise<string> {
    const seen = this.lines.slice(from).find(match)
    if (seen !== undefined) return Promise.resolve(seen)
    return new Promise((resolve) => this.waiters.push({match, resolve}))
  }
}
