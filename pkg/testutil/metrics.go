package testutil

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// Series is Prometheus's text output read into one value per series, keyed
// by the series as Prometheus writes it: name{label="value",...} with the
// labels sorted, or the bare name. Histograms give their _count and _sum.
type Series map[string]float64

// ParseMetrics reads Prometheus's text format.
func ParseMetrics(t testing.TB, text []byte) Series {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	require.NoError(t, err, "metrics in Prometheus's text format")
	out := Series{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.GetCounter() != nil:
				out[SeriesKey(name, labels)] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[SeriesKey(name, labels)] = m.GetGauge().GetValue()
			case m.GetUntyped() != nil:
				out[SeriesKey(name, labels)] = m.GetUntyped().GetValue()
			case m.GetHistogram() != nil:
				out[SeriesKey(name+"_count", labels)] = float64(m.GetHistogram().GetSampleCount())
				out[SeriesKey(name+"_sum", labels)] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// SeriesKey is the key of a series in Series: alternating label names and
// values, in any order.
func SeriesKey(name string, labels map[string]string) string {
	if len(labels) == 0 {
		return name
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + `="` + labels[k] + `"`
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

// Sum adds up the series of name whose labels include match.
func (s Series) Sum(name string, match map[string]string) float64 {
	var total float64
	for key, v := range s {
		if key != name && !strings.HasPrefix(key, name+"{") {
			continue
		}
		ok := true
		for k, want := range match {
			pair := k + `="` + want + `"`
			if !strings.Contains(key, "{"+pair) && !strings.Contains(key, ","+pair) {
				ok = false
			}
		}
		if ok {
			total += v
		}
	}
	return total
}

// ScrapeMetrics GETs a /metrics URL (with a bearer token when given) and
// returns its raw text, which must be Prometheus's text format.
func ScrapeMetrics(t testing.TB, url, token string) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s: %s", url, body)
	require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain"), "Content-Type %q", resp.Header.Get("Content-Type"))
	return body
}

// Promtool runs `promtool check metrics` (Debian's prometheus package) on
// text and fails the test with its findings; it fails too when promtool is
// missing, since CI installs it.
func Promtool(t testing.TB, text []byte) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		path = "/usr/bin/promtool"
		_, err = os.Stat(path)
	}
	require.NoError(t, err, "promtool (apt-get install prometheus)")
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool check metrics:\n%s", out)
}
