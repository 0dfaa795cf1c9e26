// What functions written for upstream Qinling expect of a runtime
// (README.md, "Compatibility with upstream's runtime"): the same answers as
// runtimes/python3/_qinling_runtime/compat.py gives.
'use strict';

const util = require('node:util');

// Upstream's output for an execution that failed for lack of resources:
// clients compare it as is. The detail goes to the execution's log.
const RESOURCE_OUTPUT = 'Function execution failed because of too much resource consumption';

function isError(e) {
  return util.types.isNativeError(e) || e instanceof Error;
}

// The message of a thrown value (the class name if empty).
function errorMessage(e) {
  if (isError(e) || (e && typeof e === 'object' && typeof e.message === 'string')) {
    return e.message || e.name || 'Error';
  }
  if (e !== null && (typeof e === 'object' || typeof e === 'function')) {
    return util.inspect(e, { breakLength: Infinity, depth: 2 });
  }
  return String(e);
}

// A thrown value named with its type, as Node.js prints an error:
// 'TypeError: x is not a function', or 'TypeError' for an empty message.
// Values that are not errors are shown as they are.
function describe(e) {
  if (!(isError(e) || (e && typeof e === 'object' && typeof e.message === 'string'))) return errorMessage(e);
  const name = typeof e.name === 'string' && e.name ? e.name : 'Error';
  return e.message ? `${name}: ${e.message}` : name;
}

// A process or thread refused by a limit (spawn EAGAIN: the process limit
// the function lowered, or the pids limit), or memory refused (ENOMEM).
function isResourceError(e) {
  return e !== null && typeof e === 'object' && (e.code === 'EAGAIN' || e.code === 'ENOMEM');
}

// The output of an execution that threw e.
function failureOutput(e) {
  return isResourceError(e) ? RESOURCE_OUTPUT : describe(e);
}

module.exports = { RESOURCE_OUTPUT, describe, errorMessage, failureOutput, isError };
