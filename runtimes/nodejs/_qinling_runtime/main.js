// The server (main thread): options, the pools of worker threads (reuse)
// and of execution processes (strict), HTTP, package delivery, lifecycle.
'use strict';

const { RESOURCE_OUTPUT } = require('./compat.js');
const { allChildPids, childPids, isZombie, killTree } = require('./procfs.js');
const { BadRequest, heapMb, parseJob, responseBody } = require('./protocol.js');
const { PackageError, extractZip } = require('./zip.js');
const { workerToken } = require('./workertoken.js');

const MIB = 1024 * 1024;
const SERVING_FILE = '.qinling-serving';  // in the packages dir: survives a container restart

// main runs the server; serverFile is the server.js started, which
// worker threads and execution processes run too.
function main(argv, serverFile) {
  const fs = require('node:fs');
  const http = require('node:http');
  const path = require('node:path');
  const { Worker } = require('node:worker_threads');
  const { spawn } = require('node:child_process');

  const USAGE = 'usage: server.js (--listen-fd N | --socket PATH | [--host 127.0.0.1] --port N) [--worker NAME] ' +
    '[--packages-dir DIR] [--max-log-bytes N] [--max-result-bytes N] ' +
    '[--memory-size BYTES] [--spare-threads N] [--max-idle-threads N] ' +
    '[--isolation reuse|strict] [--spares N] [--tmp-dir DIR] [--cpu-cgroup PROCS_FILE] ' +
    '[--confine HELPER --tmp-size BYTES]';
  const EXIT_TAINTED = 3;             // a thread could not be stopped: Go replaces us
  const MAX_BODY_BYTES = 64 * MIB;    // refuse absurd request bodies
  const TERMINATE_GRACE_MS = 2000;    // a terminated thread that is not gone by then is stuck
  const MAX_ZOMBIES = 16;             // killed children of stopped threads nobody can reap
  const DRAIN_CLOSE_MS = 5000;        // how long the last responses may take to flush
  const TIMEOUT_OUTPUT = 'Function execution timeout.';

  const opts = parseArgs(argv);
  const PACKAGES_DIR = path.resolve(opts['packages-dir']);
  const MAX_LOG_BYTES = opts['max-log-bytes'];
  const MAX_RESULT_BYTES = opts['max-result-bytes'];
  const SPARE_THREADS = opts['spare-threads'];
  const MAX_IDLE_THREADS = opts['max-idle-threads'];
  const DEFAULT_HEAP_MB = heapMb(opts['memory-size']);
  const STRICT = opts.isolation === 'strict';
  const SPARES = opts.spares;
  const TMP_DIR = opts['tmp-dir'] ? path.resolve(opts['tmp-dir']) : '';
  const CPU_CGROUP = opts['cpu-cgroup'];
  // Strict: the qinling-confine helper (the engine's binary) that starts each
  // execution process in namespaces of its own (README.md, "Strict isolation").
  const CONFINE = STRICT ? opts.confine : '';
  const TMP_SIZE = opts['tmp-size'];

  let serving = loadServing();   // {fid, version} given by POST /package, or null
  const token = workerToken(PACKAGES_DIR, process.env);
  let draining = false;   // a thread could not be stopped; never cleared
  let phase = 'serving';  // then 'closing' (drained, flushing) and 'exiting'
  let active = 0;         // /execute requests whose response is not yet written
  let socketPath = null;
  let socketIno = null;

  function parseArgs(args) {
    const o = {
      socket: null, 'listen-fd': null, worker: '', host: '127.0.0.1', port: null,
      'packages-dir': process.env.QINLING_PACKAGES_DIR || '/var/qinling/packages',
      'max-log-bytes': '1048576', 'max-result-bytes': '1048576',
      'memory-size': String(32 * MIB), 'spare-threads': '1', 'max-idle-threads': '4',
      isolation: 'reuse', spares: '2', 'tmp-dir': '', 'cpu-cgroup': '',
      confine: '', 'tmp-size': String(64 * MIB),
    };
    const numeric = ['port', 'listen-fd', 'max-log-bytes', 'max-result-bytes', 'memory-size',
      'spare-threads', 'max-idle-threads', 'spares', 'tmp-size'];
    try {
      for (let i = 0; i < args.length; i++) {
        const arg = args[i];
        if (arg === '-h' || arg === '--help') {
          process.stdout.write(USAGE + '\n');
          process.exit(0);
        }
        const eq = arg.indexOf('=');
        const name = eq < 0 ? arg : arg.slice(0, eq);
        const key = name.slice(2);
        if (!name.startsWith('--') || !Object.prototype.hasOwnProperty.call(o, key)) {
          throw new Error('unknown option ' + name);
        }
        if (eq >= 0) {
          o[key] = arg.slice(eq + 1);
        } else if (i + 1 < args.length) {
          o[key] = args[++i];
        } else {
          throw new Error('option ' + name + ' needs a value');
        }
      }
      for (const key of numeric) {
        if (o[key] === null) continue;
        if (!/^[0-9]+$/.test(o[key])) throw new Error(`--${key} must be a non-negative integer`);
        o[key] = Number(o[key]);
      }
      if (o.port !== null && o.port > 65535) throw new Error('--port must be at most 65535');
      if (o.socket === null && o.port === null && o['listen-fd'] === null) {
        throw new Error('--listen-fd, --socket or --port is required');
      }
      if (o.isolation !== 'reuse' && o.isolation !== 'strict') throw new Error('--isolation must be reuse or strict');
      if (o.confine && !path.isAbsolute(o.confine)) throw new Error('--confine must be an absolute path');
      if (o['tmp-size'] <= 0) throw new Error('--tmp-size must be positive');
    } catch (e) {
      process.stderr.write(`${USAGE}\nserver.js: error: ${e.message}\n`);
      process.exit(2);
    }
    return o;
  }


  // ---------------------------------------------------------------- threads

  // Unbound threads ready for any function (FIFO), and idle threads that already
  // ran a function version and keep its modules loaded (LIFO: the most recently
  // used thread is reused first, so sequential calls see the same globals).
  const spares = [];
  const idle = [];
  const all = new Set();
  let spareHeapMb = DEFAULT_HEAP_MB;

  class Thread {
    constructor(heap) {
      this.heap = heap;
      this.key = null;          // function id + version once bound
      this.run = null;          // the execution in progress
      this.tid = null;          // "PID/task/TID" in /proc, to find its child processes
      this.gone = false;        // exited
      this.stopping = false;    // terminate() called
      this.stuck = false;       // still there TERMINATE_GRACE_MS after terminate()
      this.error = null;
      this.sab = new SharedArrayBuffer(16 + MAX_LOG_BYTES);   // [len, dropped] + log bytes
      this.header = new Float64Array(this.sab, 0, 2);
      this.worker = new Worker(serverFile, {
        workerData: { sab: this.sab, maxResultBytes: MAX_RESULT_BYTES, packagesDir: PACKAGES_DIR },
        resourceLimits: { maxOldGenerationSizeMb: heap },
        stdout: false, stderr: false,
      });
      this.worker.on('message', (m) => this.onMessage(m));
      this.worker.on('error', (e) => { this.error = e; });
      this.worker.on('exit', (code) => this.onExit(code));
      all.add(this);
    }

    onMessage(m) {
      if (m.type === 'ready') {
        this.tid = m.tid;
      } else if (m.type === 'done' && this.run && this.run.seq === m.seq && !this.stopping) {
        const run = this.run;
        this.run = null;
        run.finish(m.ok, m.output, m.duration, m.len, m.dropped, '');
        release(this);
      }
    }

    onExit(code) {
      this.gone = true;
      all.delete(this);
      remove(spares, this);
      remove(idle, this);
      const run = this.run;
      this.run = null;
      if (run && !this.stopping) {   // died under a running call
        const e = this.error;
        let output, note;
        if (e && e.code === 'ERR_WORKER_OUT_OF_MEMORY') {
          output = RESOURCE_OUTPUT;
          note = `JavaScript heap limit reached (${this.heap} MiB): ${e.message}\n`;
        } else if (e) {
          output = 'Function execution failed: ' + e.message;
          note = (e.stack || String(e)) + '\n';
        } else {
          output = `Function called process.exit(${code}).`;
          note = '';
        }
        run.finish(false, JSON.stringify(output), run.elapsed(), this.header[0], this.header[1], note);
      }
      if (this.stopping && this.tid) checkZombies();
      ensureSpares();
      maybeExit();
    }

    // Stop the thread and the processes it started. A thread blocked in a system
    // call cannot be stopped; if it is still there after a grace period the worker
    // is tainted and drains, as the Python runtime does after a timeout.
    stop() {
      if (this.stopping || this.gone) return;
      this.stopping = true;
      remove(spares, this);
      remove(idle, this);
      if (this.tid) killTree(() => childPids(`/proc/${this.tid}/children`));
      this.worker.terminate().catch(() => {});
      const timer = setTimeout(() => {
        if (this.gone) return;
        this.stuck = true;
        if (phase !== 'serving') return;   // exiting anyway
        if (this.tid) killTree(() => childPids(`/proc/${this.tid}/children`));
        process.stderr.write(`qinling nodejs runtime: a worker thread did not stop within ${TERMINATE_GRACE_MS} ms; draining\n`);
        taint();
      }, TERMINATE_GRACE_MS);
      timer.unref();
    }
  }

  function remove(list, item) {
    const i = list.indexOf(item);
    if (i >= 0) list.splice(i, 1);
  }

  function ensureSpares() {
    if (draining || phase !== 'serving') return;
    try {
      while (spares.length < SPARE_THREADS) spares.push(new Thread(spareHeapMb));
    } catch (e) {   // e.g. a pids limit reached: the next call tries again
      process.stderr.write(`qinling nodejs runtime: cannot start a worker thread: ${e.message}\n`);
    }
  }

  function acquire(job) {
    // A worker normally serves one function version for life; if asked for
    // another, threads holding the old one's modules are useless.
    for (const t of idle.slice()) if (t.key !== job.key) t.stop();
    let t = null;
    for (let i = idle.length - 1; i >= 0; i--) {
      if (idle[i].heap === job.heap) {
        t = idle[i];
        idle.splice(i, 1);
        break;
      }
    }
    if (!t) {
      const i = spares.findIndex((s) => s.heap === job.heap);
      if (i >= 0) t = spares.splice(i, 1)[0];
    }
    if (job.heap !== spareHeapMb) {   // spares follow the memory size last asked for
      spareHeapMb = job.heap;
      for (const s of spares.slice()) s.stop();
    }
    if (!t) t = new Thread(job.heap);
    t.key = job.key;
    // Start replacements after this call has been handed over.
    setImmediate(ensureSpares);
    return t;
  }

  function release(t) {
    if (draining || phase !== 'serving') {
      t.stop();
      return;
    }
    idle.push(t);
    while (idle.length > MAX_IDLE_THREADS) idle[0].stop();
  }

  // ---------------------------------------------------------------- processes

  // Children killed on a thread's behalf stay zombies: only the thread's own
  // (now gone) event loop would have reaped them, and JavaScript cannot. Each
  // holds a pid, so past a few the worker retires itself.
  function checkZombies() {
    if (draining) return;
    const zombies = allChildPids().filter(isZombie).length;
    if (zombies >= MAX_ZOMBIES) {
      process.stderr.write(`qinling nodejs runtime: ${zombies} unreaped child processes; draining\n`);
      taint();
    }
  }

  // ---------------------------------------------------------------- executions

  let seq = 0;

  function execute(job) {
    return new Promise((resolve) => {
      const start = performance.now();
      let t;
      try {
        t = acquire(job);
      } catch (e) {   // no thread could be started (e.g. a pids limit reached)
        const output = JSON.stringify('Function execution failed: cannot start a worker thread: ' + e.message);
        resolve(responseBody(job, false, output, 0, '', 0, ''));
        return;
      }
      const run = {
        seq: ++seq,
        elapsed: () => (performance.now() - start) / 1000,
        finish(ok, output, duration, len, dropped, note) {
          clearTimeout(timer);
          const text = len > 0 ? Buffer.from(t.sab, 16, len).toString('utf8') : '';
          resolve(responseBody(job, ok, output, duration, text, dropped, note));
        },
      };
      t.run = run;
      const timer = setTimeout(() => {
        if (t.run !== run) return;
        t.run = null;
        run.finish(false, JSON.stringify(TIMEOUT_OUTPUT), run.elapsed(), t.header[0], t.header[1],
          `Execution timed out after ${job.timeout} seconds.\n`);
        t.stop();
      }, Math.min(job.timeout * 1000, 0x7fffffff));
      t.worker.postMessage({
        type: 'run', seq: run.seq, eid: job.eid, fid: job.fid, version: job.version,
        entry: job.entry, input: job.input,
      });
    });
  }

  // ---------------------------------------------------------------- strict isolation

  // Execution processes (see executionProcess): prepared ones, FIFO, each
  // started with the JavaScript heap limit of the last memory_size asked for.
  const procSpares = [];
  const procs = new Set();
  let strictActive = 0;   // executions running in a process

  class Proc {
    constructor(heap) {
      this.heap = heap;
      this.ready = false;
      this.gone = false;
      this.error = null;
      this.waiters = [];
      this.run = null;        // the execution it runs
      this.done = null;       // its 'done' message, until its output is read
      this.out = [];          // output up to MAX_LOG_BYTES
      this.kept = 0;
      this.over = 0;          // bytes beyond the cap
      this.stdoutBytes = 0;   // read from its stdout, to match 'done'.len
      this.stderrTail = '';
      const args = [`--max-old-space-size=${heap}`, '--v8-pool-size=1', serverFile, '--execution-process',
        '--packages-dir', PACKAGES_DIR, '--max-result-bytes', String(MAX_RESULT_BYTES),
        '--max-log-bytes', String(MAX_LOG_BYTES)];
      if (CPU_CGROUP) args.push('--cpu-cgroup', CPU_CGROUP);
      const options = {
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'], detached: true, serialization: 'json',
        cwd: TMP_DIR || process.cwd(),
      };
      if (CONFINE) {
        // The helper's pid is this.pid: it only waits for its child, the
        // execution process (PID 1 of a new PID namespace, with a /tmp of its
        // own), and exits as it does.
        // --keep: directories below /tmp (unsandboxed: the packages, and
        // this file's own) stay visible under the fresh /tmp.
        const helperArgs = ['--tmp-size', String(TMP_SIZE), '--keep', PACKAGES_DIR, '--keep', path.dirname(serverFile)];
        // The server's socket directory is hidden, unless (unsandboxed) the
        // packages are next to the socket.
        const sockDir = socketPath ? path.dirname(socketPath) : '';
        if (sockDir && !(PACKAGES_DIR + path.sep).startsWith(sockDir + path.sep)) helperArgs.push('--hide', sockDir);
        this.child = spawn(CONFINE, [...helperArgs, '--', process.execPath, ...args], {
          ...options, argv0: 'qinling-confine', env: { ...process.env, TMPDIR: '/tmp' },
        });
      } else {
        this.child = spawn(process.execPath, args, options);
      }
      this.pid = this.child.pid;
      procs.add(this);
      this.child.on('error', (e) => this.onError(e));
      this.child.on('message', (m) => this.onMessage(m));
      this.child.on('exit', (code, signal) => this.onExit(code, signal));
      if (this.child.stdout) {
        this.child.stdout.on('data', (d) => {
          this.stdoutBytes += d.length;
          this.add(d);
          this.check();
        });
        this.child.stderr.on('data', (d) => {
          this.stderrTail = (this.stderrTail + d.toString('utf8')).slice(-4096);
          this.add(d);
        });
      }
    }

    add(d) {
      if (!this.run) {   // not an execution's: the process's own complaints
        process.stderr.write(d);
        return;
      }
      const room = MAX_LOG_BYTES - this.kept;
      if (room <= 0) {
        this.over += d.length;
        return;
      }
      const part = d.length > room ? d.subarray(0, room) : d;
      this.out.push(part);
      this.kept += part.length;
      this.over += d.length - part.length;
    }

    text() {
      const text = Buffer.concat(this.out).toString('utf8');
      // V8's report of a heap limit hit ends with a native stack trace: noise.
      const i = text.indexOf('----- Native stack trace -----');
      return i < 0 ? text : text.slice(0, i);
    }

    whenReady() {
      if (this.ready) return Promise.resolve(this);
      if (this.gone) return Promise.reject(this.failure());
      return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
    }

    failure() {
      const why = this.error ? this.error.message : this.stderrTail.trim().split('\n').pop() || 'it exited';
      return new Error(why);
    }

    onError(e) {   // could not be started (e.g. EAGAIN at the pids limit), or not signalled
      this.error = this.error || e;
      if (this.pid === undefined) this.onExit(null, null);
    }

    onMessage(m) {
      if (!m || typeof m !== 'object') return;
      if (m.type === 'ready' && !this.ready && !this.gone) {
        this.ready = true;
        for (const w of this.waiters.splice(0)) w.resolve(this);
      } else if (m.type === 'done' && this.run && !this.done) {
        this.done = m;
        this.check();
        // Its output should all be in the pipe already; do not wait forever.
        setTimeout(() => this.finish(), 200).unref();
      }
    }

    check() {
      if (this.done && this.stdoutBytes >= this.done.len) this.finish();
    }

    finish() {
      const run = this.run;
      const m = this.done;
      if (!run || !m) return;
      this.run = null;
      run.finish(!!m.ok, m.output, m.duration, (m.dropped || 0) + this.over, '');
    }

    onExit(code, signal) {
      if (this.gone) return;
      this.gone = true;
      procs.delete(this);
      remove(procSpares, this);
      for (const w of this.waiters.splice(0)) w.reject(this.failure());
      const run = this.run;
      if (run && this.done) {
        this.check();
        if (this.run) this.finish();
      } else if (run) {   // died without answering: wait (briefly) for the rest of its output
        this.run = null;
        const answer = () => {
          let output;
          let note = '';
          if (/heap out of memory|Reached heap limit/.test(this.stderrTail)) {
            output = RESOURCE_OUTPUT;
            note = `JavaScript heap limit reached (${this.heap} MiB)\n`;
          } else if (signal) {
            const n = require('node:os').constants.signals[signal];
            output = `Function execution failed: its process was killed by signal ${n} (${signal}).`;
          } else if (this.error) {
            output = 'Function execution failed: ' + this.error.message;
          } else {
            output = `Function called process.exit(${code}).`;
          }
          run.finish(false, JSON.stringify(output), run.elapsed(), this.over, note);
        };
        this.kill();
        let answered = false;
        const once = () => {
          if (!answered) {
            answered = true;
            answer();
          }
        };
        this.child.on('close', once);
        setTimeout(once, 100).unref();
      }
      if (this.ready || run) {
        setImmediate(ensureProcs);
      } else {   // could not start (say the pids limit is reached): not in a tight loop
        setTimeout(ensureProcs, 100).unref();
      }
    }

    // Kill the process, its group and everything below it. A confined one
    // is killed through its child, PID 1 of its PID namespace (which takes
    // every process in the namespace with it): the helper then reaps it and
    // exits by the same signal. Killing the helper first would leave the
    // child's zombie to the server, which cannot reap it.
    kill() {
      remove(procSpares, this);
      if (this.pid === undefined) return;
      if (CONFINE) {
        // Once the helper has exited (and been reaped: its pid may be
        // reused) nothing of it is left: it waits for its child, whose death
        // ended every process of the namespace.
        if (this.gone) return;
        const inner = childPids(`/proc/${this.pid}/task/${this.pid}/children`);
        if (inner.length) {
          killTree(() => inner);
          return;
        }
      }
      killTree(() => [this.pid]);
      try {
        process.kill(-this.pid, 'SIGKILL');
      } catch (e) { /* gone */ }
    }
  }

  function ensureProcs() {
    if (!STRICT || draining || phase !== 'serving') return;
    try {
      while (procSpares.length < SPARES) procSpares.push(new Proc(spareHeapMb));
    } catch (e) {
      process.stderr.write(`qinling nodejs runtime: cannot start an execution process: ${e.message}\n`);
    }
  }

  function takeProc(heap) {
    if (heap !== spareHeapMb) {   // spares follow the memory size last asked for
      spareHeapMb = heap;
      for (const p of procSpares.slice()) if (p.heap !== heap) p.kill();
    }
    let p = procSpares.find((x) => x.ready) || procSpares[0];
    if (p) {
      remove(procSpares, p);
    } else {
      p = new Proc(heap);
    }
    return p.whenReady();
  }

  // Empty TMP_DIR (the worker's /tmp), so that no file of an execution is
  // seen by a later one. Only while no execution runs: concurrent ones share it.
  function wipeTmp() {
    if (!TMP_DIR || CONFINE || strictActive !== 0) return;
    let names = [];
    try {
      names = fs.readdirSync(TMP_DIR);
    } catch (e) { /* gone */ }
    for (const name of names) {
      try {
        fs.rmSync(path.join(TMP_DIR, name), { recursive: true, force: true, maxRetries: 2 });
      } catch (e) {
        process.stderr.write(`qinling nodejs runtime: cannot remove ${name} from ${TMP_DIR}: ${e.message}\n`);
      }
    }
  }

  // Processes re-parented to the server (what an execution started and left
  // behind as an orphan): none of them is an execution process.
  function killOrphans() {
    const known = new Set([...procs].map((p) => p.pid));
    killTree(() => allChildPids().filter((pid) => !known.has(pid)));
    checkZombies();
  }

  function executeStrict(job) {
    return new Promise((resolve) => {
      const received = performance.now();
      const timing = {};
      let proc = null;
      let tmp = '';
      let answered = false;
      let timer = null;
      const ms = (t) => Math.round((performance.now() - t) * 1000) / 1000;
      const run = {
        elapsed: () => (performance.now() - received) / 1000,
        finish(ok, output, duration, dropped, note) {
          if (answered) return;
          answered = true;
          clearTimeout(timer);
          if (run.sent !== undefined) timing.run_ms = ms(run.sent);
          timing.server_ms = ms(received);
          const text = proc ? proc.text() : '';
          resolve(responseBody(job, ok, output, duration, text, dropped, note, timing));
          cleanup();
        },
      };
      const cleanup = () => {
        if (proc) {
          proc.run = null;
          proc.kill();
          strictActive--;
        }
        if (tmp) {
          try {
            fs.rmSync(tmp, { recursive: true, force: true });
          } catch (e) { /* wiped below */ }
        }
        killOrphans();
        wipeTmp();
        setImmediate(ensureProcs);
      };
      timer = setTimeout(() => {
        run.finish(false, JSON.stringify(TIMEOUT_OUTPUT), run.elapsed(), proc ? proc.over : 0,
          `Execution timed out after ${job.timeout} seconds.\n`);
      }, Math.min(job.timeout * 1000, 0x7fffffff));
      takeProc(job.heap).then((p) => {
        timing.acquire_ms = ms(received);
        if (answered) {   // timed out while waiting for a process
          p.kill();
          return;
        }
        proc = p;
        wipeTmp();   // if no other execution runs
        strictActive++;
        if (TMP_DIR && !CONFINE) {   // a confined one has a /tmp of its own
          tmp = path.join(TMP_DIR, `.qinling-exec-${p.pid}`);
          try {
            fs.mkdirSync(tmp, { mode: 0o700 });
          } catch (e) {
            tmp = '';
          }
        }
        p.run = run;
        run.sent = performance.now();
        p.child.send({
          type: 'run', seq: 1, eid: job.eid, fid: job.fid, version: job.version,
          entry: job.entry, input: job.input, tmp: tmp || undefined,
        });
        setImmediate(ensureProcs);
      }, (e) => {
        if (answered) return;
        answered = true;
        clearTimeout(timer);
        const output = JSON.stringify('Function execution failed: cannot start an execution process: ' + e.message);
        resolve(responseBody(job, false, output, 0, '', 0, '', { acquire_ms: ms(received), server_ms: ms(received) }));
        killOrphans();
      });
    });
  }

  // ---------------------------------------------------------------- HTTP

  function send(res, status, body, type, close) {
    const headers = {
      'Content-Type': type || 'application/json',
      'Content-Length': Buffer.byteLength(body),
    };
    if (close || draining) headers.Connection = 'close';
    res.writeHead(status, headers);
    res.end(body);
  }

  function sendError(res, status, message, close) {
    send(res, status, `{"error": ${JSON.stringify(message)}}`, 'application/json', close);
  }

  function handle(req, res) {
    const url = req.url.split('?', 1)[0];
    if (req.method === 'GET' && url === '/ping') {
      if (draining) return sendError(res, 503, 'worker draining', true);
      return send(res, 200, 'pong', 'text/plain; charset=utf-8');
    }
    const refused = req.method === 'POST' ? token.refusal(url, req.headers) : null;
    if (refused) {
      req.resume();
      return sendError(res, 403, refused, true);
    }
    if (req.method === 'POST' && url === '/package') return handlePackage(req, res);
    if (req.method !== 'POST' || url !== '/execute') {
      req.resume();
      return sendError(res, 404, 'not found');
    }
    if (draining) {
      req.resume();
      return sendError(res, 503, 'worker draining', true);
    }
    readBody(req, res, false, (body) => {
      let job;
      try {
        job = parseJob(JSON.parse(body.toString('utf8')), DEFAULT_HEAP_MB);
      } catch (e) {
        if (!(e instanceof SyntaxError || e instanceof BadRequest)) throw e;
        return sendError(res, 400, 'invalid request: ' + e.message);
      }
      if (serving !== null && (job.fid !== serving.fid || job.version !== serving.version)) {
        // Our address was given to the engine for another function (a
        // reused pod IP): nothing runs, the engine looks elsewhere.
        return sendError(res, 410, `this worker serves function ${serving.fid} version ${serving.version}`);
      }
      if (draining) return sendError(res, 503, 'worker draining', true);
      active++;
      let counted = true;
      const done = () => {
        if (counted) {
          counted = false;
          active--;
          maybeExit();
        }
      };
      res.on('close', done);
      (STRICT ? executeStrict : execute)(job).then((out) => {
        if (!res.destroyed) send(res, 200, out);
        done();
      }, (e) => {
        process.stderr.write(`qinling nodejs runtime: internal error: ${e && e.stack}\n`);
        if (!res.destroyed) sendError(res, 500, 'internal error', true);
        done();
      });
    });
  }

  // Reads a request body of at most MAX_BODY_BYTES and calls onBody with it
  // (a Buffer), or answers the error. needLength: refuse a body without
  // Content-Length (a chunked one) as well.
  function readBody(req, res, needLength, onBody) {
    const length = req.headers['content-length'];
    if (length === undefined && (needLength || req.headers['transfer-encoding'] === undefined)) {
      req.resume();
      return sendError(res, 400, 'Content-Length required', true);
    }
    if (length !== undefined && Number(length) > MAX_BODY_BYTES) {
      req.resume();
      return sendError(res, 413, 'request body too large', true);
    }
    // With a Content-Length the body is read into one buffer of that size
    // (a 64 MiB package is not held twice).
    const whole = length !== undefined ? Buffer.allocUnsafe(Number(length)) : null;
    const chunks = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (c) => {
      if (tooLarge || size + c.length > (whole ? whole.length : MAX_BODY_BYTES)) {
        tooLarge = true;
      } else if (whole) {
        c.copy(whole, size);
      } else {
        chunks.push(c);
      }
      size += c.length;
    });
    req.on('end', () => {
      if (tooLarge) return sendError(res, 413, 'request body too large', true);
      onBody(whole ? whole.subarray(0, size) : Buffer.concat(chunks, size));
    });
  }

  // ---------------------------------------------------------------- package delivery

  // A remote worker (a Kubernetes pod) gets its function's zip pushed by the
  // engine with POST /package and serves only that function version from
  // then on; a local worker has its package extracted by the Go side and
  // never gets /package, so it serves whatever /execute names. As the
  // Python runtime (runtimes/python3/server.py, install_package).
  let packageQueue = Promise.resolve();   // one delivery at a time

  function loadServing() {
    try {
      const d = JSON.parse(fs.readFileSync(path.join(PACKAGES_DIR, SERVING_FILE), 'utf8'));
      if (d && typeof d.function_id === 'string' && Number.isSafeInteger(d.function_version)) {
        return { fid: d.function_id, version: d.function_version };
      }
    } catch (e) { /* none yet, or unreadable: serve anything */ }
    return null;
  }

  function handlePackage(req, res) {
    if (draining) {
      req.resume();
      return sendError(res, 503, 'worker draining', true);
    }
    readBody(req, res, true, (data) => {
      const query = new URLSearchParams(req.url.slice(req.url.indexOf('?') + 1 || req.url.length));
      const fid = query.get('function_id') || '';
      const v = query.get('function_version') || '0';
      if (!/^[0-9]+$/.test(v) || !Number.isSafeInteger(Number(v))) {
        return sendError(res, 400, 'invalid request: function_version must be an integer');
      }
      const version = Number(v);
      const md5 = query.get('md5') || '';
      const install = packageQueue.then(() => installPackage(fid, version, md5, data));
      packageQueue = install.catch(() => {});
      install.then(() => {
        if (!res.destroyed) send(res, 200, JSON.stringify({ function_id: fid, function_version: version }));
      }, (e) => {
        if (res.destroyed) return;
        if (e instanceof PackageError) return sendError(res, e.status, e.message);
        if (e && typeof e.code === 'string') return sendError(res, 500, 'cannot store the package: ' + e.message);
        process.stderr.write(`qinling nodejs runtime: internal error: ${e && e.stack}\n`);
        sendError(res, 500, 'internal error', true);
      });
    });
  }

  // POST /package: check, extract into PACKAGES_DIR/<fid>, dedicate this
  // worker to (fid, version). Delivering the same package again is a no-op.
  async function installPackage(fid, version, md5, data) {
    const fsp = fs.promises;
    if (!fid || fid.includes('/') || fid.includes('\0') || fid === '.' || fid === '..' || fid.startsWith('.')) {
      throw new PackageError(400, 'invalid function_id');
    }
    if (md5 && require('node:crypto').createHash('md5').update(data).digest('hex') !== md5.toLowerCase()) {
      throw new PackageError(400, `package checksum mismatch (md5 ${md5} expected)`);
    }
    const final = path.join(PACKAGES_DIR, fid);
    if (serving !== null) {
      if (serving.fid !== fid || serving.version !== version) {
        throw new PackageError(409, `worker already serves function ${serving.fid} version ${serving.version}`);
      }
      let st = null;
      try {
        st = await fsp.lstat(final);
      } catch (e) { /* gone: extracted again */ }
      if (st && st.isDirectory()) return;
    }
    await fsp.mkdir(PACKAGES_DIR, { recursive: true });
    const tmp = await fsp.mkdtemp(path.join(PACKAGES_DIR, '.pkg-'));
    try {
      await extractZip(data, tmp);
      await fsp.chmod(tmp, 0o755);
      await fsp.rm(final, { recursive: true, force: true });
      await fsp.rename(tmp, final);
    } catch (e) {
      await fsp.rm(tmp, { recursive: true, force: true }).catch(() => {});
      throw e;
    }
    // Written then renamed: a restart reads the old choice or the new one.
    const marker = path.join(PACKAGES_DIR, SERVING_FILE);
    const fh = await fsp.open(marker + '.tmp', 'w', 0o644);
    try {
      await fh.writeFile(JSON.stringify({ function_id: fid, function_version: version }));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(marker + '.tmp', marker);
    serving = { fid, version };
  }

  const server = http.createServer({
    // Idle keep-alive connections of the engine's pool (idle timeout 60 s) must
    // not be closed under it: a POST on a connection closing at that moment fails.
    keepAliveTimeout: 300000,
    headersTimeout: 301000,
    requestTimeout: 0,   // executions may take minutes
  }, handle);
  server.on('clientError', (err, sock) => {   // unparsable HTTP
    if (!sock.writable || sock.destroyed || err.code === 'ECONNRESET') return sock.destroy();
    const body = '{"error": "bad request"}';
    sock.end('HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n' +
      `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
  });

  // ---------------------------------------------------------------- lifecycle

  function removeSocket() {
    try {   // only our own socket: a replacement worker may reuse the path
      if (socketPath && fs.statSync(socketPath).ino === socketIno) fs.unlinkSync(socketPath);
    } catch (e) { /* already gone */ }
  }

  // Exit with code once every thread is gone. process.exit() joins worker
  // threads, so it would hang on one blocked in a system call: processes the
  // threads started are killed first (that unblocks execSync and friends), and
  // if a thread is still there after the grace period the process kills itself.
  function exitAfterThreads(code) {
    if (phase === 'exiting') return;
    phase = 'exiting';
    removeSocket();
    server.close();
    if (server.closeIdleConnections) server.closeIdleConnections();
    killTree(allChildPids);
    for (const t of all) t.stop();
    const deadline = Date.now() + TERMINATE_GRACE_MS;
    const check = () => {
      if (all.size === 0) return process.exit(code);
      if (Date.now() > deadline || [...all].every((t) => t.stuck)) {
        process.stderr.write('qinling nodejs runtime: a worker thread is stuck; killing the process\n');
        return process.kill(process.pid, 'SIGKILL');
      }
      killTree(allChildPids);
      setTimeout(check, 20);
    };
    check();
  }

  function taint() {
    if (draining) return;
    draining = true;
    for (const t of spares.concat(idle)) t.stop();
    for (const p of procSpares.slice()) p.kill();
    maybeExit();
  }

  // Once draining and no execution owes a response: stop listening, let the last
  // responses (sent with Connection: close) reach the client, then exit 3.
  function maybeExit() {
    if (!draining || phase !== 'serving' || active !== 0) return;
    phase = 'closing';
    removeSocket();
    const timer = setTimeout(() => exitAfterThreads(EXIT_TAINTED), DRAIN_CLOSE_MS);
    server.close(() => {
      clearTimeout(timer);
      exitAfterThreads(EXIT_TAINTED);
    });
    if (server.closeIdleConnections) server.closeIdleConnections();
  }

  // As PID 1 of a sandbox the kernel drops signals without a handler that
  // come from inside: with none, nothing a function runs can stop the server.
  if (process.pid !== 1) {
    process.on('SIGTERM', () => exitAfterThreads(0));
    process.on('SIGINT', () => exitAfterThreads(0));
  }

  server.on('error', (e) => {
    process.stderr.write(`server.js: error: ${e.message}\n`);
    process.exit(1);
  });

  let where;
  if (opts['listen-fd'] !== null) {
    // The engine's socket (orchestrator/local/launch.go); libuv keeps it
    // from the processes this one starts.
    where = `descriptor ${opts['listen-fd']} (${opts.worker || 'inherited'})`;
    server.listen({ fd: opts['listen-fd'], backlog: 511 }, listening);
  } else if (opts.socket) {
    socketPath = path.resolve(opts.socket);
    try {   // a stale socket from a dead worker would make listen fail
      if (fs.lstatSync(socketPath).isSocket()) fs.unlinkSync(socketPath);
    } catch (e) { /* no such file */ }
    where = 'unix:' + socketPath;
    server.listen({ path: socketPath, backlog: 511 }, () => {
      socketIno = fs.statSync(socketPath).ino;
      listening();
    });
  } else {
    server.listen({ host: opts.host, port: opts.port, backlog: 511 }, () => {
      const a = server.address();
      where = `${a.address}:${a.port}`;
      listening();
    });
  }

  function listening() {
    process.stderr.write(`qinling nodejs runtime listening on ${where}\n`);
    // Prestart after listening: the first /ping does not wait for a thread.
    setImmediate(STRICT ? ensureProcs : ensureSpares);
  }
}

module.exports = { main };
