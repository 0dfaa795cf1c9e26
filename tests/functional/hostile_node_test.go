//go:build functional

package functional

// hostileJS is the Node.js counterpart of hostilePy: the hostile functions
// as exports of one module, harmless when called with {"harm": false}.
const hostileJS = `const fs = require('fs');
const harmless = (input) => input && input.harm === false;

exports.loop = (context, input) => {
  if (harmless(input)) return 'fine';
  console.log('looping');
  while (true) {}
};

// JavaScript objects: the heap limit (memory_size) stops it.
exports.heap = (context, input) => {
  if (harmless(input)) return 'fine';
  const hog = [];
  for (;;) hog.push(new Array(1 << 16).fill(hog.length));
};

// Buffers live outside the JavaScript heap: the cgroup's limit stops it.
exports.buffers = (context, input) => {
  if (harmless(input)) return 'fine';
  const hog = [];
  for (;;) hog.push(Buffer.alloc(8 << 20, 1));
};

// Each Node.js process has several threads: the pids limit stops it.
exports.forks = async (context, input) => {
  if (harmless(input)) return 'fine';
  const { spawn } = require('child_process');
  for (;;) {
    await new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
      child.on('spawn', resolve);
      child.on('error', reject);
    });
  }
};

exports.read = (context, input) => {
  if (harmless(input)) return 'fine';
  const out = {};
  for (const p of input.paths) {
    try {
      out[p] = 'read ' + fs.readFileSync(p).length + ' bytes';
    } catch (e) {
      out[p] = e.code;
    }
  }
  return out;
};

let count = 0;
exports.counter = () => ++count;

exports.leave_file = () => {
  const seen = fs.existsSync('/tmp/left-behind');
  fs.writeFileSync('/tmp/left-behind', 'secret of the previous caller');
  return seen;
};

// Kills every process it can find (under strict isolation: the processes
// prepared for this function's next calls, the server), probes every pid,
// and plants a file; {"look": true} reports what an execution sees instead.
const numericDirs = (dir) => fs.readdirSync(dir).filter((n) => /^[0-9]+$/.test(n)).map(Number);
exports.attack = (context, input) => {
  if (harmless(input)) return 'fine';
  if (input && input.look) return { pid: process.pid, seen: numericDirs('/proc'), tmp: fs.readdirSync('/tmp') };
  const seen = numericDirs('/proc');
  const killed = [];
  for (const pid of seen) {
    if (pid === process.pid) continue;
    try { process.kill(pid, 'SIGKILL'); killed.push(pid); } catch (e) { /* not ours */ }
  }
  const threads = numericDirs('/proc/self/task');
  const found = [];
  for (let pid = 2; pid < 32768; pid++) {
    if (threads.includes(pid)) continue;
    try { process.kill(pid, 0); found.push(pid); } catch (e) { /* ESRCH */ }
  }
  let all;
  try { process.kill(-1, 'SIGKILL'); all = 'sent'; } catch (e) { all = e.code; }
  fs.writeFileSync('/tmp/planted', 'from the attacker');
  return { pid: process.pid, seen, killed, found, all };
};

exports.hello = async (context, input) => {
  await new Promise((resolve) => setTimeout(resolve, 10));
  console.log('Hello, ' + input.name);
  return 'Hello, ' + input.name;
};
`

// nodeHostile runs hostileJS with upstream's default memory_size (32 MiB)
// unless a case says otherwise, and the default max_pids, which leaves room
// for Node.js's own threads (docs/isolation.md).
var nodeHostile = hostileRuntime{
	name: nodejs, image: "openstackqinling/nodejs-runtime", module: "hostile.js", source: hostileJS,
	maxPids: 64, poolSize: 1,
	defaults: []string{"timeout", hostileTimeout},
	notFound: "ENOENT",
}
