/** useTerminalSize: the terminal's columns and rows, updated on resize, so every frame fits the screen. */
import {useStdout} from 'ink'
import {useEffect, useState} from 'react'

/** Columns and rows of the output terminal. */
export interface TerminalSize {
  columns: number
  rows: number
}

function read(stdout: NodeJS.WriteStream, fallback: TerminalSize): TerminalSize {
  return {columns: stdout.columns || fallback.columns, rows: stdout.rows || fallback.rows}
}

/** The size of Ink's stdout (`fallback` where the stream does not say, e.g. in tests). */
export function useTerminalSize(fallback: TerminalSize = {columns: 100, rows: 30}): TerminalSize {
  const {stdout} = useStdout()
  const {columns, rows} = fallback
  const [size, setSize] = useState(() => read(stdout, fallback))
  useEffect(() => {
    const onResize = (): void => setSize(read(stdout, {columns, rows}))
    stdout.on('resize', onResize)
    return () => {
      stdout.off('resize', onResize)
    }
  }, [stdout, columns, rows])
  return size
}
