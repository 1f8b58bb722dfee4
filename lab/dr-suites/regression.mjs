// `npm run test:regression`: node's test runner over regression/, the spec reporter on the
// console and JUnit to JUNIT_REPORT (default reports/junit.xml). A wrapper, so the report's
// path can come from the environment on Windows and Linux alike; exits as the runner does.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const report = path.resolve(process.env.JUNIT_REPORT || 'reports/junit.xml');
fs.mkdirSync(path.dirname(report), { recursive: true });
const run = spawnSync(process.execPath, [
  '--test',
  '--test-reporter=spec', '--test-reporter-destination=stdout',
  '--test-reporter=junit', `--test-reporter-destination=${report}`,
  'regression/portal.test.mjs',
], { stdio: 'inherit' });
if (run.error) {
  console.error(`test:regression could not start node's test runner: ${run.error.message}`);
  process.exit(2);
}
process.exit(run.status ?? 2);
