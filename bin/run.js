#!/usr/bin/env node
// `lmtp send` is often run once per message from scripts: a plain send command line skips loading oclif
// (see src/cli/send-fast.ts); everything else, and any send line it does not fully understand, goes to oclif.
const argv = process.argv.slice(2)
if (argv[0] === 'serve') {
  // A server streams large bodies through short-lived buffers: keep V8's young generation from growing with
  // them, so peak memory stays flat (must be set before the heap grows, i.e. before oclif loads). Measured with
  // a 200 MB message: peak RSS growth 21-22 MB without it, 17-18 MB with it.
  const v8 = await import('node:v8')
  v8.setFlagsFromString('--semi-space-growth-factor=1')
}
let done = false
if (argv[0] === 'send') {
  // A dist/ built before the fast path existed simply takes the oclif route.
  const fast = await import('../dist/cli/send-fast.js').catch((err) => {
    if (err?.code === 'ERR_MODULE_NOT_FOUND') return undefined
    throw err
  })
  if (fast) done = await fast.sendFast(argv.slice(1))
}
if (!done) {
  const {execute} = await import('@oclif/core')
  await execute({dir: import.meta.url})
}
