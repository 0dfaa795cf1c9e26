package rabbit

import (
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/qinling-go/qinling/pkg/config"
)

// broker is one host of a transport URL, with the credentials to use there.
type broker struct {
	Host     string // name or address; an IPv6 address without brackets
	Port     int
	User     string
	Password string
	Vhost    string
}

func (b broker) addr() string { return net.JoinHostPort(b.Host, strconv.Itoa(b.Port)) }

// String names the broker in logs and messages; it never shows the password.
func (b broker) String() string { return b.User + "@" + b.addr() }

// parseURL reads oslo.messaging's transport URL,
//
//	rabbit://user:pass@host1:5672,user:pass@host2:5672/vhost
//
// the way oslo's TransportURL.parse does: hosts are separated by commas and
// each carries its own credentials (percent-encoded; the last @ separates
// them from the host, the first : the user from the password); the path
// after the hosts is the percent-encoded virtual host, "/" when empty. A
// host without credentials gets AMQP's guest:guest. amqp:// is accepted too,
// with the same syntax. Errors show the URL with its passwords masked.
func parseURL(raw string) ([]broker, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("rabbit: transport URL %q: %s", config.RedactURL(raw), fmt.Sprintf(format, args...))
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, bad("want rabbit://user:pass@host:5672/vhost")
	}
	if scheme != "rabbit" && scheme != "amqp" {
		return nil, bad("unsupported scheme %q (want rabbit or amqp)", scheme)
	}
	// As in urlparse, the host list ends at the first /, ? or #: those
	// characters must be percent-encoded in a password.
	netloc, tail := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		netloc, tail = rest[:i], rest[i:]
	}
	tail, _, _ = strings.Cut(tail, "#")
	path, query, _ := strings.Cut(tail, "?")
	if query != "" {
		// oslo takes driver options (ssl=1, ...) here. Ignoring one could mean
		// plain TCP where the operator asked for TLS, so refuse instead.
		q, err := url.ParseQuery(query)
		if err != nil {
			return nil, bad("malformed query")
		}
		keys := make([]string, 0, len(q))
		for k := range q {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return nil, bad("query options are not supported (%s)", strings.Join(keys, ", "))
	}
	vhost := "/"
	if strings.HasPrefix(path, "/") {
		v, err := url.PathUnescape(path[1:])
		if err != nil {
			return nil, bad("malformed virtual host: %v", err)
		}
		if v != "" {
			vhost = v
		}
	}
	var out []broker
	for i, h := range strings.Split(netloc, ",") {
		if h == "" {
			continue
		}
		b, err := parseHost(h)
		if err != nil {
			return nil, bad("host %d: %v", i+1, err)
		}
		b.Vhost = vhost
		out = append(out, b)
	}
	if len(out) == 0 {
		return nil, bad("no host")
	}
	return out, nil
}

// parseHost reads [user[:password]@]host[:port]. Its errors never quote the
// credentials.
func parseHost(h string) (broker, error) {
	b := broker{User: "guest", Password: "guest", Port: 5672}
	hostport := h
	if at := strings.LastIndex(h, "@"); at >= 0 {
		var cred string
		cred, hostport = h[:at], h[at+1:]
		user, pass, _ := strings.Cut(cred, ":")
		var err error
		if b.User, err = url.PathUnescape(user); err != nil {
			return b, fmt.Errorf("malformed percent-encoding in the user name")
		}
		if b.Password, err = url.PathUnescape(pass); err != nil {
			return b, fmt.Errorf("malformed percent-encoding in the password")
		}
	}
	port := ""
	if strings.HasPrefix(hostport, "[") {
		end := strings.Index(hostport, "]")
		if end < 0 {
			return b, fmt.Errorf("unterminated IPv6 address %q", hostport)
		}
		b.Host = hostport[1:end]
		after := hostport[end+1:]
		if after != "" {
			p, ok := strings.CutPrefix(after, ":")
			if !ok {
				return b, fmt.Errorf("unexpected %q after the IPv6 address", after)
			}
			port = p
		}
	} else {
		b.Host, port, _ = strings.Cut(hostport, ":")
	}
	if b.Host == "" {
		return b, fmt.Errorf("no host name")
	}
	if port != "" {
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 {
			return b, fmt.Errorf("bad port %q", port)
		}
		b.Port = p
	}
	return b, nil
}
