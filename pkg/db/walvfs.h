// The parts of SQLite's VFS interface (sqlite3.h, whose layout SQLite
// keeps stable across releases) that walvfs.c uses, under names of their
// own: the SQLite linked in is go-sqlite3's, whose header is not on this
// package's include path.
#define QINLING_WALVFS "qinling-wal"

struct qsqlite_file {
	const struct qsqlite_io_methods *pMethods;
};

struct qsqlite_io_methods {
	int iVersion;
	int (*xClose)(struct qsqlite_file *);
	int (*xRead)(struct qsqlite_file *, void *, int, long long);
	int (*xWrite)(struct qsqlite_file *, const void *, int, long long);
	int (*xTruncate)(struct qsqlite_file *, long long);
	int (*xSync)(struct qsqlite_file *, int);
	int (*xFileSize)(struct qsqlite_file *, long long *);
	int (*xLock)(struct qsqlite_file *, int);
	int (*xUnlock)(struct qsqlite_file *, int);
	int (*xCheckReservedLock)(struct qsqlite_file *, int *);
	int (*xFileControl)(struct qsqlite_file *, int, void *);
	int (*xSectorSize)(struct qsqlite_file *);
	int (*xDeviceCharacteristics)(struct qsqlite_file *);
	void *xShmMap, *xShmLock, *xShmBarrier, *xShmUnmap; /* version 2 */
	void *xFetch, *xUnfetch;                             /* version 3 */
};

struct qsqlite_vfs {
	int iVersion;
	int szOsFile;
	int mxPathname;
	struct qsqlite_vfs *pNext;
	const char *zName;
	void *pAppData;
	int (*xOpen)(struct qsqlite_vfs *, const char *, struct qsqlite_file *, int, int *);
	/* The rest (xDelete to xNextSystemCall) is copied from the unix VFS. */
	void *rest[15];
};

struct qsqlite_vfs *sqlite3_vfs_find(const char *);
int sqlite3_vfs_register(struct qsqlite_vfs *, int);

int qinling_walvfs_register(void);
long long qinling_walvfs_joined(void);
