package testutil

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MariaDB is a private MariaDB server: its own data directory, socket and
// loopback port, started from Debian's binaries and stopped by PID.
type MariaDB struct {
	Dir    string
	Port   int
	server *process
}

// StartMariaDB starts a private server for t and stops it when t ends.
func StartMariaDB(t testing.TB) *MariaDB {
	t.Helper()
	m, err := LaunchMariaDB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return m
}

// LaunchMariaDB starts a private server; the caller must Stop it. It fails
// with the installation command when Debian's mariadb-server is missing.
func LaunchMariaDB() (*MariaDB, error) {
	install, err := exec.LookPath("mariadb-install-db")
	if err != nil {
		return nil, fmt.Errorf("mariadb-install-db not found: apt-get install mariadb-server mariadb-client")
	}
	daemon := "/usr/sbin/mariadbd"
	dir, err := os.MkdirTemp("", "qmaria-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	m := &MariaDB{Dir: dir, Port: port}
	data := filepath.Join(dir, "data")
	out, err := exec.Command(install, "--no-defaults", "--datadir="+data, "--user=root",
		"--auth-root-authentication-method=normal", "--skip-test-db").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("mariadb-install-db: %v\n%s", err, out)
	}
	m.server = &process{
		name: "mariadbd", path: daemon, dir: dir, logPath: filepath.Join(dir, "mariadbd.log"),
		args: []string{"--no-defaults", "--user=root", "--datadir=" + data,
			"--socket=" + m.Socket(), "--port=" + fmt.Sprint(port), "--bind-address=127.0.0.1",
			"--pid-file=" + filepath.Join(dir, "mariadbd.pid"), "--skip-name-resolve",
			"--innodb-buffer-pool-size=64M",
			"--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci"},
		deathSignal: syscall.SIGKILL, ready: m.ping,
		readyWithin: 60 * time.Second, poll: 100 * time.Millisecond, grace: 20 * time.Second,
	}
	if err := m.server.start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return m, nil
}

// Socket is the server's Unix socket.
func (m *MariaDB) Socket() string { return filepath.Join(m.Dir, "mysqld.sock") }

func (m *MariaDB) root() (*sql.DB, error) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "unix", m.Socket()
	return sql.Open("mysql", cfg.FormatDSN())
}

// ping is the server's readiness probe: root connects over the socket.
func (m *MariaDB) ping() error {
	db, err := m.root()
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Ping()
}

// Database creates a fresh database with its own user and returns its URL in
// the form qinling's [database] connection takes.
func (m *MariaDB) Database(name string) (string, error) {
	db, err := m.root()
	if err != nil {
		return "", err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, q := range []string{
		fmt.Sprintf("CREATE DATABASE `%s` CHARACTER SET utf8mb4", name),
		fmt.Sprintf("CREATE USER '%s'@'127.0.0.1' IDENTIFIED BY 'secret-%s'", name, name),
		fmt.Sprintf("GRANT ALL PRIVILEGES ON `%s`.* TO '%s'@'127.0.0.1'", name, name),
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return "", fmt.Errorf("%s: %w", q, err)
		}
	}
	return fmt.Sprintf("mysql+pymysql://%s:secret-%s@127.0.0.1:%d/%s?charset=utf8", name, name, m.Port, name), nil
}

// Stop stops the server (SIGTERM, then SIGKILL after 20 s) and removes its
// files.
func (m *MariaDB) Stop() {
	_ = m.server.stop()
	os.RemoveAll(m.Dir)
}
