'use strict';
// Runs the tests of both charts (chart/agent: chart_test.js, chart/server: server_test.js)
// and prints the one `N passed, M failed` line tests/chart/run.sh ends with.
require('./chart_test');
require('./server_test');
require('./lib').summary();
