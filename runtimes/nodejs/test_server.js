// Tests for server.js: start the real server on a temp unix socket and talk HTTP.
//
// Run from the repo root (the file name does not match node --test's default
// patterns, so name the file, not the directory):
//     /usr/bin/node --test runtimes/nodejs/test_server.js
'use strict';

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, spawnSync, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');

const SERVER = path.join(__dirname, 'server.js');
const NODE = process.execPath;

// function_id -> {relative file name: source}
const PACKAGES = {
  hello: {
    'main.js': `
      exports.main = (context, input) => {
        const name = input.name || 'World';
        console.log('Hello, %s', name);
        return 'Hello, ' + name;
      };
      exports.context = (context) => context;
    `,
  },
  positional: { 'main.js': "exports.main = (context, name) => 'Hello, ' + name;\n" },
  asyncfn: {
    'main.js': `
      const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
      exports.main = async (context, input) => {
        console.log('before await');
        await sleep(20);
        console.info('after await');
        return { got: input };
      };
      exports.rejects = async () => {
        await sleep(5);
        throw new TypeError('async failure');
      };
      exports.rejectsPlain = () => Promise.reject('plain reason');
      exports.thenable = () => ({ then(resolve) { resolve(42); } });
      exports.tagged = async (context, input) => {
        for (let i = 0; i < 3; i++) {
          console.log(input.tag + ' line ' + i);
          await sleep(input.ms);
        }
        process.stderr.write(input.tag + ' done\\n');
        return input.tag;
      };
      exports.late = () => {
        setTimeout(() => console.log('LATE OUTPUT'), 30);
        return 'early';
      };
      exports.uncaught = () => new Promise(() => {
        setTimeout(() => { throw new Error('thrown in a timer'); }, 5);
      });
    `,
  },
  raises: {
    'main.js': `
      function helper() { throw new Error('bad input value'); }
      exports.main = () => { console.log('before'); helper(); };
      exports.empty = () => { throw new RangeError(); };
      exports.string = () => { throw 'just a string'; };
      exports.exit = () => process.exit(4);
      // A fork refused by the process limit the function lowered.
      exports.eagain = () => {
        const e = new Error('spawn EAGAIN');
        e.code = 'EAGAIN';
        throw e;
      };
    `,
  },
  badresult: {
    'main.js': `
      exports.bigint = () => ({ n: 10n });
      exports.cycle = () => { const o = {}; o.self = o; return o; };
      exports.big = () => 'x'.repeat(2 * 1024 * 1024);
      exports.nothing = () => undefined;
      exports.notCallable = 42;
    `,
  },
  broken: { 'main.js': "require('does_not_exist_anywhere');\nexports.main = () => 1;\n" },
  syntax: { 'main.js': 'exports.main = () => {\n' },
  noisy: {
    'main.js': `
      exports.main = () => {
        const chunk = 'y'.repeat(1024 * 1024);
        for (let i = 0; i < 5; i++) process.stdout.write(chunk);
        return 'done';
      };
    `,
  },
  nested: { 'lib/handler.js': "exports.run = () => 'nested';\n" },
  sibling: {
    'main.js': "const helper = require('./helper');\nexports.main = () => helper.greet();\n",
    'helper.js': "const data = require('./data.json');\nexports.greet = () => 'hi ' + data.who;\n",
    'data.json': '{"who": "sibling"}\n',
  },
  counter: { 'main.js': 'let count = 0;\nexports.main = () => ++count;\n' },
  state: {
    'main.js': `
      const fs = require('fs');
      const os = require('os');
      exports.main = (context, input) => {
        const seen = { shared: fs.existsSync(input.shared), own: fs.readdirSync(os.tmpdir()), env: process.env.LEFT || null };
        fs.writeFileSync(input.shared, 'x');
        fs.writeFileSync(os.tmpdir() + '/own', 'x');
        process.env.LEFT = 'yes';
        return { seen, tmpdir: os.tmpdir(), cwd: process.cwd(), pid: process.pid };
      };
    `,
  },
  esm: { 'main.mjs': "export async function main(context, input) { return 'esm ' + input.name; }\n" },
  busy: {
    'main.js': `
      const fs = require('fs');
      const path = require('path');
      exports.spin = () => { console.log('spinning'); for (;;) {} };
      exports.child = () => {
        require('child_process').execSync('echo $$ > ' + path.join(__dirname, 'child.pid') + '; exec sleep 30');
      };
      exports.bomb = () => {
        const a = [];
        for (;;) a.push({ i: a.length, s: 'x' + a.length });
      };
      exports.fifo = () => {
        fs.writeFileSync(path.join(__dirname, 'entered'), '');
        return fs.readFileSync(path.join(__dirname, 'fifo'));
      };
      exports.orphan = () => {
        require('child_process').spawn('sleep', ['30']);
        return new Promise(() => {});
      };
      exports.ok = () => 'still here';
    `,
  },
};

function tempDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

function writePackages(dir) {
  for (const [fid, files] of Object.entries(PACKAGES)) {
    for (const [name, src] of Object.entries(files)) {
      const file = path.join(dir, fid, name);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, src);
    }
  }
}

let ids = 0;

// A real server.js process on a temp unix socket.
// Servers the tests started and have not stopped. A test cancelled by its
// suite's timeout never reaches its own stop(): the root hook kills what is
// left, or the runner would wait for them forever.
const liveWorkers = new Set();
after(() => {
  for (const w of liveWorkers) w.proc.kill('SIGKILL');
});

class Worker {
  static start(packages, ...extra) {
    return Worker.startWith([], packages, ...extra);
  }

  // nodeArgs: options for node itself, before the server's file.
  static async startWith(nodeArgs, packages, ...extra) {
    const w = new Worker();
    w.strict = extra.includes('strict');
    w.dir = tempDir('qinling-js-');
    w.sock = path.join(w.dir, 'w.sock');
    w.proc = spawn(NODE, [...nodeArgs, SERVER, '--socket', w.sock, '--packages-dir', packages, ...extra],
      { stdio: ['ignore', 'ignore', 'pipe'] });
    liveWorkers.add(w);
    w.stderr = '';
    w.proc.stderr.on('data', (d) => { w.stderr += d; });
    w.exited = new Promise((resolve) => w.proc.on('exit', (code, signal) => resolve({ code, signal })));
    const deadline = Date.now() + 10000;
    for (;;) {
      try {
        if ((await w.request('GET', '/ping')).status === 200) return w;
      } catch (e) { /* not listening yet */ }
      if (Date.now() > deadline || w.proc.exitCode !== null) {
        throw new Error('worker did not start: ' + w.stderr);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  request(method, urlPath, body, agent) {
    return new Promise((resolve, reject) => {
      const req = http.request({
        socketPath: this.sock, path: urlPath, method, agent: agent || false,
        headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
      }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({
          status: res.statusCode, body: Buffer.concat(chunks).toString(), reused: req.reusedSocket,
        }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  async execute(fid, entry = 'main.main', input = null, extra = {}) {
    const req = { execution_id: `exec-${fid}-${process.pid}-${++ids}`, function_id: fid, entry, input, ...extra };
    const res = await this.request('POST', '/execute', JSON.stringify(req));
    assert.equal(res.status, 200, res.body);
    const result = JSON.parse(res.body);
    // Strict isolation adds the server's own timing; warm reuse none.
    assert.deepEqual(Object.keys(result).sort(),
      this.strict ? ['duration', 'logs', 'output', 'success', 'timing'] : ['duration', 'logs', 'output', 'success']);
    result.id = req.execution_id;
    return result;
  }

  async stop() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
    liveWorkers.delete(this);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

function assertFailed(r, output) {
  assert.equal(r.success, false, JSON.stringify(r));
  assert.equal(r.output, output);
}

function assertLogEnds(r) {
  assert.ok(r.logs.startsWith(`Start execution: ${r.id}\n`), r.logs);
  assert.ok(r.logs.endsWith(`Finished execution: ${r.id}\n`), r.logs);
}

function processGone(pid) {
  try {   // a killed child stays a zombie until the server exits
    return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1][0] === 'Z';
  } catch (e) {
    return true;
  }
}

describe('server', { timeout: 60000 }, () => {
  let packages;
  let w;

  before(async () => {
    packages = tempDir('qinling-js-pkgs-');
    writePackages(packages);
    w = await Worker.start(packages);
  });

  after(async () => {
    await w.stop();
    fs.rmSync(packages, { recursive: true, force: true });
  });

  test('ping', async () => {
    assert.deepEqual(await w.request('GET', '/ping'), { status: 200, body: 'pong', reused: false });
    assert.equal((await w.request('GET', '/nope')).status, 404);
    assert.equal((await w.request('GET', '/execute')).status, 404);
  });

  test('keep-alive', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      assert.equal((await w.request('GET', '/ping', undefined, agent)).status, 200);
      const r = await w.request('POST', '/execute',
        JSON.stringify({ execution_id: 'ka', function_id: 'hello' }), agent);
      assert.equal(JSON.parse(r.body).output, 'Hello, World');
      assert.equal(r.reused, true);
    } finally {
      agent.destroy();
    }
  });

  test('hello with kwargs-style input and its log', async () => {
    const r = await w.execute('hello', 'main.main', { name: 'Qinling' });
    assert.equal(r.success, true);
    assert.equal(r.output, 'Hello, Qinling');
    assert.equal(r.logs, `Start execution: ${r.id}\nHello, Qinling\nFinished execution: ${r.id}\n`);
    assert.equal(typeof r.duration, 'number');
    assert.equal((await w.execute('hello')).output, 'Hello, World');   // null input -> {}
  });

  test('context', async () => {
    const r = await w.execute('hello', 'main.context', null, { function_version: 0 });
    assert.deepEqual(r.output, { execution_id: r.id, function_id: 'hello', function_version: 0 });
  });

  test('positional input', async () => {
    const r = await w.execute('positional', 'main.main', { __function_input: 'Qinling' });
    assert.deepEqual([r.success, r.output], [true, 'Hello, Qinling']);
    const bare = await w.execute('positional', 'main.main', 'bare');
    assert.equal(bare.output, 'Hello, bare');
  });

  test('async function, thenable', async () => {
    const r = await w.execute('asyncfn', 'main.main', { a: [1, 2] });
    assert.deepEqual([r.success, r.output], [true, { got: { a: [1, 2] } }]);
    assert.equal(r.logs, `Start execution: ${r.id}\nbefore await\nafter await\nFinished execution: ${r.id}\n`);
    assert.equal((await w.execute('asyncfn', 'main.thenable')).output, 42);
  });

  test('rejected promise', async () => {
    const r = await w.execute('asyncfn', 'main.rejects');
    assertFailed(r, 'TypeError: async failure');
    assert.match(r.logs, /TypeError: async failure\n\s+at /);
    assertFailed(await w.execute('asyncfn', 'main.rejectsPlain'), 'plain reason');
  });

  test("upstream's answer to a resource error; the detail in the log", async () => {
    const r = await w.execute('raises', 'main.eagain');
    assertFailed(r, 'Function execution failed because of too much resource consumption');
    assert.ok(r.logs.includes('Error: spawn EAGAIN\n'), r.logs);
  });

  test('thrown error with stack in the log', async () => {
    const r = await w.execute('raises');
    assertFailed(r, 'Error: bad input value');
    assert.ok(r.logs.includes('before\n'), r.logs);
    assert.ok(r.logs.includes('Error: bad input value\n'), r.logs);
    assert.match(r.logs, /at helper \(.*main\.js:2:/);
    assert.ok(!r.logs.includes('server.js'), r.logs);   // our frames are hidden
    assertLogEnds(r);
    assertFailed(await w.execute('raises', 'main.empty'), 'RangeError');
    assertFailed(await w.execute('raises', 'main.string'), 'just a string');
  });

  test('uncaught exception in a callback fails the execution', async () => {
    const r = await w.execute('asyncfn', 'main.uncaught');
    assertFailed(r, 'Error: thrown in a timer');
    assert.ok(r.logs.includes('Uncaught exception: Error: thrown in a timer'), r.logs);
  });

  test('process.exit does not kill the server', async () => {
    assertFailed(await w.execute('raises', 'main.exit'), 'Function called process.exit(4).');
    assert.equal((await w.request('GET', '/ping')).status, 200);
    assert.equal((await w.execute('hello')).success, true);
  });

  test('entry problems', async () => {
    assertFailed(await w.execute('hello', 'main.missing'), "Function 'missing' not found in module 'main'.");
    assertFailed(await w.execute('badresult', 'main.notCallable'), "Entry 'main.notCallable' is not callable.");
    const r = await w.execute('hello', 'nosuchmodule.main');
    assertFailed(r, "Failed to import module 'nosuchmodule': Cannot find module 'nosuchmodule'");
    assert.ok(!r.logs.includes(packages), r.logs);
    const broken = await w.execute('broken');
    assertFailed(broken, "Failed to import module 'main': Error: Cannot find module 'does_not_exist_anywhere'");
    assert.match(broken.logs, /main\.js/);
    assert.ok(!broken.logs.includes('server.js'), broken.logs);
    const syntax = await w.execute('syntax');
    assert.equal(syntax.success, false);
    assert.ok(syntax.output.startsWith("Failed to import module 'main': "), syntax.output);
    assert.ok(syntax.logs.includes('SyntaxError'), syntax.logs);
    assertFailed(await w.execute('hello', 'main'), "Invalid entry 'main': expected 'module.function'.");
    assertFailed(await w.execute('hello', '../counter/main.main'),
      "Invalid entry '../counter/main.main': the module must be inside the function package.");
  });

  test('missing package', async () => {
    assertFailed(await w.execute('no-such-function'), 'Function package not found for function no-such-function.');
  });

  test('result not serializable', async () => {
    const big = await w.execute('badresult', 'main.bigint');
    assertFailed(big, 'Function result is not JSON serializable: Do not know how to serialize a BigInt');
    const cycle = await w.execute('badresult', 'main.cycle');
    assert.equal(cycle.success, false);
    assert.ok(cycle.output.startsWith('Function result is not JSON serializable: Converting circular structure'),
      cycle.output);
    const nothing = await w.execute('badresult', 'main.nothing');
    assert.deepEqual([nothing.success, nothing.output], [true, null]);
  });

  test('result too large', async () => {
    assertFailed(await w.execute('badresult', 'main.big'),
      `Function result too large: ${2 * 1024 * 1024 + 2} bytes (limit 1048576).`);
  });

  test('huge print truncated', async () => {
    const r = await w.execute('noisy');
    assert.deepEqual([r.success, r.output], [true, 'done']);
    assert.ok(r.logs.includes(`... [log truncated: ${4 * 1024 * 1024} bytes dropped]\n`), r.logs.slice(-200));
    assert.ok(r.logs.length < 1024 * 1024 + 500);
    assertLogEnds(r);
  });

  test('module requiring a sibling module; nested module path; ESM', async () => {
    assert.equal((await w.execute('sibling')).output, 'hi sibling');
    assert.equal((await w.execute('nested', 'lib/handler.run')).output, 'nested');
    assert.equal((await w.execute('esm', 'main.main', { name: 'm' })).output, 'esm m');
  });

  test('warm module globals persist for sequential calls', async () => {
    assert.equal((await w.execute('counter')).output, 1);
    assert.equal((await w.execute('counter')).output, 2);
  });

  test('concurrent executions keep separate logs, also after await', async () => {
    const tags = ['T0', 'T1', 'T2', 'T3'];
    const start = Date.now();
    const results = await Promise.all(tags.map((tag) => w.execute('asyncfn', 'main.tagged', { tag, ms: 100 })));
    assert.ok(Date.now() - start < 1500, 'not concurrent');
    results.forEach((r, i) => {
      const tag = tags[i];
      assert.equal(r.output, tag);
      assert.deepEqual(r.logs.split('\n'), [`Start execution: ${r.id}`, `${tag} line 0`, `${tag} line 1`,
        `${tag} line 2`, `${tag} done`, `Finished execution: ${r.id}`, '']);
    });
  });

  test('output written after the execution answered is not in the next log', async () => {
    const first = await w.execute('asyncfn', 'main.late');
    assert.equal(first.output, 'early');
    const second = await w.execute('asyncfn', 'main.tagged', { tag: 'N', ms: 60 });
    assert.ok(!first.logs.includes('LATE') && !second.logs.includes('LATE'), second.logs);
  });

  test('busy-loop timeout, then the same server serves the next call', async () => {
    const pid = w.proc.pid;
    const r = await w.execute('busy', 'main.spin', null, { timeout: 0.5 });
    assertFailed(r, 'Function execution timeout.');
    assert.ok(r.duration >= 0.5 && r.duration < 1.5, String(r.duration));
    assert.ok(r.logs.includes('spinning\nExecution timed out after 0.5 seconds.\n'), r.logs);
    assertLogEnds(r);
    assert.equal((await w.request('GET', '/ping')).status, 200);
    assert.equal((await w.execute('busy', 'main.ok')).output, 'still here');
    assert.equal(w.proc.pid, pid);
    assert.equal(w.proc.exitCode, null);
  });

  test('timeout kills the processes the function started', async () => {
    const pidFile = path.join(packages, 'busy', 'child.pid');
    const r = await w.execute('busy', 'main.child', null, { timeout: 0.5 });
    assertFailed(r, 'Function execution timeout.');
    const child = Number(fs.readFileSync(pidFile, 'utf8'));
    for (let i = 0; i < 100 && !processGone(child); i++) await new Promise((res) => setTimeout(res, 20));
    assert.ok(processGone(child), 'child process still running');
    assert.equal((await w.execute('busy', 'main.ok')).output, 'still here');
    assert.equal((await w.request('GET', '/ping')).status, 200);
  });

  test('memory bomb fails clearly and the server survives', async () => {
    const r = await w.execute('busy', 'main.bomb', null, { memory_size: 32 * 1024 * 1024, timeout: 20 });
    assertFailed(r, 'Function execution failed because of too much resource consumption');
    assert.ok(r.logs.includes('JavaScript heap limit reached (32 MiB)'), r.logs);
    assert.equal((await w.execute('busy', 'main.ok', null, { memory_size: 32 * 1024 * 1024 })).output, 'still here');
  });

  test('bad requests', async () => {
    let r = await w.request('POST', '/execute', '{not json');
    assert.equal(r.status, 400);
    assert.ok(JSON.parse(r.body).error.startsWith('invalid request: '));
    r = await w.request('POST', '/execute', JSON.stringify({ function_id: 'hello' }));
    assert.equal(r.status, 400);
    assert.match(JSON.parse(r.body).error, /execution_id/);
    r = await w.request('POST', '/execute', JSON.stringify({ execution_id: 'e', function_id: 'hello', timeout: 'soon' }));
    assert.equal(r.status, 400);
    r = await w.request('POST', '/execute', JSON.stringify({ execution_id: 'e', function_id: '../x' }));
    assert.equal(r.status, 400);
    r = await w.request('POST', '/execute', '[]');
    assert.equal(r.status, 400);
    assert.equal((await w.request('GET', '/ping')).status, 200);
  });
});

// Room for a loaded machine: these tests run at once, and one makes 16 or
// more calls, each waiting for a timeout and a thread's exit.
describe('lifecycle', { concurrency: true, timeout: 180000 }, () => {
  let packages;

  before(() => {
    packages = tempDir('qinling-js-pkgs-');
    writePackages(packages);
  });

  after(() => fs.rmSync(packages, { recursive: true, force: true }));

  test('SIGTERM exits 0 and removes the socket', async () => {
    const w = await Worker.start(packages);
    w.proc.kill('SIGTERM');
    assert.deepEqual(await w.exited, { code: 0, signal: null });
    assert.equal(fs.existsSync(w.sock), false);
    await w.stop();
  });

  test('SIGTERM during a busy execution exits 0 promptly', async () => {
    const w = await Worker.start(packages);
    const pending = w.execute('busy', 'main.spin', null, { timeout: 30 }).catch(() => null);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const start = Date.now();
    w.proc.kill('SIGTERM');
    assert.deepEqual(await w.exited, { code: 0, signal: null });
    assert.ok(Date.now() - start < 2000);
    await pending;
    await w.stop();
  });

  test('bad arguments exit 2', () => {
    const r = spawnSync(NODE, [SERVER, '--bogus'], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /usage: server\.js/);
    assert.equal(spawnSync(NODE, [SERVER]).status, 2);
    assert.equal(spawnSync(NODE, [SERVER, '--port', 'x']).status, 2);
    const c = spawnSync(NODE, [SERVER, '--port', '0', '--isolation', 'strict', '--confine', 'relative'], { encoding: 'utf8' });
    assert.equal(c.status, 2);
    assert.match(c.stderr, /--confine must be an absolute path/);
    assert.equal(spawnSync(NODE, [SERVER, '--port', '0', '--tmp-size', '0']).status, 2);
  });

  test('TCP mode', async () => {
    const proc = spawn(NODE, [SERVER, '--port', '0', '--packages-dir', packages], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    const port = await new Promise((resolve, reject) => {
      proc.stderr.on('data', (d) => {
        err += d;
        const m = /listening on 127\.0\.0\.1:(\d+)/.exec(err);
        if (m) resolve(Number(m[1]));
      });
      proc.on('exit', () => reject(new Error(err)));
    });
    const status = await new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, path: '/ping', agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode);
      }).on('error', reject);
    });
    assert.equal(status, 200);
    const exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
    proc.kill('SIGTERM');
    assert.equal(await exited, 0);
  });

  test('too many unreaped children: drain, then exit 3', async () => {
    // A child process started asynchronously by a thread that is stopped stays a
    // zombie (JavaScript cannot reap it); the 16th makes the worker retire.
    const w = await Worker.start(packages);
    try {
      // Under load a call may time out before its thread started the child,
      // which leaves no zombie: keep calling until the worker retires.
      let calls = 0;
      for (; calls < 400 && w.proc.exitCode === null; calls++) {
        const r = await w.execute('busy', 'main.orphan', null, { timeout: 0.1 }).catch(() => null);
        if (r) assertFailed(r, 'Function execution timeout.');
        await new Promise((resolve) => setTimeout(resolve, 30));   // the thread's exit
      }
      assert.ok(calls >= 16, String(calls));
      assert.deepEqual(await w.exited, { code: 3, signal: null });
      assert.equal(fs.existsSync(w.sock), false);
      assert.match(w.stderr, /unreaped child processes; draining/);
    } finally {
      await w.stop();
    }
  });

  test('a thread that cannot be stopped: drain, then exit', async () => {
    // A thread blocked in open() on a FIFO ignores terminate(): the worker drains
    // like the Python runtime after a timeout, then goes away.
    const pkgs = tempDir('qinling-js-fifo-');
    fs.mkdirSync(path.join(pkgs, 'busy'));
    fs.writeFileSync(path.join(pkgs, 'busy', 'main.js'), PACKAGES.busy['main.js']);
    execFileSync('mkfifo', [path.join(pkgs, 'busy', 'fifo')]);
    const w = await Worker.start(pkgs);
    try {
      // Under load the timeout may stop the thread before it reached open(),
      // while terminate() still works: the function marks the moment it
      // enters, and a call that timed out before it is made again.
      const entered = path.join(pkgs, 'busy', 'entered');
      for (let attempt = 1; ; attempt++) {
        const r = await w.execute('busy', 'main.fifo', null, { timeout: 0.3 });
        assertFailed(r, 'Function execution timeout.');
        if (fs.existsSync(entered)) break;
        assert.ok(attempt < 20, 'the function never reached open() within its timeout');
      }
      let status = 200;
      for (let i = 0; i < 400 && status === 200; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        status = await w.request('GET', '/ping').then((res) => res.status, () => 0);
      }
      assert.ok(status === 503 || status === 0, String(status));
      const { code, signal } = await w.exited;
      assert.ok(code === 3 || signal === 'SIGKILL', `${code} ${signal}`);
      assert.equal(fs.existsSync(w.sock), false);
      assert.match(w.stderr, /did not stop/);
    } finally {
      await w.stop();
      fs.rmSync(pkgs, { recursive: true, force: true });
    }
  });
});

describe('strict isolation', { timeout: 60000 }, () => {
  let packages;
  let tmp;
  let w;

  before(async () => {
    packages = tempDir('qinling-js-pkgs-');
    writePackages(packages);
    tmp = tempDir('qinling-js-tmp-');
    w = await Worker.start(packages, '--isolation', 'strict', '--spares', '2', '--tmp-dir', tmp);
  });

  after(async () => {
    await w.stop();
    fs.rmSync(packages, { recursive: true, force: true });
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('hello, context, positional input, async, failures', async () => {
    const r = await w.execute('hello', 'main.main', { name: 'Strict' });
    assert.deepEqual([r.success, r.output], [true, 'Hello, Strict']);
    assert.equal(r.logs, `Start execution: ${r.id}\nHello, Strict\nFinished execution: ${r.id}\n`);
    for (const k of ['acquire_ms', 'run_ms', 'server_ms']) assert.equal(typeof r.timing[k], 'number', k);
    assert.equal((await w.execute('positional', 'main.main', { __function_input: 'p' })).output, 'Hello, p');
    assert.deepEqual((await w.execute('asyncfn', 'main.main', { a: 1 })).output, { got: { a: 1 } });
    const thrown = await w.execute('raises');
    assertFailed(thrown, 'Error: bad input value');
    assert.ok(thrown.logs.includes('before\nError: bad input value'), thrown.logs);
    assertFailed(await w.execute('raises', 'main.exit'), 'Function called process.exit(4).');
    assertFailed(await w.execute('asyncfn', 'main.uncaught'), 'Error: thrown in a timer');
    assertFailed(await w.execute('missing'), 'Function package not found for function missing.');
    assert.equal((await w.execute('esm', 'main.main', { name: 's' })).output, 'esm s');
  });

  test('every execution starts afresh: globals, files, environment', async () => {
    assert.equal((await w.execute('counter')).output, 1);
    assert.equal((await w.execute('counter')).output, 1);
    const shared = path.join(tmp, 'left-behind');
    const first = await w.execute('state', 'main.main', { shared });
    const second = await w.execute('state', 'main.main', { shared });
    for (const r of [first, second]) {
      assert.equal(r.success, true, JSON.stringify(r));
      assert.deepEqual(r.output.seen, { shared: false, own: [], env: null });
      assert.ok(r.output.tmpdir.startsWith(path.join(tmp, '.qinling-exec-')), r.output.tmpdir);
      assert.equal(r.output.cwd, r.output.tmpdir);
    }
    assert.notEqual(first.output.pid, second.output.pid);
    assert.deepEqual(fs.readdirSync(tmp), [], 'the tmp dir is emptied once no execution runs');
  });

  test('concurrent executions keep separate logs', async () => {
    const tags = ['S0', 'S1', 'S2'];
    const results = await Promise.all(tags.map((tag) => w.execute('asyncfn', 'main.tagged', { tag, ms: 50 })));
    results.forEach((r, i) => {
      assert.equal(r.output, tags[i]);
      assert.deepEqual(r.logs.split('\n'), [`Start execution: ${r.id}`, `${tags[i]} line 0`, `${tags[i]} line 1`,
        `${tags[i]} line 2`, `${tags[i]} done`, `Finished execution: ${r.id}`, '']);
    });
  });

  test('timeout kills the execution and what it started; the server carries on', async () => {
    const pid = w.proc.pid;
    const r = await w.execute('busy', 'main.spin', null, { timeout: 0.5 });
    assertFailed(r, 'Function execution timeout.');
    assert.ok(r.logs.includes('spinning\nExecution timed out after 0.5 seconds.\n'), r.logs);
    assertLogEnds(r);
    const pidFile = path.join(packages, 'busy', 'child.pid');
    assertFailed(await w.execute('busy', 'main.child', null, { timeout: 0.5 }), 'Function execution timeout.');
    const child = Number(fs.readFileSync(pidFile, 'utf8'));
    for (let i = 0; i < 100 && !processGone(child); i++) await new Promise((res) => setTimeout(res, 20));
    assert.ok(processGone(child), 'child process still running');
    assert.equal((await w.execute('busy', 'main.ok')).output, 'still here');
    assert.equal(w.proc.pid, pid);
  });

  test('memory bomb fails clearly and the server survives', async () => {
    const r = await w.execute('busy', 'main.bomb', null, { memory_size: 32 * 1024 * 1024, timeout: 20 });
    assertFailed(r, 'Function execution failed because of too much resource consumption');
    assert.ok(r.logs.includes('JavaScript heap limit reached (32 MiB)'), r.logs);
    assert.ok(!r.logs.includes('Native stack trace'), r.logs);
    assert.equal((await w.execute('busy', 'main.ok', null, { memory_size: 32 * 1024 * 1024 })).output, 'still here');
  });

  test('huge print truncated; result too large', async () => {
    const r = await w.execute('noisy');
    assert.deepEqual([r.success, r.output], [true, 'done']);
    assert.ok(r.logs.includes(`... [log truncated: ${4 * 1024 * 1024} bytes dropped]\n`), r.logs.slice(-200));
    assertLogEnds(r);
    assertFailed(await w.execute('badresult', 'main.big'),
      `Function result too large: ${2 * 1024 * 1024 + 2} bytes (limit 1048576).`);
  });

  test('bad --isolation exits 2', () => {
    const r = spawnSync(NODE, [SERVER, '--socket', '/nonexistent/s', '--isolation', 'paranoid'], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--isolation must be reuse or strict/);
  });
});

// ---------------------------------------------------------------- POST /package

let crcTable = null;

function crc32(data) {
  if (crcTable === null) {
    crcTable = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c;
    }
  }
  let c = -1;
  for (let i = 0; i < data.length; i++) c = crcTable[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

// A small zip writer, so tests can make the archives a careless or hostile
// client would send. files: [{name, data, method (8), mode, flags (UTF-8),
// size, crc}] (size and crc: what the headers claim). opts.zip64 writes
// zip64 sizes and end records; opts.prefix is put in front (as a
// self-extracting stub, offsets left relative to the archive).
function zipBytes(files, opts = {}) {
  const zlib = require('node:zlib');
  const local = [];
  const central = [];
  let off = 0;
  for (const f of files) {
    const name = Buffer.from(f.name, 'utf8');
    const raw = Buffer.from(f.data === undefined ? '' : f.data);
    const method = f.method === undefined ? 8 : f.method;
    const body = method === 8 ? zlib.deflateRawSync(raw) : raw;
    const crc = f.crc === undefined ? crc32(raw) : f.crc;
    const size = f.size === undefined ? raw.length : f.size;
    const flags = f.flags === undefined ? 0x800 : f.flags;
    const mode = f.mode === undefined ? (f.name.endsWith('/') ? 0o40755 : 0o100644) : f.mode;
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(20, 4);
    lh.writeUInt16LE(flags, 6);
    lh.writeUInt16LE(method, 8);
    lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(body.length, 18);
    lh.writeUInt32LE(size, 22);
    lh.writeUInt16LE(name.length, 26);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(0x031e, 4);   // made on Unix
    ch.writeUInt16LE(opts.zip64 ? 45 : 20, 6);
    ch.writeUInt16LE(flags, 8);
    ch.writeUInt16LE(method, 10);
    ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(mode * 65536, 38);
    let extra = Buffer.alloc(0);
    if (opts.zip64) {
      ch.writeUInt32LE(0xffffffff, 20);
      ch.writeUInt32LE(0xffffffff, 24);
      ch.writeUInt32LE(0xffffffff, 42);
      extra = Buffer.alloc(28);
      extra.writeUInt16LE(1, 0);
      extra.writeUInt16LE(24, 2);
      extra.writeBigUInt64LE(BigInt(size), 4);
      extra.writeBigUInt64LE(BigInt(body.length), 12);
      extra.writeBigUInt64LE(BigInt(off), 20);
    } else {
      ch.writeUInt32LE(body.length, 20);
      ch.writeUInt32LE(size, 24);
      ch.writeUInt32LE(off, 42);
    }
    ch.writeUInt16LE(name.length, 28);
    ch.writeUInt16LE(extra.length, 30);
    local.push(lh, name, body);
    central.push(ch, name, extra);
    off += 30 + name.length + body.length;
  }
  const cd = Buffer.concat(central);
  const end = [];
  if (opts.zip64) {
    const rec = Buffer.alloc(56);
    rec.writeUInt32LE(0x06064b50, 0);
    rec.writeBigUInt64LE(44n, 4);
    rec.writeUInt16LE(45, 12);
    rec.writeUInt16LE(45, 14);
    rec.writeBigUInt64LE(BigInt(files.length), 24);
    rec.writeBigUInt64LE(BigInt(files.length), 32);
    rec.writeBigUInt64LE(BigInt(cd.length), 40);
    rec.writeBigUInt64LE(BigInt(off), 48);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(0x07064b50, 0);
    loc.writeBigUInt64LE(BigInt(off + cd.length), 8);
    loc.writeUInt32LE(1, 16);
    end.push(rec, loc);
  }
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(opts.zip64 ? 0xffff : files.length, 8);
  eocd.writeUInt16LE(opts.zip64 ? 0xffff : files.length, 10);
  eocd.writeUInt32LE(opts.zip64 ? 0xffffffff : cd.length, 12);
  eocd.writeUInt32LE(opts.zip64 ? 0xffffffff : off, 16);
  return Buffer.concat([opts.prefix || Buffer.alloc(0), ...local, cd, ...end, eocd]);
}

// A zip made by Python's zipfile (what most tools write): files
// {name: content} deflated, directory entries for their parents.
function pythonZip(files) {
  const script = `
import io, json, sys, zipfile
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
    for name, content in json.load(sys.stdin).items():
        zf.writestr(name, content)
sys.stdout.buffer.write(buf.getvalue())
`;
  return execFileSync('/usr/bin/python3', ['-c', script], { input: JSON.stringify(files) });
}

// n MiB of varied bytes.
const bigData = (n) => {
  const b = Buffer.alloc(n * 1024 * 1024);
  for (let i = 0; i < b.length; i += 4) b.writeUInt32LE((i * 2654435761) >>> 0, i);
  return b;
};

const md5hex = (data) => require('node:crypto').createHash('md5').update(data).digest('hex');

describe('package delivery', { timeout: 120000 }, () => {
  let packages;
  let w;

  const start = async (...extra) => {
    w = await Worker.start(packages, ...extra);
    return w;
  };

  const push = async (fid, data, version = 0, md5 = md5hex(data)) => {
    const q = new URLSearchParams({ function_id: fid, function_version: String(version), md5 });
    const r = await w.request('POST', '/package?' + q, data);
    return { status: r.status, body: JSON.parse(r.body) };
  };

  const executeRaw = async (fid, version) => {
    const r = await w.request('POST', '/execute', JSON.stringify({ execution_id: 'e', function_id: fid, function_version: version }));
    return { status: r.status, body: JSON.parse(r.body) };
  };

  const hello = () => zipBytes([{ name: 'main.js', data: PACKAGES.hello['main.js'] }]);

  test('push then execute; the same package again is a no-op', async (t) => {
    packages = tempDir('qinling-js-push-');
    t.after(async () => {
      await w.stop();
      fs.rmSync(packages, { recursive: true, force: true });
    });
    await start();
    const data = zipBytes([
      { name: 'main.js', data: PACKAGES.hello['main.js'] },
      { name: 'lib/', mode: 0o40700 },
      { name: 'lib/x.js', data: 'exports.x = 1;\n', mode: 0o100755 },
      { name: 'lib/deep/stored.txt', data: 'stored', method: 0 },
      { name: 'empty.txt', data: '', method: 0 },
      { name: 'big/deflated.bin', data: bigData(3) },   // more than 1 MiB: streamed
      { name: 'big/stored.bin', data: bigData(2), method: 0 },
    ]);
    assert.deepEqual(await push('fn-1', data, 2), { status: 200, body: { function_id: 'fn-1', function_version: 2 } });
    const mode = (p) => fs.statSync(path.join(packages, 'fn-1', p)).mode & 0o7777;
    assert.equal(fs.readFileSync(path.join(packages, 'fn-1', 'lib', 'deep', 'stored.txt'), 'utf8'), 'stored');
    assert.deepEqual(['.', 'lib', 'lib/deep', 'main.js', 'lib/x.js', 'empty.txt'].map(mode),
      [0o755, 0o755, 0o755, 0o644, 0o644, 0o644]);
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(packages, '.qinling-serving'), 'utf8')),
      { function_id: 'fn-1', function_version: 2 });
    assert.ok(fs.readFileSync(path.join(packages, 'fn-1', 'big', 'deflated.bin')).equals(bigData(3)));
    assert.ok(fs.readFileSync(path.join(packages, 'fn-1', 'big', 'stored.bin')).equals(bigData(2)));
    const r = await w.execute('fn-1', 'main.main', { name: 'pod' }, { function_version: 2 });
    assert.deepEqual([r.success, r.output], [true, 'Hello, pod']);
    // The same package again is harmless; an upper-case md5 is as good.
    assert.equal((await push('fn-1', data, 2, md5hex(data).toUpperCase())).status, 200);
    assert.equal((await push('fn-1', data, 2, '')).status, 200);
    assert.deepEqual(fs.readdirSync(packages).sort(), ['.qinling-serving', 'fn-1']);
  });

  test('dedicated to one function version: 409 for another package, 410 for another execution', async (t) => {
    packages = tempDir('qinling-js-push-');
    t.after(async () => {
      await w.stop();
      fs.rmSync(packages, { recursive: true, force: true });
    });
    await start();
    assert.equal((await push('fn-1', hello())).status, 200);
    const taken = await push('fn-2', hello());
    assert.equal(taken.status, 409, JSON.stringify(taken));
    assert.equal(taken.body.error, 'worker already serves function fn-1 version 0');
    assert.equal((await push('fn-1', hello(), 1)).status, 409);
    for (const [fid, version] of [['fn-2', 0], ['fn-1', 1]]) {
      const r = await executeRaw(fid, version);
      assert.deepEqual(r, { status: 410, body: { error: 'this worker serves function fn-1 version 0' } });
    }
    assert.equal(fs.existsSync(path.join(packages, 'fn-2')), false);
    assert.equal((await w.execute('fn-1')).output, 'Hello, World');
  });

  test('dedication survives a restart', async (t) => {
    packages = tempDir('qinling-js-push-');
    t.after(async () => {
      await w.stop();
      fs.rmSync(packages, { recursive: true, force: true });
    });
    await start();
    assert.equal((await push('fn-1', hello(), 3)).status, 200);
    await w.stop();
    await start();
    assert.equal((await push('fn-2', hello())).status, 409);
    assert.equal((await executeRaw('fn-1', 0)).status, 410);
    assert.equal((await w.execute('fn-1', 'main.main', null, { function_version: 3 })).output, 'Hello, World');
    // A package directory that went missing is extracted again.
    fs.rmSync(path.join(packages, 'fn-1'), { recursive: true });
    assert.equal((await push('fn-1', hello(), 3)).status, 200);
    assert.equal((await w.execute('fn-1', 'main.main', null, { function_version: 3 })).output, 'Hello, World');
  });

  test('refused packages leave nothing behind and the worker free', async (t) => {
    packages = tempDir('qinling-js-push-');
    t.after(async () => {
      await w.stop();
      fs.rmSync(packages, { recursive: true, force: true });
    });
    await start();
    const good = zipBytes([{ name: 'main.js', data: 'exports.main = () => 1;\n' }]);
    const many = [];
    for (let i = 0; i < 10001; i++) many.push({ name: `f${i}.js`, data: '', method: 0 });
    const cases = [
      ['checksum', good, '0'.repeat(32), 400, 'package checksum mismatch (md5 00000000000000000000000000000000 expected)'],
      ['not a zip', Buffer.from('not a zip at all'), null, 400, 'not a valid zip'],
      ['empty body', Buffer.alloc(0), null, 400, 'not a valid zip'],
      ['truncated', good.subarray(0, good.length - 30), null, 400, 'not a valid zip'],
      ['zip slip', zipBytes([{ name: '../evil.js', data: 'x' }]), null, 400, 'unsafe path'],
      ['deep zip slip', zipBytes([{ name: 'a/../../evil.js', data: 'x' }]), null, 400, 'unsafe path'],
      ['absolute', zipBytes([{ name: '/tmp/evil.js', data: 'x' }]), null, 400, 'unsafe path'],
      ['backslash', zipBytes([{ name: '..\\evil.js', data: 'x' }]), null, 400, 'unsafe path'],
      ['NUL', zipBytes([{ name: 'a\0b.js', data: 'x' }]), null, 400, 'unsafe path'],
      ['dot', zipBytes([{ name: './main.js', data: 'x' }]), null, 400, 'unsafe path'],
      ['empty part', zipBytes([{ name: 'a//main.js', data: 'x' }]), null, 400, 'unsafe path'],
      ['symlink', zipBytes([{ name: 'main.js', data: 'x' }, { name: 'link', data: '/etc/passwd', mode: 0o120777 }]),
        null, 400, 'package entry "link": not a regular file'],
      ['fifo', zipBytes([{ name: 'fifo', mode: 0o10644 }]), null, 400, 'not a regular file'],
      ['encrypted', zipBytes([{ name: 'main.js', data: 'x', flags: 0x801 }]), null, 400, 'encrypted'],
      ['bzip2', zipBytes([{ name: 'main.js', data: 'x', method: 12 }]), null, 400, 'compression method 12 is not supported'],
      ['bad crc', zipBytes([{ name: 'main.js', data: 'xyz', crc: 1234 }]), null, 400, 'bad CRC-32'],
      ['size too small', zipBytes([{ name: 'main.js', data: 'x'.repeat(100000), size: 10 }]), null, 400,
        'more data than its declared size 10'],
      ['size too large', zipBytes([{ name: 'main.js', data: 'xyz', size: 4 }]), null, 400, '3 bytes, 4 declared'],
      ['large size too small', zipBytes([{ name: 'big', data: bigData(3), size: 1536 * 1024 }]), null, 400,
        'more data than its declared size 1572864'],
      ['large bad crc', zipBytes([{ name: 'big', data: bigData(2), crc: 1234 }]), null, 400, 'bad CRC-32'],
      ['large truncated data', zipBytes([{ name: 'big', data: bigData(2), size: 3 * 1024 * 1024 }]), null, 400,
        '2097152 bytes, 3145728 declared'],
      ['stored sizes differ', zipBytes([{ name: 'main.js', data: 'xyz', method: 0, size: 2 }]), null, 400, 'two sizes'],
      ['duplicate', zipBytes([{ name: 'main.js', data: 'a' }, { name: 'main.js', data: 'b' }]), null, 400, 'duplicate path'],
      ['file then dir', zipBytes([{ name: 'a', data: 'a' }, { name: 'a/b.js', data: 'b' }]), null, 400, '"a" is a file'],
      ['too many entries', zipBytes(many), null, 413, 'package has 10001 entries (limit 10000)'],
      ['too large', zipBytes([{ name: 'a', data: 'a', method: 0 }, { name: 'big', data: 'x', size: 512 * 1024 * 1024 }]),
        null, 413, 'package unpacks to more than 536870912 bytes'],
    ];
    for (const [name, data, md5, status, message] of cases) {
      const r = await push('fn-bad', data, 0, md5 === null ? md5hex(data) : md5);
      assert.equal(r.status, status, `${name}: ${JSON.stringify(r)}`);
      assert.ok(r.body.error.includes(message), `${name}: ${r.body.error}`);
    }
    assert.equal(fs.existsSync(path.join(path.dirname(packages), 'evil.js')), false);
    assert.equal(fs.existsSync('/tmp/evil.js'), false);
    assert.deepEqual(fs.readdirSync(packages), []);
    // Refused packages leave the worker free for a good one.
    assert.equal((await push('fn-ok', good)).status, 200);
  });

  test('bad function ids and versions; Content-Length required', async (t) => {
    packages = tempDir('qinling-js-push-');
    t.after(async () => {
      await w.stop();
      fs.rmSync(packages, { recursive: true, force: true });
    });
    await start();
    for (const fid of ['', '.', '..', '.qinling-serving', '.pkg-x', 'a/b', 'a\0b']) {
      const r = await push(fid, hello());
      assert.deepEqual(r, { status: 400, body: { error: 'invalid function_id' } }, JSON.stringify(fid));
    }
    for (const v of ['-1', 'x', '1.5']) {
      const r = await w.request('POST', `/package?function_id=fn&function_version=${v}`, hello());
      assert.equal(r.status, 400, v);
      assert.equal(JSON.parse(r.body).error, 'invalid request: function_version must be an integer');
    }
    const chunked = await new Promise((resolve, reject) => {
      const req = http.request({ socketPath: w.sock, path: '/package?function_id=fn', method: 'POST', agent: false }, (res) => {
        let body = '';
        res.on('data', (c) => { body += c; });
        res.on('end', () => resolve({ status: res.statusCode, body }));
      });
      req.on('error', reject);
      req.write(hello());
      req.end();
    });
    assert.deepEqual(chunked, { status: 400, body: '{"error": "Content-Length required"}' });
    assert.equal(fs.existsSync(path.join(packages, '.qinling-serving')), false);
    // No package delivered: the worker serves whatever /execute names.
    assert.equal((await executeRaw('anything', 7)).status, 200);
  });

  test('zips by Python zipfile, with a stub in front, zip64; without zlib.crc32 (Node.js 18)', async (t) => {
    packages = tempDir('qinling-js-push-');
    const preload = path.join(packages, '..', path.basename(packages) + '-nocrc.js');
    fs.writeFileSync(preload, "delete require('node:zlib').crc32;\n");
    t.after(async () => {
      await w.stop();
      fs.rmSync(packages, { recursive: true, force: true });
      fs.rmSync(preload, { force: true });
    });
    const files = {
      'main.js': "exports.main = () => require('./lib/data.json').v + require('./lib/util').n;\n",
      'lib/data.json': '{"v": "py"}',
      'lib/util.js': `exports.n = ${JSON.stringify('é'.repeat(3) + 'x'.repeat(200000))}.length;\n`,
    };
    const start2 = async (args, zip, fid) => {
      const pkgs = tempDir('qinling-js-push-');
      const w2 = await Worker.start(pkgs, ...args);
      try {
        const q = new URLSearchParams({ function_id: fid, md5: md5hex(zip) });
        const r = await w2.request('POST', '/package?' + q, zip);
        assert.equal(r.status, 200, r.body);
        return (await w2.execute(fid)).output;
      } finally {
        await w2.stop();
        fs.rmSync(pkgs, { recursive: true, force: true });
      }
    };
    const py = pythonZip(files);
    assert.equal(await start2([], py, 'fn-py'), 'py200003');
    const stub = zipBytes([{ name: 'main.js', data: "exports.main = () => 'stub';\n" }],
      { prefix: Buffer.from('#!/bin/sh\nexit 0\n') });
    assert.equal(await start2([], stub, 'fn-stub'), 'stub');
    const z64 = zipBytes([{ name: 'main.js', data: "exports.main = () => 'zip64';\n" }, { name: 'd/' }], { zip64: true });
    assert.equal(await start2([], z64, 'fn-z64'), 'zip64');
    // Node.js 18 has no zlib.crc32: the server computes it itself.
    w = await Worker.startWith(['-r', preload], packages);
    assert.equal((await push('fn-bad', zipBytes([{ name: 'main.js', data: 'xyz', crc: 1234 }]))).body.error,
      'package entry "main.js": bad CRC-32');
    assert.equal((await push('fn-py', py)).status, 200);
    assert.equal((await w.execute('fn-py')).output, 'py200003');
  });
});
