'use strict';
// Tests of the two Helm charts: chart/agent/ (agent_test.js) and chart/server/
// (server_test.js), run by tests/chart/run.sh. Prints one `N passed, M failed` for both.
// The helpers (the `helm template` stand-in, strict Kubernetes validation) are in lib.js.

const { counts } = require('./lib');

require('./agent_test');
require('./server_test');

console.log(`${counts.passed} passed, ${counts.failed} failed`);
process.exitCode = counts.failed ? 1 : 0;
