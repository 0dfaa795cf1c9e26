package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzLoad feeds arbitrary files to Load. Properties: it never panics; an
// error names the file; an accepted configuration, written back as INI
// (every option, in the form the sample documents), loads to the same
// configuration: what Load reads is what the operator wrote.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(`# as devstack/lib/qinling.sh writes it
[DEFAULT]
state_path = /opt/stack/data/qinling/api
transport_url = rabbit://stackrabbit:secret@10.0.0.5:5672/
qinling_endpoint = http://10.0.0.5:7070
debug = True

[api]
host = 10.0.0.5
port = 7070

[pecan]
auth_enable = true

[keystone_authtoken]
www_authenticate_uri = http://10.0.0.5:5000
auth_url = http://10.0.0.5:5000
username = qinling
password = p#ss;w0rd\
project_name = service

[database]
connection = mysql+pymysql://qinling:secret@10.0.0.5:3306/qinling?charset=utf8mb4

[etcd]
embedded = false
host = 10.0.0.5

[oslo_policy]
policy_file = policy.json
`))
	f.Add([]byte("[DEFAULT]\nrpc_response_timeout = 90\n[engine]\nfunction_service_expiration = 1h\n[local_orchestrator]\nnetwork_runtimes = a, b,,\n[pecan]\nauth_enable = false\n"))
	f.Add([]byte("[api]\nport = \nmax_body_size = 99999999999999999999\n[DEFAULT]\ndebug = maybe\n"))
	f.Add([]byte("[pecan]\nauth_enable = off\n[cors]\nallowed_origin = \"https://a.example\"\n[kubernetes]\nrequest_timeout = `15s`\n"))
	f.Add([]byte("[pecan]\nauth_enable: 0\n[resource_limits]\nmax_timeout = 600\n[DEFAULT]\nstate_path = ~/q\n"))
	f.Add([]byte("\xef\xbb\xbf[DEFAULT]\nlog_format = json\n[[x]]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "in.conf")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load([]string{path})
		if err != nil {
			if msg := err.Error(); !strings.Contains(msg, path) && !namesOption(msg) {
				t.Fatalf("error %q names neither the file nor an option", msg)
			}
			return
		}
		out, ok := renderINI(c)
		if !ok {
			return // a value INI cannot carry on one plain line
		}
		again := filepath.Join(dir, "again.conf")
		if err := os.WriteFile(again, out, 0o600); err != nil {
			t.Fatal(err)
		}
		c2, err := Load([]string{again})
		if err != nil {
			t.Fatalf("%q loaded; written back as\n%s\nit does not: %v", data, out, err)
		}
		c.warnings, c.set, c2.warnings, c2.set = nil, nil, nil, nil
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("%q loaded to\n%+v\nwritten back as\n%s\nit loads to\n%+v", data, *c, out, *c2)
		}
	})
}

// renderINI writes every option of c as "name = value" under its section;
// ok is false when a string value could not survive a plain INI line
// (line breaks, or quotes INI would strip).
func renderINI(c *Config) ([]byte, bool) {
	var b strings.Builder
	v := reflect.ValueOf(c).Elem()
	section := ""
	for _, o := range options() {
		if o.section != section {
			section = o.section
			b.WriteString("[" + section + "]\n")
		}
		fv := v.FieldByIndex(o.index)
		var s string
		switch {
		case o.typ == durationType:
			s = time.Duration(fv.Int()).String()
		case fv.Kind() == reflect.String:
			s = fv.String()
		case fv.Kind() == reflect.Int, fv.Kind() == reflect.Int64:
			s = strconv.FormatInt(fv.Int(), 10)
		case fv.Kind() == reflect.Bool:
			s = strconv.FormatBool(fv.Bool())
		case fv.Kind() == reflect.Slice:
			s = strings.Join(fv.Interface().([]string), ",")
		}
		if !plainINIValue(s) {
			return nil, false
		}
		b.WriteString(o.name + " = " + s + "\n")
	}
	return []byte(b.String()), true
}

func namesOption(msg string) bool {
	for _, o := range options() {
		if strings.Contains(msg, o.key()) {
			return true
		}
	}
	return false
}

func plainINIValue(s string) bool {
	if strings.ContainsAny(s, "\r\n") {
		return false
	}
	if s != "" && strings.ContainsRune("\"'`", rune(s[0])) {
		return false
	}
	return true
}
