package config

import (
	"log/slog"
	"reflect"
	"strings"
	"time"
)

// redacted replaces a secret in logs and messages.
const redacted = "***"

// LogValue renders the effective configuration for the startup log line,
// one group per section, e.g. slog.Info("effective config", "config", cfg).
// Options tagged secret are masked (an empty secret stays empty, so an
// operator can see it is unset), and so is the password inside any URL
// value (transport_url, database connection).
func (c *Config) LogValue() slog.Value {
	cv := reflect.ValueOf(c).Elem()
	var sections []slog.Attr
	var attrs []slog.Attr
	section := ""
	flush := func() {
		if len(attrs) > 0 {
			sections = append(sections, slog.Attr{Key: section, Value: slog.GroupValue(attrs...)})
		}
		attrs = nil
	}
	for _, o := range options() {
		if o.section != section {
			flush()
			section = o.section
		}
		f := cv.FieldByIndex(o.index)
		var a slog.Attr
		switch {
		case o.typ == durationType:
			a = slog.Duration(o.name, time.Duration(f.Int()))
		case f.Kind() == reflect.String:
			s := redactURL(f.String())
			if o.secret && s != "" {
				s = redacted
			}
			a = slog.String(o.name, s)
		case f.Kind() == reflect.Int, f.Kind() == reflect.Int64:
			a = slog.Int64(o.name, f.Int())
		case f.Kind() == reflect.Bool:
			a = slog.Bool(o.name, f.Bool())
		default: // []string, written as in the file
			a = slog.String(o.name, strings.Join(f.Interface().([]string), ","))
		}
		attrs = append(attrs, a)
	}
	flush()
	return slog.GroupValue(sections...)
}

// redactURL masks the password of every user:password@ in a URL, including
// oslo.messaging's multi-host form rabbit://u1:p1@h1,u2:p2@h2/. It works on
// the text rather than net/url so that a malformed URL, which url.Parse
// rejects, is still masked. Values without "://" are returned unchanged.
func redactURL(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return s
	}
	// The authority ends at the first '/', '?' or '#' after the last '@',
	// so a password with those characters unescaped is still covered.
	end := len(rest)
	if i := strings.IndexAny(rest[at:], "/?#"); i >= 0 {
		end = at + i
	}
	entries := strings.Split(rest[:end], ",")
	last := -1 // last host entry carrying credentials
	for i, e := range entries {
		if strings.Contains(e, "@") {
			last = i
		}
	}
	for i, e := range entries {
		j := strings.LastIndex(e, "@")
		if j < 0 {
			if i < last {
				// A comma inside a password split it across entries; the
				// entries can no longer be told apart, so mask them all.
				return scheme + "://" + redacted + rest[at:]
			}
			continue
		}
		if user, _, hasPass := strings.Cut(e[:j], ":"); hasPass {
			entries[i] = user + ":" + redacted + e[j:]
		}
	}
	return scheme + "://" + strings.Join(entries, ",") + rest[end:]
}
