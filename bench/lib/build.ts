/**
 * Builds a private, runnable copy of the `lmtp` CLI for the benchmark: the working tree (or a git ref, for a
 * before/after comparison in one run) transpiled with esbuild into a temp package with its own bin/run.js.
 * No type checking and no shared dist/: the benchmark never depends on (or disturbs) someone else's build.
 */
import {execFile} from 'node:child_process'
import {cp, mkdir, readdir, rm, symlink, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {promisify} from 'node:util'

const run = promisify(execFile)

/** A runnable build of the CLI. */
export interface CliBuild {
  /** What was built: `working tree` or the git ref. */
  label: string
  /** The commit (or `working tree`) for the results file. */
  revision: string
  /** Absolute path of its bin/run.js. */
  bin: string
  /** Whether src/commands/<name>.ts exists in this build (replay and send may not exist yet). */
  hasCommand(name: string): boolean
  /** Removes the temp package. */
  cleanup(): Promise<void>
  /** Extra environment for the processes started from this build (`--variant`). */
  env?: Record<string, string>
}

/** The project root (the directory holding package.json). */
export const PROJECT_ROOT = path.resolve(import.meta.dirname, '..', '..')

async function listSources(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const entry of await readdir(dir, {withFileTypes: true, recursive: true})) {
    if (entry.isFile() && /\.tsx?$/.test(entry.name) && !entry.name.endsWith('.d.ts')) {
      out.push(path.join(entry.parentPath, entry.name))
    }
  }
  return out
}

/**
 * Builds the working tree (ref undefined) or `ref` (via `git archive`) into a temp package and returns how to
 * run it. Throws with esbuild's message when the sources do not transpile.
 */
export async function buildCli(ref?: string): Promise<CliBuild> {
  const pkg = await import('node:fs/promises').then((m) => m.mkdtemp(path.join(tmpdir(), 'lmtp-bench-build-')))
  const srcRoot = ref === undefined ? PROJECT_ROOT : path.join(pkg, 'checkout')
  let revision = 'working tree'
  if (ref !== undefined) {
    await mkdir(srcRoot)
    const {stdout} = await run('git', ['rev-parse', '--verify', `${ref}^{commit}`], {cwd: PROJECT_ROOT})
    revision = stdout.trim()
    await run('bash', ['-c', `git archive ${revision} src bin package.json | tar -x -C ${JSON.stringify(srcRoot)}`], {
      cwd: PROJECT_ROOT,
    })
  } else {
    const head = await run('git', ['rev-parse', 'HEAD'], {cwd: PROJECT_ROOT}).catch(() => ({stdout: ''}))
    revision = `working tree on ${head.stdout.trim().slice(0, 12)}`
  }
  const sources = await listSources(path.join(srcRoot, 'src'))
  const esbuild = path.join(PROJECT_ROOT, 'node_modules', '.bin', 'esbuild')
  await run(
    esbuild,
    [
      ...sources,
      `--outdir=${path.join(pkg, 'dist')}`,
      `--outbase=${path.join(srcRoot, 'src')}`,
      '--format=esm',
      '--platform=node',
      '--target=node20',
      '--jsx=automatic',
      '--log-level=error',
    ],
    {maxBuffer: 16 * 1024 * 1024},
  )
  await cp(path.join(srcRoot, 'package.json'), path.join(pkg, 'package.json'))
  await mkdir(path.join(pkg, 'bin'))
  await cp(path.join(srcRoot, 'bin', 'run.js'), path.join(pkg, 'bin', 'run.js'))
  await symlink(path.join(PROJECT_ROOT, 'node_modules'), path.join(pkg, 'node_modules'))
  // A manifest, as the published package has: without one oclif imports every command to list its flags,
  // which would charge `lmtp send` in scenario 6 for the dashboard's Ink and React.
  await run(path.join(PROJECT_ROOT, 'node_modules', '.bin', 'oclif'), ['manifest'], {
    cwd: pkg,
    env: {...process.env, OCLIF_SKIP_NEW_VERSION_CHECK: 'true', NO_COLOR: '1'},
  })
  await writeFile(path.join(pkg, '.bench-revision'), `${revision}\n`)
  const commands = new Set(
    sources
      .filter((s) => path.dirname(s) === path.join(srcRoot, 'src', 'commands'))
      .map((s) => path.basename(s).replace(/\.tsx?$/, '')),
  )
  return {
    label: ref === undefined ? 'working tree' : ref,
    revision,
    bin: path.join(pkg, 'bin', 'run.js'),
    hasCommand: (name) => commands.has(name),
    cleanup: () => rm(pkg, {recursive: true, force: true}),
  }
}
