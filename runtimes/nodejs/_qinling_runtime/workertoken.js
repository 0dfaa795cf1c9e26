// The worker token (README.md, "Worker token"), as the Python runtime's
// (runtimes/python3/_qinling_runtime/workertoken.py). A pod's server listens
// on the pod network, where other pods reach it too. With
// QINLING_WORKER_TOKEN=required (the Kubernetes orchestrator sets it in every
// pool pod), POST requests must carry the token of the engine that
// specialised the pod: the first POST /package binds the token it carries,
// every later POST must carry the same one, and a stranger is refused before
// anything is parsed. GET /ping stays open (the kubelet's readiness probe).
// Only a digest is kept, in the packages directory, so a restarted container
// keeps refusing strangers.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const HEADER = 'x-qinling-worker-token';
const TOKEN_FILE = '.qinling-token';
const MIN_LENGTH = 32;

function workerToken(packagesDir, env) {
  const required = env.QINLING_WORKER_TOKEN === 'required';
  const file = path.join(packagesDir, TOKEN_FILE);
  let digest = null;
  try {
    digest = fs.readFileSync(file, 'utf8').trim() || null;
  } catch (e) { /* not bound yet */ }

  // refusal returns null if a POST to url with the request's token may
  // proceed, else why not.
  function refusal(url, headers) {
    if (!required) return null;
    const token = headers[HEADER];
    if (typeof token !== 'string' || token.length < MIN_LENGTH) return 'worker token required';
    const d = crypto.createHash('sha256').update(token).digest('hex');
    if (digest === null) {
      if (url !== '/package') return 'worker not specialised';
      digest = d;
      try {
        fs.writeFileSync(file, d);
      } catch (e) { /* bound in memory all the same */ }
      return null;
    }
    const same = d.length === digest.length && crypto.timingSafeEqual(Buffer.from(d), Buffer.from(digest));
    return same ? null : 'worker token mismatch';
  }
  return { refusal };
}

module.exports = { workerToken, HEADER };
