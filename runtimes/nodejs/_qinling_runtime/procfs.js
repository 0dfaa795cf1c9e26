// Processes, through /proc: the children of a process or thread, zombies,
// and killing a whole tree (what a function started, wherever it went).
'use strict';

const fs = require('node:fs');

function childPids(file) {
  try {
    return fs.readFileSync(file, 'utf8').split(' ').filter(Boolean).map(Number);
  } catch (e) {
    return [];   // no /proc, or the task is gone
  }
}

function isZombie(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(') ') + 2] === 'Z';
  } catch (e) {
    return false;   // gone
  }
}

// SIGKILL the processes listRoots() returns and all their descendants, collected
// first so none is reparented out of reach while we kill; repeated in case one
// forked meanwhile.
function killTree(listRoots) {
  for (let round = 0; round < 3; round++) {
    const seen = new Set();
    const stack = listRoots();
    while (stack.length) {
      const pid = stack.pop();
      if (seen.has(pid) || pid === process.pid) continue;
      seen.add(pid);
      let tasks = [];
      try {
        tasks = fs.readdirSync(`/proc/${pid}/task`);
      } catch (e) { /* gone */ }
      for (const task of tasks) stack.push(...childPids(`/proc/${pid}/task/${task}/children`));
    }
    const live = [...seen].filter((pid) => !isZombie(pid));
    if (live.length === 0) return;
    for (const pid of live) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch (e) { /* gone */ }
    }
  }
}

function allChildPids() {
  let tasks = [];
  try {
    tasks = fs.readdirSync('/proc/self/task');
  } catch (e) { /* no /proc */ }
  return tasks.flatMap((t) => childPids(`/proc/self/task/${t}/children`));
}

module.exports = { allChildPids, childPids, isZombie, killTree };
