'use strict';

const { executor } = require('./executor.js');

// Strict isolation: a fresh process that runs one execution, started by the
// server before the call arrives (README.md, "Strict isolation"). It tells
// the server it is ready over its IPC channel, gets one 'run' message, and
// writes the execution's output to its stdout (synchronous on a pipe) up to
// --max-log-bytes, counting the rest; the 'done' message says how many bytes
// it wrote, so the server answers once it has read them all. The server
// kills it, with everything it started, once it has answered.
function executionProcess(argv) {
  const fs = require('node:fs');
  const o = { 'packages-dir': '/var/qinling/packages', 'max-result-bytes': '1048576', 'max-log-bytes': '1048576', 'cpu-cgroup': '' };
  for (let i = 0; i + 1 < argv.length; i += 2) o[argv[i].slice(2)] = argv[i + 1];
  // The memory limit's OOM killer should take an execution, not the server.
  try {
    fs.writeFileSync('/proc/self/oom_score_adj', '1000');
  } catch (e) { /* no /proc */ }
  const maxLog = Number(o['max-log-bytes']);
  const out = process.stdout.write.bind(process.stdout);
  executor({
    maxResultBytes: Number(o['max-result-bytes']),
    packagesDir: o['packages-dir'],
    logReset() {},
    logAdd(log, s) {
      const n = Buffer.byteLength(s);
      if (log.dropped || log.pos >= maxLog) {
        log.dropped += n;
        return;
      }
      out(s);
      log.pos += n;
    },
    post: (m) => process.send(m),
    onMessage: (fn) => process.on('message', fn),
    prepare(m) {
      // The execution's private directory, also its working directory.
      if (m.tmp) {
        process.env.TMPDIR = m.tmp;
        try {
          process.chdir(m.tmp);
        } catch (e) { /* stays in /tmp */ }
      }
    },
    warm: true,
  });
  // Prepared: from now on the function's cpu limit applies (its own cgroup);
  // starting Node.js and warming up were the worker's overhead.
  if (o['cpu-cgroup']) {
    try {
      fs.writeFileSync(o['cpu-cgroup'], String(process.pid));
    } catch (e) {
      process.stderr.write(`qinling nodejs runtime: cannot join ${o['cpu-cgroup']}: ${e.message}\n`);
    }
  }
  process.send({ type: 'ready' });
}

module.exports = { executionProcess };
