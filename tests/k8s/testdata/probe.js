// A hostile function (tests/k8s/hostile_test.go), as probe.py: it tries
// what the input names from inside its pod and returns, for each probe,
// "open: ..." when it got through or "closed: ..." with what stopped it.
'use strict';

const dns = require('dns');
const fs = require('fs');
const http = require('http');
const net = require('net');

function connect(target) {
  const i = target.lastIndexOf(':');
  return new Promise((resolve) => {
    const s = net.connect({ host: target.slice(0, i), port: Number(target.slice(i + 1)) });
    s.setTimeout(2000, () => { s.destroy(); resolve('closed: timeout'); });
    s.on('connect', () => { s.destroy(); resolve('open: connected to ' + target); });
    s.on('error', (e) => resolve('closed: ' + e.message));
  });
}

// POST /execute to a runtime server, as the engine would but without its token.
function post(target) {
  const i = target.lastIndexOf(':');
  const body = JSON.stringify({ execution_id: 'stolen', function_id: 'guess', function_version: 0,
    entry: 'main.main', input: null, timeout: 5 });
  return new Promise((resolve) => {
    const req = http.request({ host: target.slice(0, i), port: Number(target.slice(i + 1)), path: '/execute',
      method: 'POST', headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.on('data', (c) => { text += c; });
      res.on('end', () => {
        const open = res.statusCode < 400 || res.statusCode === 410;   // 410 names the function it serves
        resolve(`${open ? 'open' : 'closed'}: ${res.statusCode} ${text.slice(0, 300)}`);
      });
    });
    req.setTimeout(3000, () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve('closed: ' + e.message));
    req.end(body);
  });
}

function read(path) {
  try {
    const fd = fs.openSync(path, 'r');
    const n = fs.readSync(fd, Buffer.alloc(4096));
    fs.closeSync(fd);
    return 'open: read ' + n + ' bytes';
  } catch (e) {
    return 'closed: ' + e.message;
  }
}

function write(path) {
  try {
    fs.appendFileSync(path, Buffer.alloc(1 << 20, 'x'));
    return 'open: wrote 1 MiB';
  } catch (e) {
    return 'closed: ' + e.message;
  }
}

function resolveName(name) {
  return new Promise((resolve) => {
    dns.lookup(name, { family: 4 }, (e, addr) => resolve(e ? 'closed: ' + e.code : 'open: ' + addr));
  });
}

function caps() {
  const st = {};
  for (const line of fs.readFileSync('/proc/self/status', 'utf8').split('\n')) {
    const [k, v] = line.split(':\t');
    if (v !== undefined) st[k] = v.trim();
  }
  const uid = process.getuid();
  if (uid === 0 || /[^0]/.test(st.CapEff) || st.Seccomp === '0' || st.NoNewPrivs !== '1') {
    return `open: uid ${uid} CapEff ${st.CapEff} Seccomp ${st.Seccomp} NoNewPrivs ${st.NoNewPrivs}`;
  }
  return `closed: uid ${uid}, no capabilities, seccomp, no new privileges`;
}

// Processes this pod sees besides its own runtime's (the node's, other pods').
function ps() {
  const seen = [];
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(pid)) continue;
    let cmd;
    try {
      cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
    } catch (e) {
      continue;
    }
    if (cmd && !/server\.py|server\.js|qinling/.test(cmd)) seen.push(cmd.slice(0, 80));
  }
  return seen.length ? 'open: ' + JSON.stringify(seen) : "closed: only the runtime's own processes";
}

const KINDS = { connect, post, read, write, resolve: resolveName, caps, ps };

exports.main = async (context, input) => {
  const out = {};
  for (const name of Object.keys((input && input.probes) || {}).sort()) {
    const [kind, target] = input.probes[name];
    out[name] = await KINDS[kind](target);
  }
  return out;
};
