// A worker thread (reuse isolation): runs executions one at a time for the
// main thread (main.js, class Thread), its log in a buffer shared with it.
'use strict';

const { executor } = require('./executor.js');

function workerThread() {
  const { parentPort, workerData } = require('node:worker_threads');
  const fs = require('node:fs');
  const header = new Float64Array(workerData.sab, 0, 2);
  const bytes = new Uint8Array(workerData.sab, 16);
  const encoder = new TextEncoder();

  // The log lives in the shared buffer the main thread reads (so it is there
  // even if the thread is stopped): the first bytes up to the cap are stored,
  // the rest only counted.
  executor({
    maxResultBytes: workerData.maxResultBytes,
    packagesDir: workerData.packagesDir,
    logReset() {
      header[0] = 0;
      header[1] = 0;
    },
    logAdd(log, s) {
      if (log.dropped || log.pos >= bytes.length) {
        log.dropped += Buffer.byteLength(s);
      } else {
        const { read, written } = encoder.encodeInto(s, bytes.subarray(log.pos));
        log.pos += written;
        if (read < s.length) log.dropped += Buffer.byteLength(s.slice(read));
        header[0] = log.pos;
      }
      header[1] = log.dropped;
    },
    post: (m) => parentPort.postMessage(m),
    onMessage: (fn) => parentPort.on('message', fn),
    prepare() {},
  });
  let tid = null;
  try {
    tid = fs.readlinkSync('/proc/thread-self');
  } catch (e) { /* no /proc */ }
  parentPort.postMessage({ type: 'ready', tid });
}

module.exports = { workerThread };
