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
	Dir  string
	Port int
	cmd  *exec.Cmd
	done chan error
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
	m := &MariaDB{Dir: dir, Port: port, done: make(chan error, 1)}
	data := filepath.Join(dir, "data")
	out, err := exec.Command(install, "--no-defaults", "--datadir="+data, "--user=root",
		"--auth-root-authentication-method=normal", "--skip-test-db").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("mariadb-install-db: %v\n%s", err, out)
	}
	logf, err := os.Create(filepath.Join(dir, "mariadbd.log"))
	if err != nil {
		return nil, err
	}
	m.cmd = exec.Command(daemon, "--no-defaults", "--user=root", "--datadir="+data,
		"--socket="+m.Socket(), "--port="+fmt.Sprint(port), "--bind-address=127.0.0.1",
		"--pid-file="+filepath.Join(dir, "mariadbd.pid"), "--skip-name-resolve",
		"--innodb-buffer-pool-size=64M", "--log-error="+filepath.Join(dir, "error.log"),
		"--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci")
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start mariadbd: %w", err)
	}
	go func() { m.done <- m.cmd.Wait() }()
	if err := m.waitReady(60 * time.Second); err != nil {
		m.Stop()
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

func (m *MariaDB) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case err := <-m.done:
			b, _ := os.ReadFile(filepath.Join(m.Dir, "error.log"))
			return fmt.Errorf("mariadbd exited (%v):\n%s", err, lastBytes(string(b), 2000))
		default:
		}
		db, err := m.root()
		if err == nil {
			err = db.Ping()
			db.Close()
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mariadbd not ready after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
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

// Stop kills the server and removes its files.
func (m *MariaDB) Stop() {
	if m.cmd != nil && m.cmd.Process != nil {
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
			<-m.done
		}
	}
	os.RemoveAll(m.Dir)
}

func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
