package db

// #include "walvfs.h"
import "C"

import "fmt"

// walVFS is the VFS every SQLite connection opens its files with: the unix
// VFS, but each WAL frame written with one system call (walvfs.c).
const walVFS = C.QINLING_WALVFS

// registerWALVFS registers walVFS with SQLite.
func registerWALVFS() error {
	if rc := C.qinling_walvfs_register(); rc != 0 {
		return fmt.Errorf("sqlite: register VFS %s: error %d", walVFS, rc)
	}
	return nil
}

// walFramesJoined counts the WAL frames the process wrote with one system
// call, header and page together.
func walFramesJoined() int64 { return int64(C.qinling_walvfs_joined()) }
