/**
 * Prints the plain closing line `N passed, N failed[, N skipped]` that CI's landing check reads.
 * A test file that fails to load (syntax error, import failure) counts as one failure, and so does an
 * unhandled error, so a broken suite can never look green.
 */
import type {Reporter, TestModule} from 'vitest/node'

export default class SummaryReporter implements Reporter {
  onTestRunEnd(
    testModules: ReadonlyArray<TestModule>,
    unhandledErrors: ReadonlyArray<unknown>,
  ): void {
    let passed = 0
    let failed = 0
    let skipped = 0
    for (const mod of testModules) {
      let ran = 0
      for (const test of mod.children.allTests()) {
        const state = test.result().state
        if (state === 'passed') passed++
        else if (state === 'failed') failed++
        else skipped++
        ran++
      }
      // A module with errors of its own (it did not load, or a hook threw) is a failure even if no test ran.
      if (mod.errors().length > 0 && (ran === 0 || mod.state() === 'failed')) failed++
      // So is a suite whose beforeAll/afterAll threw: its tests may show as skipped, but the suite failed.
      for (const suite of mod.children.allSuites()) {
        if (suite.errors().length > 0) failed++
      }
    }
    failed += unhandledErrors.length
    const tail = skipped > 0 ? `, ${skipped} skipped` : ''
    process.stdout.write(`\n${passed} passed, ${failed} failed${tail}\n`)
  }
}
