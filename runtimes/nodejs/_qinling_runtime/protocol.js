// The /execute request and answer (README.md, "HTTP"), as the Python
// runtime's (runtimes/python3/_qinling_runtime/execution.py).
'use strict';

const MIB = 1024 * 1024;

// JavaScript heap limit of a thread, in MiB, for a memory_size in bytes.
function heapMb(bytes) {
  return Math.max(8, Math.floor(bytes / MIB));
}

function responseBody(job, ok, output, duration, text, dropped, note, timing) {
  let logs = `Start execution: ${job.eid}\n` + text;
  if (text && !text.endsWith('\n')) logs += '\n';
  if (dropped) logs += `... [log truncated: ${dropped} bytes dropped]\n`;
  logs += note + `Finished execution: ${job.eid}\n`;
  const d = Math.round(duration * 1000) / 1000;
  const t = timing ? `, "timing": ${JSON.stringify(timing)}` : '';
  // Assembled by hand so a large result is not encoded twice.
  return `{"output": ${output}, "duration": ${d}, "logs": ${JSON.stringify(logs)}, "success": ${ok}${t}}`;
}

class BadRequest extends Error {}

// The job an /execute request asks for; defaultHeapMb is the heap limit
// when it names no memory_size. BadRequest if the request is not valid.
function parseJob(req, defaultHeapMb) {
  if (req === null || typeof req !== 'object' || Array.isArray(req)) {
    throw new BadRequest('request body must be a JSON object');
  }
  const string = (name, def) => {
    const v = req[name];
    if ((v === undefined || v === null) && def !== undefined) return def;
    if (typeof v !== 'string' || !v) {
      throw new BadRequest(`${name} is required and must be a non-empty string`);
    }
    return v;
  };
  const eid = string('execution_id');
  const fid = string('function_id');
  const entry = string('entry', 'main.main');
  if (fid.includes('/') || fid.includes('\0') || fid === '.' || fid === '..') {
    throw new BadRequest('invalid function_id');
  }
  let version = req.function_version;
  if (version === undefined || version === null) version = 0;
  if (!Number.isInteger(version)) throw new BadRequest('function_version must be an integer');
  let timeout = req.timeout;
  if (timeout === undefined || timeout === null) timeout = 5;
  if (typeof timeout !== 'number' || !(timeout > 0) || !Number.isFinite(timeout)) {
    throw new BadRequest('timeout must be a positive number of seconds');
  }
  // memory_size (bytes) sets the thread's heap limit; cpu, request_id and
  // download_url are accepted and ignored (the Go side's job).
  const mem = req.memory_size;
  const heap = typeof mem === 'number' && mem > 0 && Number.isFinite(mem) ? heapMb(mem) : defaultHeapMb;
  const input = req.input === undefined ? null : req.input;
  return { eid, fid, version, entry, timeout, heap, input, key: fid + '\0' + version };
}

module.exports = { BadRequest, heapMb, parseJob, responseBody };
