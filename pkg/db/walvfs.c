// A VFS over SQLite's default one (unix) that writes each WAL frame with
// one pwrite instead of two: SQLite writes a frame's 24-byte header and
// then its page at the next offset (wal.c, walWriteOneFrame). The header
// is held until the page follows and both go out as one write; any other
// call on the file first writes a held header, so the file's contents, as
// every later call sees them, are what SQLite wrote. A crash between
// SQLite's two calls loses the header as it lost the page before: the WAL's
// checksums end the log at the last whole frame either way. Why:
// docs/benchmarks.md, "Ninth round". Other files (the database, journals)
// are the unix VFS's own, untouched.
#include <stdlib.h>
#include <string.h>
#include "walvfs.h"

#define FRAME_HEADER 24
#define MAX_PAGE 65536
#define OPEN_WAL 0x00080000 /* SQLITE_OPEN_WAL */
#define OK 0
#define NOMEM 7

typedef struct walFile {
	const struct qsqlite_io_methods *pMethods; /* must be first */
	struct qsqlite_file *real;                 /* the unix VFS's file, after this struct */
	int pending;                               /* a header is held */
	long long pendingOffset;
	unsigned char *buf; /* header + page */
	long long joined;   /* frames written with one call, for tests */
} walFile;

static struct qsqlite_vfs walVFS;
static struct qsqlite_vfs *unixVFS;
static long long joinedFrames;

static struct qsqlite_file *realOf(struct qsqlite_file *f) { return ((walFile *)f)->real; }

static int flush(walFile *p) {
	if (!p->pending) return OK;
	p->pending = 0;
	return p->real->pMethods->xWrite(p->real, p->buf, FRAME_HEADER, p->pendingOffset);
}

static int wClose(struct qsqlite_file *f) {
	walFile *p = (walFile *)f;
	int rc = flush(p);
	int rc2 = p->real->pMethods->xClose(p->real);
	free(p->buf);
	p->buf = NULL;
	return rc != OK ? rc : rc2;
}

static int wRead(struct qsqlite_file *f, void *b, int n, long long off) {
	int rc = flush((walFile *)f);
	return rc != OK ? rc : realOf(f)->pMethods->xRead(realOf(f), b, n, off);
}

static int wWrite(struct qsqlite_file *f, const void *b, int n, long long off) {
	walFile *p = (walFile *)f;
	if (p->pending && off == p->pendingOffset + FRAME_HEADER && n <= MAX_PAGE) {
		memcpy(p->buf + FRAME_HEADER, b, n);
		p->pending = 0;
		__atomic_add_fetch(&joinedFrames, 1, __ATOMIC_RELAXED);
		return p->real->pMethods->xWrite(p->real, p->buf, FRAME_HEADER + n, p->pendingOffset);
	}
	int rc = flush(p);
	if (rc != OK) return rc;
	if (n == FRAME_HEADER) {
		memcpy(p->buf, b, n);
		p->pending = 1;
		p->pendingOffset = off;
		return OK;
	}
	return p->real->pMethods->xWrite(p->real, b, n, off);
}

static int wTruncate(struct qsqlite_file *f, long long size) {
	int rc = flush((walFile *)f);
	return rc != OK ? rc : realOf(f)->pMethods->xTruncate(realOf(f), size);
}

static int wSync(struct qsqlite_file *f, int flags) {
	int rc = flush((walFile *)f);
	return rc != OK ? rc : realOf(f)->pMethods->xSync(realOf(f), flags);
}

static int wFileSize(struct qsqlite_file *f, long long *size) {
	int rc = flush((walFile *)f);
	return rc != OK ? rc : realOf(f)->pMethods->xFileSize(realOf(f), size);
}

static int wLock(struct qsqlite_file *f, int l) { return realOf(f)->pMethods->xLock(realOf(f), l); }
static int wUnlock(struct qsqlite_file *f, int l) { return realOf(f)->pMethods->xUnlock(realOf(f), l); }
static int wCheckReservedLock(struct qsqlite_file *f, int *out) {
	return realOf(f)->pMethods->xCheckReservedLock(realOf(f), out);
}
static int wFileControl(struct qsqlite_file *f, int op, void *arg) {
	int rc = flush((walFile *)f);
	return rc != OK ? rc : realOf(f)->pMethods->xFileControl(realOf(f), op, arg);
}
static int wSectorSize(struct qsqlite_file *f) { return realOf(f)->pMethods->xSectorSize(realOf(f)); }
static int wDeviceCharacteristics(struct qsqlite_file *f) {
	return realOf(f)->pMethods->xDeviceCharacteristics(realOf(f));
}

/* Version 1: shared memory and memory maps are the database file's, never
   the WAL's, so no method of version 2 or 3 is called on it. */
static const struct qsqlite_io_methods walMethods = {
	1, wClose, wRead, wWrite, wTruncate, wSync, wFileSize, wLock, wUnlock,
	wCheckReservedLock, wFileControl, wSectorSize, wDeviceCharacteristics,
};

static int wOpen(struct qsqlite_vfs *vfs, const char *name, struct qsqlite_file *f, int flags, int *outFlags) {
	if (!(flags & OPEN_WAL)) return unixVFS->xOpen(unixVFS, name, f, flags, outFlags);
	walFile *p = (walFile *)f;
	memset(p, 0, sizeof(*p));
	p->real = (struct qsqlite_file *)(p + 1);
	p->buf = malloc(FRAME_HEADER + MAX_PAGE);
	if (p->buf == NULL) return NOMEM;
	int rc = unixVFS->xOpen(unixVFS, name, p->real, flags, outFlags);
	if (rc != OK) {
		free(p->buf);
		p->buf = NULL;
		p->pMethods = NULL;
		return rc;
	}
	p->pMethods = &walMethods;
	return OK;
}

int qinling_walvfs_register(void) {
	unixVFS = sqlite3_vfs_find(NULL);
	if (unixVFS == NULL) return 1; /* SQLITE_ERROR */
	walVFS = *unixVFS;
	walVFS.zName = QINLING_WALVFS;
	walVFS.pNext = NULL;
	walVFS.szOsFile = sizeof(walFile) + unixVFS->szOsFile;
	walVFS.xOpen = wOpen;
	return sqlite3_vfs_register(&walVFS, 0);
}

long long qinling_walvfs_joined(void) { return __atomic_load_n(&joinedFrames, __ATOMIC_RELAXED); }
