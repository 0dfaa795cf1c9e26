'use strict';

// This runtime's own files (server.js and this directory), whose frames
// are left out of a function's stack traces.
const { describe, errorMessage, failureOutput, isError } = require('./compat.js');

const RUNTIME_DIR = require('node:path').dirname(__dirname) + require('node:path').sep;

// The code that runs functions, in a worker thread (reuse) or in an execution
// process (strict); host says where the log goes and how messages travel.
function executor(host) {
  const { AsyncLocalStorage } = require('node:async_hooks');
  const fs = require('node:fs');
  const path = require('node:path');
  const util = require('node:util');
  const Module = require('node:module');

  const MAX_RESULT_BYTES = host.maxResultBytes;
  const PACKAGES_DIR = host.packagesDir;

  // The log of the execution owning the current async context: output written
  // from callbacks and promise continuations lands in the log of the execution
  // that started them, and nowhere else once that execution has answered.
  const als = new AsyncLocalStorage();
  let current = null;   // the execution running on this thread

  // One execution's output: the host keeps the first bytes up to its cap
  // and only counts the rest.
  class Log {
    constructor(exec) {
      this.exec = exec;
      this.pos = 0;
      this.dropped = 0;
      this.closed = false;   // answered: late writes go to the real stream
      host.logReset();
    }

    add(s) {
      host.logAdd(this, s);
    }
  }

  function route(stream) {
    const real = stream.write;
    stream.write = function write(chunk, encoding, cb) {
      const log = als.getStore();
      if (!log || log.closed || (typeof chunk !== 'string' && !(chunk instanceof Uint8Array))) {
        return real.apply(this, arguments);
      }
      if (typeof encoding === 'function') {
        cb = encoding;
        encoding = undefined;
      }
      if (typeof chunk !== 'string') {
        chunk = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('utf8');
      } else if (encoding && !/^utf-?8$/i.test(encoding)) {
        chunk = Buffer.from(chunk, encoding).toString('utf8');
      }
      log.add(chunk);
      if (typeof cb === 'function') process.nextTick(cb);
      return true;
    };
  }
  route(process.stdout);
  route(process.stderr);

  // ---------------------------------------------------------------- errors

  class EntryError extends Error {}

  // The stack of a thrown value for the log, without this server's frames.
  function errorText(e) {
    let text;
    try {
      text = isError(e) ? util.inspect(e) : 'Uncaught ' + util.inspect(e);
    } catch (err) {
      text = String(e && e.stack || e);
    }
    return text.split('\n').filter((line) => !(/^\s+at /.test(line) &&
      (line.includes('node:internal') || line.includes(RUNTIME_DIR)))).join('\n') + '\n';
  }

  // ---------------------------------------------------------------- loading

  const modules = new Map();   // module name -> exports; this thread serves one package

  async function loadModule(job, modName) {
    const pkg = path.join(PACKAGES_DIR, job.fid);
    let st = null;
    try {
      st = fs.statSync(pkg);
    } catch (e) { /* missing */ }
    if (!st || !st.isDirectory()) {
      throw new EntryError(`Function package not found for function ${job.fid}.`);
    }
    const file = path.resolve(pkg, modName);
    if (!file.startsWith(pkg + path.sep)) {
      throw new EntryError(`Invalid entry '${job.entry}': the module must be inside the function package.`);
    }
    const req = Module.createRequire(path.join(pkg, 'index.js'));
    try {
      try {
        return req(file);
      } catch (e) {
        if (e && e.code === 'ERR_REQUIRE_ESM') {
          return await import(require('node:url').pathToFileURL(req.resolve(file)).href);
        }
        if (e && e.code === 'MODULE_NOT_FOUND' && isMissing(e, file) && fs.existsSync(file + '.mjs')) {
          return await import(require('node:url').pathToFileURL(file + '.mjs').href);
        }
        throw e;
      }
    } catch (e) {
      let msg = describe(e).split('\n', 1)[0];
      let text = errorText(e);
      if (e && e.code === 'MODULE_NOT_FOUND') {
        if (isMissing(e, file)) {
          msg = `Cannot find module '${modName}'`;
          text = `Error: ${msg}\n`;
        } else {   // a module it requires is missing: keep its require stack
          const lines = text.split('\n');
          text = lines.filter((l) => !l.startsWith('- ' + RUNTIME_DIR)).join('\n');
        }
      }
      als.getStore().add(text);
      throw new EntryError(`Failed to import module '${modName}': ${msg}`);
    }
  }

  function isMissing(e, file) {
    return typeof e.message === 'string' && e.message.startsWith(`Cannot find module '${file}'`);
  }

  async function resolve(job) {
    const dot = job.entry.lastIndexOf('.');
    const modName = dot > 0 ? job.entry.slice(0, dot) : '';
    const funcName = job.entry.slice(dot + 1);
    if (!modName || !funcName) {
      throw new EntryError(`Invalid entry '${job.entry}': expected 'module.function'.`);
    }
    let mod = modules.get(modName);
    if (mod === undefined) {
      mod = await loadModule(job, modName);
      modules.set(modName, mod);   // warm reuse: module globals persist on this thread
    }
    const isObject = mod !== null && (typeof mod === 'object' || typeof mod === 'function');
    const func = isObject ? mod[funcName] : undefined;
    if (func === undefined && !(isObject && funcName in mod)) {
      throw new EntryError(`Function '${funcName}' not found in module '${modName}'.`);
    }
    if (typeof func !== 'function') {
      throw new EntryError(`Entry '${job.entry}' is not callable.`);
    }
    return { mod, func };
  }

  // ---------------------------------------------------------------- running

  function finish(exec, ok, output) {
    if (exec.done) return;
    exec.done = true;
    exec.log.closed = true;
    if (current === exec) current = null;
    const duration = (performance.now() - exec.start) / 1000;
    host.post({
      type: 'done', seq: exec.seq, ok, output, duration, len: exec.log.pos, dropped: exec.log.dropped,
    });
  }

  function fail(exec, e) {
    if (e instanceof EntryError) {   // the runtime's own message
      exec.log.add(e.message + '\n');
      return finish(exec, false, JSON.stringify(e.message));
    }
    exec.log.add(errorText(e));
    finish(exec, false, JSON.stringify(failureOutput(e)));
  }

  function succeed(exec, result) {
    let out;
    try {
      out = JSON.stringify(result);
    } catch (e) {
      return finish(exec, false, JSON.stringify('Function result is not JSON serializable: ' + errorMessage(e)));
    }
    if (out === undefined) out = 'null';   // undefined, functions and symbols
    const size = Buffer.byteLength(out);
    if (size > MAX_RESULT_BYTES) {
      return finish(exec, false, JSON.stringify(`Function result too large: ${size} bytes (limit ${MAX_RESULT_BYTES}).`));
    }
    finish(exec, true, out);
  }

  async function invoke(job) {
    const { mod, func } = await resolve(job);
    let input = job.input;
    if (input !== null && typeof input === 'object' && !Array.isArray(input)) {
      if (Object.prototype.hasOwnProperty.call(input, '__function_input')) input = input.__function_input;
    } else if (input === null) {
      input = {};
    }
    const context = { execution_id: job.eid, function_id: job.fid, function_version: job.version };
    return await func.call(mod, context, input);
  }

  function run(job) {
    const exec = { seq: job.seq, start: performance.now(), done: false, log: null };
    exec.log = new Log(exec);
    current = exec;
    als.run(exec.log, () => {
      invoke(job).then((result) => succeed(exec, result), (e) => fail(exec, e));
    });
  }

  // Whatever would crash a plain Node.js process (an exception thrown from a
  // callback, an unhandled rejection) fails the execution it belongs to.
  function uncaught(e, what) {
    const log = als.getStore();
    const exec = log ? log.exec : current;
    if (exec && !exec.done) {
      exec.log.add(what + ': ' + errorText(e));
      finish(exec, false, JSON.stringify(failureOutput(e)));
    } else {
      process.stderr.write(`qinling nodejs runtime: ${what} after the execution ended: ${errorText(e)}`);
    }
  }
  process.on('uncaughtException', (e) => uncaught(e, 'Uncaught exception'));
  process.on('unhandledRejection', (e) => uncaught(e, 'Unhandled promise rejection'));

  // An execution process compiles now, before the call, what every call
  // runs: loading a module from a package, the async context, JSON.
  if (host.warm) {
    const req = Module.createRequire(path.join(PACKAGES_DIR, 'index.js'));
    try {
      req.resolve('./.qinling-warm-up');
    } catch (e) { /* expected */ }
    als.run({ closed: true }, () => Promise.resolve(JSON.parse(JSON.stringify({ warm: [1, 'x'] }))).then(() => {}));
    errorText(new Error('warm'));
  }

  host.onMessage((m) => {
    if (m && m.type === 'run' && !current) {
      host.prepare(m);
      run(m);
    }
  });
}

module.exports = { executor };
