package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/ini.v1"
)

// option is one declared option, found by reflection over Config so that
// the struct tags stay the only place an option is described.
type option struct {
	section string // INI section, "DEFAULT" or e.g. "api"
	name    string // option name inside the section
	index   []int  // field path from Config, for FieldByIndex
	typ     reflect.Type
	def     string // `default` tag, verbatim
	help    string
	choices []string
	secret  bool
	path    bool
}

// key is how messages name the option: "engine.function_concurrency".
func (o option) key() string { return o.section + "." + o.name }

var durationType = reflect.TypeFor[time.Duration]()

// options lists every declared option in declaration order. A malformed
// declaration is a programming error, so it panics (and the unit tests,
// which all call Default, catch it before anything ships).
var options = sync.OnceValue(func() []option {
	var opts []option
	ct := reflect.TypeFor[Config]()
	for i := range ct.NumField() {
		sf := ct.Field(i)
		if !sf.IsExported() {
			continue
		}
		section := sf.Tag.Get("ini")
		if section == "" || sf.Type.Kind() != reflect.Struct {
			panic(fmt.Sprintf("config: Config.%s needs an ini tag and a struct type", sf.Name))
		}
		for j := range sf.Type.NumField() {
			of := sf.Type.Field(j)
			o := option{
				section: section,
				name:    of.Tag.Get("ini"),
				index:   []int{i, j},
				typ:     of.Type,
				def:     of.Tag.Get("default"),
				help:    of.Tag.Get("help"),
				secret:  of.Tag.Get("secret") == "true",
				path:    of.Tag.Get("path") == "true",
			}
			if c := of.Tag.Get("choices"); c != "" {
				o.choices = strings.Split(c, ",")
			}
			if o.name == "" || o.help == "" {
				panic(fmt.Sprintf("config: %s.%s needs ini and help tags", sf.Name, of.Name))
			}
			if typeName(o.typ) == "" {
				panic(fmt.Sprintf("config: %s has unsupported type %s", o.key(), o.typ))
			}
			opts = append(opts, o)
		}
	}
	return opts
})

// optionsBySection indexes options for the loader.
var optionsBySection = sync.OnceValue(func() map[string]map[string]option {
	m := make(map[string]map[string]option)
	for _, o := range options() {
		if m[o.section] == nil {
			m[o.section] = make(map[string]option)
		}
		m[o.section][o.name] = o
	}
	return m
})

// typeName is the oslo-style type shown in the sample; "" means the loader
// cannot decode the type.
func typeName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "duration"
	case t.Kind() == reflect.String:
		return "string"
	case t.Kind() == reflect.Int, t.Kind() == reflect.Int64:
		return "integer"
	case t.Kind() == reflect.Bool:
		return "boolean"
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		return "list"
	}
	return ""
}

// Default returns the configuration made only of the `default` tags, with
// ~ in path options expanded. It panics if a tag does not parse, which the
// unit tests rule out.
func Default() *Config {
	c := &Config{}
	v := reflect.ValueOf(c).Elem()
	for _, o := range options() {
		if err := decode(v.FieldByIndex(o.index), o.def); err != nil {
			panic(fmt.Sprintf("config: default of %s %q: %v", o.key(), o.def, err))
		}
	}
	c.expandPaths()
	return c
}

// iniOptions make gopkg.in/ini.v1 read files the way oslo.config does.
var iniOptions = ini.LoadOptions{
	// oslo keeps '#' and ';' inside values; passwords often contain them.
	IgnoreInlineComment: true,
	// oslo has no backslash continuation; a password may end in '\'.
	IgnoreContinuation: true,
}

// Override changes a loaded configuration before it is validated; command
// line flags and modes go here, e.g. --all-in-one turning auth off unless a
// file set it:
//
//	func(c *config.Config) {
//		if !c.IsSet("pecan.auth_enable") {
//			c.Pecan.AuthEnable = false
//		}
//	}
type Override func(*Config)

// Load builds the configuration: defaults, then each file in order (a later
// file wins for an option both set), then the overrides in order, then ~
// expansion, then Validate; the precedence is therefore defaults < files <
// overrides. Files are oslo-style INI. Sections and options qinling-go does
// not know (upstream files carry [oslo_policy], [oslo_messaging_rabbit],
// ...) are skipped and reported by Warnings, never an error. An integer,
// boolean or duration set to an empty value goes back to its default, as an
// unset oslo option does. Values are taken literally: oslo's $option
// substitution is not done. Every type error in every file is reported.
func Load(files []string, overrides ...Override) (*Config, error) {
	c := Default()
	var errs []error
	for _, f := range files {
		if err := c.loadFile(f); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, o := range overrides {
		o(c)
	}
	c.expandPaths()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Warnings lists what Load ignored (unknown sections and options), one
// line each naming the file, for the caller to log at startup.
func (c *Config) Warnings() []string {
	return append([]string(nil), c.warnings...)
}

// IsSet reports whether a loaded file set the option key ("pecan.auth_enable"),
// for callers whose default depends on the mode (--all-in-one turns auth off
// unless a file asks for it).
func (c *Config) IsSet(key string) bool {
	return c.set[key]
}

// loadFile decodes one file onto c, collecting every type error.
func (c *Config) loadFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	f, err := ini.LoadSources(iniOptions, data)
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	known := optionsBySection()
	v := reflect.ValueOf(c).Elem()
	var errs []error
	for _, sec := range f.Sections() {
		opts, ok := known[sec.Name()]
		if !ok {
			c.warnings = append(c.warnings, fmt.Sprintf("%s: unknown section [%s] ignored", path, sec.Name()))
			continue
		}
		// Only the section's own keys: ini.v1's lookups would fall back to
		// [DEFAULT] or a parent section, which oslo never does.
		for _, k := range sec.Keys() {
			o, ok := opts[k.Name()]
			if !ok {
				c.warnings = append(c.warnings, fmt.Sprintf("%s: unknown option %s.%s ignored", path, sec.Name(), k.Name()))
				continue
			}
			// Value, not String: String expands ini.v1's %(name)s
			// references, again reaching into [DEFAULT].
			raw := strings.TrimSpace(k.Value())
			if raw == "" && (o.typ == durationType || o.typ.Kind() == reflect.Int ||
				o.typ.Kind() == reflect.Int64 || o.typ.Kind() == reflect.Bool) {
				// oslo reads an empty number or boolean as unset; an empty
				// string or list is a real value (e.g. clearing a list).
				raw = o.def
			}
			if err := decode(v.FieldByIndex(o.index), raw); err != nil {
				errs = append(errs, fmt.Errorf("%s: %s %s: %w", path, o.key(), quoteValue(o, raw), err))
				continue
			}
			if c.set == nil {
				c.set = make(map[string]bool)
			}
			c.set[o.key()] = true
		}
	}
	return errors.Join(errs...)
}

// decode parses raw into the field v. Errors say what was wanted; the
// caller adds the option's name.
func decode(v reflect.Value, raw string) error {
	raw = strings.TrimSpace(raw)
	switch t := v.Type(); {
	case t == durationType:
		d, err := parseDuration(raw)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
	case t.Kind() == reflect.String:
		v.SetString(raw)
	case t.Kind() == reflect.Int, t.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, t.Bits())
		if errors.Is(err, strconv.ErrRange) {
			return errors.New("integer out of range")
		}
		if err != nil {
			return errors.New("not an integer")
		}
		v.SetInt(n)
	case t.Kind() == reflect.Bool:
		b, err := parseBool(raw)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case t.Kind() == reflect.Slice:
		v.Set(reflect.ValueOf(parseList(raw)))
	default:
		return fmt.Errorf("unsupported type %s", t)
	}
	return nil
}

// parseBool accepts oslo.config's spellings, case-insensitively.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "true", "yes", "on", "1":
		return true, nil
	case "false", "no", "off", "0":
		return false, nil
	}
	return false, errors.New("not a boolean (want true/false, yes/no, on/off or 1/0)")
}

// parseDuration reads a bare integer as seconds, as the upstream options
// (IntOpt seconds) were written, and anything else as a Go duration.
func parseDuration(s string) (time.Duration, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n > math.MaxInt64/int64(time.Second) || n < math.MinInt64/int64(time.Second) {
			return 0, errors.New("duration out of range")
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("not a duration (want integer seconds or a Go duration such as 500ms or 5m)")
	}
	return d, nil
}

// parseList splits a comma-separated value; empty items are dropped so a
// trailing comma is harmless, and an empty value is nil.
func parseList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// quoteValue renders a value for an error message without leaking it.
func quoteValue(o option, raw string) string {
	if o.secret && raw != "" {
		return `"***"`
	}
	return strconv.Quote(redactURL(raw))
}

// expandPaths replaces a leading ~ in path options with the home directory.
// Without a home directory the ~ stays, and Validate reports it.
func (c *Config) expandPaths() {
	v := reflect.ValueOf(c).Elem()
	for _, o := range options() {
		if o.path {
			f := v.FieldByIndex(o.index)
			f.SetString(expandHome(f.String()))
		}
	}
}

// expandHome expands "~" and "~/..." only; "~user" is left alone, since
// looking up other users' homes is not worth a dependency on os/user.
func expandHome(p string) string {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return p
	}
	return home + p[1:]
}
