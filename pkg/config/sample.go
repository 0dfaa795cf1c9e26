package config

import (
	"bufio"
	"io"
	"strings"
)

// sampleWidth is oslo-config-generator's line width.
const sampleWidth = 79

const sampleHeader = `# qinling-go configuration sample.
#
# Generated from pkg/config by scripts/genconfig.sh; do not edit by hand.
# Every option is listed, commented out, with its default. With several
# --config-file arguments a later file wins for an option both set.
# Booleans take true/false, yes/no, on/off or 1/0; lists are comma-separated;
# durations take integer seconds (as upstream's options) or a Go duration
# such as 500ms or 5m. A leading ~ in a path is the user's home directory.
`

// WriteSample writes the oslo-style sample configuration: every section and
// option in declaration order, the help wrapped as comments ending in the
// type, the accepted values, and "#option = default" commented out. It is
// built from the tags only, never from the running machine (no $HOME), so
// the checked-in etc/qinling.conf.sample is the same everywhere. Secrets
// show an empty default.
func WriteSample(w io.Writer) error {
	bw := bufio.NewWriter(w)
	bw.WriteString(sampleHeader)
	section := ""
	for _, o := range options() {
		if o.section != section {
			section = o.section
			bw.WriteString("\n[" + section + "]\n")
		}
		bw.WriteString("\n")
		kind := typeName(o.typ) + " value"
		if o.path {
			kind = "path value"
		}
		if o.secret {
			kind += ", secret: masked in logs"
		}
		writeWrapped(bw, o.help+" ("+kind+")")
		if len(o.choices) > 0 {
			bw.WriteString("# Possible values:\n")
			for _, c := range o.choices {
				bw.WriteString("#     " + c + "\n")
			}
		}
		def := o.def
		if o.secret {
			def = ""
		}
		bw.WriteString(strings.TrimRight("#"+o.name+" = "+def, " ") + "\n")
	}
	return bw.Flush()
}

// writeWrapped writes text as "# " comment lines of at most sampleWidth
// characters; a word longer than a line gets a line of its own.
func writeWrapped(w *bufio.Writer, text string) {
	line := "#"
	for _, word := range strings.Fields(text) {
		if line != "#" && len(line)+1+len(word) > sampleWidth {
			w.WriteString(line + "\n")
			line = "#"
		}
		line += " " + word
	}
	if line != "#" {
		w.WriteString(line + "\n")
	}
}
