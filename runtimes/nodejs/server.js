#!/usr/bin/node
// Qinling Node.js worker server: runs one function's code for the Go engine.
//
// Node.js standard library only; works on Node.js 18 (Debian bookworm's
// `nodejs` package) and later. Speaks the same protocol as
// runtimes/python3/server.py; README.md beside this file describes it, and
// the modules in _qinling_runtime/ beside it, which this file only starts.
//
// The main thread only serves HTTP. Function code runs in worker threads
// (this same file, started with isMainThread false): one execution at a time
// per thread, threads reused while calls end normally, terminated (which stops
// even `while (true) {}`) when a call times out or dies. Each thread has a
// JavaScript heap limit taken from the request's memory_size. In strict
// isolation it runs in execution processes instead (this same file, with
// --execution-process), one per execution.
'use strict';

const { isMainThread } = require('node:worker_threads');

if (!isMainThread) {
  require('./_qinling_runtime/thread.js').workerThread();
} else if (process.argv[2] === '--execution-process') {
  require('./_qinling_runtime/execution-process.js').executionProcess(process.argv.slice(3));
} else {
  require('./_qinling_runtime/main.js').main(process.argv.slice(2), __filename);
}
