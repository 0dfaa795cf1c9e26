// Package cmdline is the command line both programs share: --config-file,
// --help and --version, and the short summary a process logs once it has
// started.
package cmdline

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/qinling-go/qinling/pkg/config"
)

// Version is the release of this binary. A release build sets it:
//
//	go build -ldflags "-X github.com/qinling-go/qinling/pkg/cmdline.Version=1.0.0" ./qinling-api
//
// Left empty, the version comes from the build information (the module
// version of `go install ...@v1.0.0`, else "devel" and the commit).
var Version string

// SamplePath is the file, in the source tree, that describes every option
// with its default and meaning (generated from pkg/config).
const SamplePath = "etc/qinling.conf.sample"

// VersionString is the version --version prints, e.g.
// "devel (commit 3284f9b1c2d4, modified), go1.26.8".
func VersionString() string {
	v := Version
	info, ok := debug.ReadBuildInfo()
	if v == "" {
		v = "devel"
		if ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
			v = info.Main.Version
		}
	}
	var commit []string
	if ok {
		for _, s := range info.Settings {
			switch {
			case s.Key == "vcs.revision":
				commit = append([]string{"commit " + s.Value[:min(12, len(s.Value))]}, commit...)
			case s.Key == "vcs.modified" && s.Value == "true":
				commit = append(commit, "modified")
			}
		}
	}
	if len(commit) > 0 && strings.HasPrefix(commit[0], "commit") {
		v += " (" + strings.Join(commit, ", ") + ")"
	}
	return v + ", " + runtime.Version()
}

// Option is a configuration option --help names as a common one, with its
// default read from config.Default().
type Option struct {
	Section, Name string
	Value         func(*config.Config) string
	What          string
}

// Flags is one program's command line.
type Flags struct {
	// ConfigFiles are the --config-file arguments, in order.
	ConfigFiles []string

	fs       *flag.FlagSet
	program  string
	synopsis []string
	common   []Option
	version  bool
}

// New returns the command line of program: synopsis are its usage lines,
// common the configuration options --help lists.
func New(program string, synopsis []string, common []Option) *Flags {
	f := &Flags{fs: flag.NewFlagSet(program, flag.ContinueOnError), program: program, synopsis: synopsis, common: common}
	f.fs.Var((*stringList)(&f.ConfigFiles), "config-file",
		"oslo-style INI config file; repeatable, a later file wins for an option both set")
	f.fs.BoolVar(&f.version, "version", false, "print the version and exit")
	return f
}

// Bool adds a boolean flag.
func (f *Flags) Bool(name string, value bool, usage string) *bool {
	return f.fs.Bool(name, value, usage)
}

// Parse reads args. exit says the process ends here, with code: 0 after
// --help or --version (written to stdout), 2 after a bad argument (said on
// stderr).
func (f *Flags) Parse(args []string, stdout, stderr io.Writer) (code int, exit bool) {
	var msgs bytes.Buffer
	f.fs.SetOutput(&msgs)
	f.fs.Usage = func() {}
	err := f.fs.Parse(args)
	if err == nil && f.fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", f.fs.Arg(0))
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		f.writeHelp(stdout)
		return 0, true
	case err != nil:
		fmt.Fprintf(stderr, "%s: %v\nRun '%s --help' for usage.\n", f.program, err, f.program)
		return 2, true
	case f.version:
		fmt.Fprintf(stdout, "%s %s\n", f.program, VersionString())
		return 0, true
	}
	return 0, false
}

func (f *Flags) writeHelp(w io.Writer) {
	var b strings.Builder
	for i, s := range f.synopsis {
		if i == 0 {
			b.WriteString("usage: " + s + "\n")
		} else {
			b.WriteString("       " + s + "\n")
		}
	}
	b.WriteString("\nOptions:\n")
	f.fs.VisitAll(func(fl *flag.Flag) {
		name := "--" + fl.Name
		if _, isBool := fl.Value.(interface{ IsBoolFlag() bool }); !isBool {
			name += " FILE"
		}
		fmt.Fprintf(&b, "  %s\n      %s\n", name, fl.Usage)
	})
	b.WriteString("  --help\n      print this help and exit\n")
	if len(f.common) > 0 {
		b.WriteString("\nCommon configuration options (set in a --config-file; default after =):\n")
		def := config.Default()
		for _, o := range f.common {
			fmt.Fprintf(&b, "  [%s] %s = %s\n      %s\n", o.Section, o.Name, o.Value(def), o.What)
		}
	}
	fmt.Fprintf(&b, "\nEvery option, its default and its meaning: %s in the source tree.\n", SamplePath)
	io.WriteString(w, b.String())
}

// LogStarted logs, in one line at info level, the few facts one needs
// about a process that has started: attrs, then its state directory,
// orchestrator, storage, database and RPC. (The whole configuration is for
// debug level: the programs log it when they have read it.)
func LogStarted(log *slog.Logger, program string, cfg *config.Config, attrs ...any) {
	driver, _, err := config.ParseDatabaseURL(cfg.DatabaseURL())
	if err != nil {
		driver = "?"
	}
	rpc := "in-process"
	if cfg.Default.TransportURL != "" {
		rpc = "rabbitmq"
	}
	attrs = append(attrs,
		"state", cfg.Default.StatePath,
		"orchestrator", Orchestrator(cfg),
		"storage", Storage(cfg),
		"database", driver,
		"rpc", rpc,
		"version", VersionString())
	log.Info(program+" started", attrs...)
}

// Storage says where packages are kept, e.g. "swift (container qinling)".
func Storage(cfg *config.Config) string {
	switch cfg.Storage.Provider {
	case "swift":
		return "swift (container " + cfg.Storage.SwiftContainer + ")"
	case "s3":
		return "s3 (bucket " + cfg.Storage.S3Bucket + ")"
	}
	return cfg.Storage.Provider + " " + cfg.PackagesDir()
}

// Orchestrator says which orchestrator runs functions and how it confines
// them, e.g. "local (sandbox on, isolation reuse)".
func Orchestrator(cfg *config.Config) string {
	switch cfg.Engine.Orchestrator {
	case "local":
		return fmt.Sprintf("local (sandbox %s, isolation %s)", OnOff(cfg.Local.Sandbox), cfg.Engine.Isolation)
	case "kubernetes":
		return "kubernetes (namespace " + cfg.Kubernetes.Namespace + ")"
	}
	return cfg.Engine.Orchestrator
}

// OnOff is "on" or "off".
func OnOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// The options --help of each program names, the ones a newcomer touches.
var (
	StatePath = Option{"DEFAULT", "state_path", func(c *config.Config) string { return c.Default.StatePath },
		"where all state lives: SQLite database, packages, embedded etcd, workers"}
	Debug = Option{"DEFAULT", "debug", func(c *config.Config) string { return strconv.FormatBool(c.Default.Debug) },
		"log at debug level, the whole configuration included"}
	TransportURL = Option{"DEFAULT", "transport_url", func(c *config.Config) string { return c.Default.TransportURL },
		"rabbit://user:pass@host:5672/ between API and engines; empty: in-process (--all-in-one)"}
	APIAddress = Option{"api", "host, port", func(c *config.Config) string { return c.API.Host + ", " + strconv.Itoa(c.API.Port) },
		"where the API listens"}
	AuthEnable = Option{"pecan", "auth_enable", func(c *config.Config) string { return strconv.FormatBool(c.Pecan.AuthEnable) },
		"validate Keystone tokens ([keystone_authtoken]); --all-in-one turns it off unless a file sets it"}
	DatabaseConnection = Option{"database", "connection", func(c *config.Config) string { return c.Database.Connection },
		"mysql+pymysql://user:pass@host/qinling; empty: SQLite under state_path"}
	EtcdEmbedded = Option{"etcd", "embedded", func(c *config.Config) string { return strconv.FormatBool(c.Etcd.Embedded) },
		"run etcd inside the process (--all-in-one only); false: host and port name a cluster"}
	EngineOrchestrator = Option{"engine", "orchestrator", func(c *config.Config) string { return c.Engine.Orchestrator },
		"local (worker processes on this machine) or kubernetes"}
	Sandbox = Option{"local_orchestrator", "sandbox", func(c *config.Config) string { return strconv.FormatBool(c.Local.Sandbox) },
		"confine every worker (namespaces, read-only root, no network); needs root"}
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
