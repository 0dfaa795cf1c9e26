package testutil

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strconv"
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

// MetricsURLs are the target's /metrics endpoints: the all-in-one's API
// (which includes its engine's), or the stack's API and each engine's
// (devstack: QINLING_ENGINE_METRICS_PORT + N - 1 for engine-N).
func (tg *Target) MetricsURLs(t testing.TB) []string {
	t.Helper()
	urls := []string{tg.URL + "/metrics"}
	if !tg.Real() {
		return urls
	}
	base, err := strconv.Atoi(tg.Stack.Env["QINLING_ENGINE_METRICS_PORT"])
	require.NoError(t, err, "stack.env has no QINLING_ENGINE_METRICS_PORT: a stack from before metrics; run devstack/stack.sh again")
	for i := range tg.Stack.Engines {
		urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d/metrics", base+i))
	}
	return urls
}

// ScrapeAll reads every /metrics of the target and adds the series up (a
// series that several processes report is their sum), after checking each
// output with promtool when check is set.
func (tg *Target) ScrapeAll(t testing.TB, check bool) Series {
	t.Helper()
	total := Series{}
	for _, u := range tg.MetricsURLs(t) {
		text := ScrapeMetrics(t, u, "")
		if check {
			Promtool(t, text)
		}
		for k, v := range ParseMetrics(t, text) {
			total[k] += v
		}
	}
	return total
}

// PrometheusQuery asks the devstack stack's Prometheus (PROMETHEUS_URL in
// stack.env) for an instant PromQL query whose answer is one number; ok is
// false while it has no sample.
func (st *Stack) PrometheusQuery(query string) (value float64, ok bool, err error) {
	base := st.Env["PROMETHEUS_URL"]
	if base == "" {
		return 0, false, fmt.Errorf("stack.env has no PROMETHEUS_URL: run devstack/stack.sh with prometheus in ENABLED_SERVICES")
	}
	resp, err := keystoneClient.Get(base + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, false, fmt.Errorf("prometheus query %q: %w", query, err)
	}
	if body.Status != "success" {
		return 0, false, fmt.Errorf("prometheus query %q: %s", query, body.Error)
	}
	if len(body.Data.Result) == 0 {
		return 0, false, nil
	}
	s, _ := body.Data.Result[0].Value[1].(string)
	value, err = strconv.ParseFloat(s, 64)
	return value, err == nil, err
}
