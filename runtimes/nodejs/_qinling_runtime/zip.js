// Zip packages pushed with POST /package (a Kubernetes worker gets its
// function's zip that way): parsed and extracted with Node.js's built-in
// modules only, with the same checks as runtimes/python3 (pkg/archive's
// bounds on zip bombs).
'use strict';

const MIB = 1024 * 1024;
const MAX_UNPACKED_BYTES = 512 * MIB;     // as pkg/archive: bounds zip bombs
const MAX_PACKAGE_FILES = 10000;

// A refusal of a pushed package: the HTTP status and the reason.
class PackageError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// Bytes 0x80-0xFF of code page 437, what a zip entry name is in unless its
// UTF-8 flag is set (as Python's zipfile reads it).
const CP437_HIGH = 'ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐' +
  '└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u00a0';

// The entries of the zip archive in buf, from its central directory, each
// with the place of its data checked: {name, raw (name bytes), flags,
// method, crc, compSize, size, mode (Unix mode bits, 0 if none), start,
// end (its data in buf)}. Prepended data (a self-extracting stub) and zip64
// records are understood; more than maxEntries entries is a 413.
function zipEntries(buf, maxEntries) {
  const bad = (why) => new PackageError(400, 'package is not a valid zip file: ' + why);
  const u64 = (at) => {
    const v = buf.readBigUInt64LE(at);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad('zip64 field out of range');
    return Number(v);
  };
  // End of central directory record: 22 bytes, then a comment of at most 64 KiB.
  let eocd = -1;
  for (let i = buf.length - 22; i >= 0 && i >= buf.length - 22 - 0xffff; i--) {
    if (buf[i] === 0x50 && buf.readUInt32LE(i) === 0x06054b50 && i + 22 + buf.readUInt16LE(i + 20) <= buf.length) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw bad('no end of central directory record');
  let count = buf.readUInt16LE(eocd + 10);
  let cdSize = buf.readUInt32LE(eocd + 12);
  let cdOffset = buf.readUInt32LE(eocd + 16);
  let cdEnd = eocd;   // where the central directory ends: the (zip64) end records
  if (eocd >= 20 && buf.readUInt32LE(eocd - 20) === 0x07064b50) {
    // Zip64: its end record lies before the locator (as Python reads it).
    const rec = eocd - 20 - 56;
    if (rec < 0 || buf.readUInt32LE(rec) !== 0x06064b50) throw bad('bad zip64 end of central directory record');
    if (buf.readUInt32LE(eocd - 20 + 4) !== 0 || buf.readUInt32LE(eocd - 20 + 16) > 1 || buf.readUInt32LE(rec + 16) !== 0) {
      throw bad('archives spanning multiple disks are not supported');
    }
    count = u64(rec + 32);
    cdSize = u64(rec + 40);
    cdOffset = u64(rec + 48);
    cdEnd = rec;
  }
  if (count > maxEntries) throw new PackageError(413, `package has ${count} entries (limit ${maxEntries})`);
  // Bytes before the archive proper (a stub) shift every offset.
  const concat = cdEnd - cdSize - cdOffset;
  if (concat < 0) throw bad('central directory out of range');
  const cdStart = concat + cdOffset;
  const entries = [];
  let p = cdStart;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cdEnd || buf.readUInt32LE(p) !== 0x02014b50) throw bad('truncated central directory');
    const flags = buf.readUInt16LE(p + 8);
    const nameLen = buf.readUInt16LE(p + 28);
    const extraLen = buf.readUInt16LE(p + 30);
    const next = p + 46 + nameLen + extraLen + buf.readUInt16LE(p + 32);
    if (next > cdEnd) throw bad('truncated central directory');
    const raw = buf.subarray(p + 46, p + 46 + nameLen);
    const e = {
      name: zipName(raw, flags, bad), raw, flags, method: buf.readUInt16LE(p + 10),
      crc: buf.readUInt32LE(p + 16), compSize: buf.readUInt32LE(p + 20), size: buf.readUInt32LE(p + 24),
      mode: buf.readUInt32LE(p + 38) >>> 16, offset: buf.readUInt32LE(p + 42), start: 0, end: 0,
    };
    if (e.size === 0xffffffff || e.compSize === 0xffffffff || e.offset === 0xffffffff) {
      // Zip64 extra field (0x0001): the 64-bit values of the fields that are
      // 0xffffffff, in this order.
      let x = p + 46 + nameLen;
      const xEnd = x + extraLen;
      let found = false;
      while (x + 4 <= xEnd) {
        const id = buf.readUInt16LE(x);
        const len = buf.readUInt16LE(x + 2);
        if (x + 4 + len > xEnd) break;
        if (id === 1) {
          let at = x + 4;
          const take = () => {
            if (at + 8 > x + 4 + len) throw bad(`entry ${JSON.stringify(e.name)}: short zip64 extra field`);
            const v = u64(at);
            at += 8;
            return v;
          };
          if (e.size === 0xffffffff) e.size = take();
          if (e.compSize === 0xffffffff) e.compSize = take();
          if (e.offset === 0xffffffff) e.offset = take();
          found = true;
          break;
        }
        x += 4 + len;
      }
      if (!found) throw bad(`entry ${JSON.stringify(e.name)}: missing zip64 extra field`);
    }
    entries.push(e);
    p = next;
  }
  // Each entry's local header and data: inside the archive, before the
  // central directory, and not overlapping another entry (a zip bomb trick).
  for (const e of entries) {
    const h = concat + e.offset;
    const what = `entry ${JSON.stringify(e.name)}`;
    if (h + 30 > cdStart || buf.readUInt32LE(h) !== 0x04034b50) throw bad(what + ': bad local header');
    const n = buf.readUInt16LE(h + 26);
    if (!buf.subarray(h + 30, h + 30 + n).equals(e.raw)) throw bad(what + ': names in the directory and the local header differ');
    e.start = h + 30 + n + buf.readUInt16LE(h + 28);
    e.end = e.start + e.compSize;
    if (e.end > cdStart) throw bad(what + ': data beyond the central directory');
  }
  const byOffset = entries.slice().sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < byOffset.length; i++) {
    if (byOffset[i - 1].end > concat + byOffset[i].offset) throw bad('overlapping entries');
  }
  return entries;
}

function zipName(raw, flags, bad) {
  if (flags & 0x800) {   // UTF-8
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(raw);
    } catch (e) {
      throw bad('entry name is not valid UTF-8');
    }
  }
  let s = '';
  for (const b of raw) s += b < 0x80 ? String.fromCharCode(b) : CP437_HIGH[b - 0x80];
  return s;
}

let crcTable = null;

// CRC-32 (zlib's), continuing from value; zlib.crc32 where Node.js has it
// (20.15, 22.2).
function crc32(data, value) {
  const zlib = require('node:zlib');
  if (typeof zlib.crc32 === 'function') return zlib.crc32(data, value);
  if (crcTable === null) {
    crcTable = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c;
    }
  }
  let c = ~value;
  for (let i = 0; i < data.length; i++) c = crcTable[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

// Extracts the zip in buf into the new, empty directory dst: regular files
// (0644) and directories (0755) only, no absolute, '..' or backslash paths,
// at most MAX_PACKAGE_FILES entries and MAX_UNPACKED_BYTES unpacked (the
// declared sizes are checked first, and the bytes written are counted: a
// zip's sizes can lie). Stored and deflated entries; the CRC is checked.
// Every entry is checked before anything is written.
async function extractZip(buf, dst) {
  const fs = require('node:fs');
  const path = require('node:path');
  const zlib = require('node:zlib');
  const entries = zipEntries(buf, MAX_PACKAGE_FILES);
  let declared = 0;
  for (const e of entries) {
    const what = `package entry ${JSON.stringify(e.name)}`;
    e.dir = e.name.endsWith('/');
    e.parts = e.name.replace(/\/+$/, '').split('/');
    if (!e.name || e.name.startsWith('/') || e.name.includes('\\') || e.name.includes('\0') ||
        e.parts.some((part) => part === '' || part === '.' || part === '..')) {
      throw new PackageError(400, what + ': unsafe path');
    }
    if (e.dir) continue;
    const kind = e.mode & 0o170000;
    if (kind !== 0 && kind !== 0o100000) throw new PackageError(400, what + ': not a regular file');
    if (e.flags & 0x41) throw new PackageError(400, what + ': encrypted entries are not supported');
    if (e.method !== 0 && e.method !== 8) {
      throw new PackageError(400, `${what}: compression method ${e.method} is not supported (only stored and deflate)`);
    }
    if (e.method === 0 && e.compSize !== e.size) throw new PackageError(400, what + ': stored entry with two sizes');
    declared += e.size;
  }
  if (declared > MAX_UNPACKED_BYTES) {
    throw new PackageError(413, `package unpacks to more than ${MAX_UNPACKED_BYTES} bytes`);
  }

  // Small files (most) are written with synchronous calls, a pause for the
  // event loop every few milliseconds (/ping and running executions are
  // served meanwhile); a large one is inflated and written as a stream.
  const kinds = new Map();   // relative path -> 'dir' | 'file', of what was created
  const mkdirs = (parts, what) => {
    for (let i = 1; i <= parts.length; i++) {
      const rel = parts.slice(0, i).join('/');
      const kind = kinds.get(rel);
      if (kind === 'dir') continue;
      if (kind === 'file') throw new PackageError(400, `${what}: ${JSON.stringify(rel)} is a file in the package`);
      const dir = path.join(dst, ...parts.slice(0, i));
      fs.mkdirSync(dir, { mode: 0o755 });
      fs.chmodSync(dir, 0o755);
      kinds.set(rel, 'dir');
    }
  };
  let paused = Date.now();
  let total = 0;
  for (const e of entries) {
    const what = `package entry ${JSON.stringify(e.name)}`;
    if (Date.now() - paused > 10) {
      await new Promise((resolve) => setImmediate(resolve));
      paused = Date.now();
    }
    if (e.dir) {
      mkdirs(e.parts, what);
      continue;
    }
    mkdirs(e.parts.slice(0, -1), what);
    const rel = e.parts.join('/');
    if (kinds.has(rel)) throw new PackageError(400, what + ': duplicate path');
    kinds.set(rel, 'file');
    const file = path.join(dst, ...e.parts);
    const data = buf.subarray(e.start, e.end);
    let written = 0;
    let crc = 0;
    // Counts a chunk about to be written.
    const count = (chunk) => {
      written += chunk.length;
      total += chunk.length;
      if (written > e.size) throw new PackageError(400, `${what}: more data than its declared size ${e.size}`);
      if (total > MAX_UNPACKED_BYTES) {
        throw new PackageError(413, `package unpacks to more than ${MAX_UNPACKED_BYTES} bytes`);
      }
      crc = crc32(chunk, crc);
    };
    if (e.size <= MIB) {
      let out = data;
      if (e.method === 8 && data.length > 0) {
        try {   // never more than declared
          out = zlib.inflateRawSync(data, { maxOutputLength: Math.max(1, e.size) });
        } catch (err) {
          if (err.code === 'ERR_BUFFER_TOO_LARGE') {
            throw new PackageError(400, `${what}: more data than its declared size ${e.size}`);
          }
          throw new PackageError(400, `${what}: bad compressed data: ${err.message}`);
        }
      } else if (e.method === 8) {
        out = data.subarray(0, 0);
      }
      count(out);
      checkEnd(what, e, written, crc);
      const fd = fs.openSync(file, 'wx', 0o644);
      try {
        for (let off = 0; off < out.length;) off += fs.writeSync(fd, out, off, out.length - off);
        fs.fchmodSync(fd, 0o644);
      } finally {
        fs.closeSync(fd);
      }
      continue;
    }
    const fh = await fs.promises.open(file, 'wx', 0o644);
    try {
      const put = async (chunk) => {
        count(chunk);
        for (let off = 0; off < chunk.length;) off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten;
      };
      if (e.method === 0) {
        for (let off = 0; off < data.length; off += MIB) await put(data.subarray(off, off + MIB));
      } else {
        const inflate = zlib.createInflateRaw({ chunkSize: 64 * 1024 });
        inflate.end(data);
        try {
          for await (const chunk of inflate) await put(chunk);
        } catch (err) {
          if (err instanceof PackageError) throw err;
          throw new PackageError(400, `${what}: bad compressed data: ${err.message}`);
        } finally {
          inflate.destroy();
        }
      }
      checkEnd(what, e, written, crc);
      await fh.chmod(0o644);
    } finally {
      await fh.close();
    }
  }
}

function checkEnd(what, e, written, crc) {
  if (written !== e.size) throw new PackageError(400, `${what}: ${written} bytes, ${e.size} declared`);
  if (crc !== e.crc) throw new PackageError(400, `${what}: bad CRC-32`);
}

module.exports = { PackageError, extractZip };
