package keystone_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/config"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/keystone"
	"github.com/qinling-go/qinling/pkg/keystone/keystonetest"
	"github.com/qinling-go/qinling/pkg/reqctx"
)

// clock is a settable time shared by a validator and the fake Keystone.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) now() time.Time                { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) advance(d time.Duration)       { c.ns.Add(int64(d)) }
func (c *clock) set(fake *keystonetest.Server) { fake.SetClock(c.now) }

func authCfg(uri string) config.KeystoneAuth {
	return config.KeystoneAuth{WWWAuthenticateURI: uri, TokenCacheSize: 100, TokenCacheTime: 5 * time.Minute}
}

// setup returns a fake Keystone with a member and an admin token, and a
// validator on the shared clock.
func setup(t *testing.T, cfg func(*config.KeystoneAuth), opts ...keystone.Option) (*keystonetest.Server, *keystone.Validator, *clock) {
	t.Helper()
	clk := newClock()
	fake := keystonetest.New(t)
	clk.set(fake)
	fake.Add("member-token", keystonetest.Token{ProjectID: "proj-a", UserID: "user-a", Roles: []string{"member", "reader"}})
	fake.Add("admin-token", keystonetest.Token{ProjectID: "proj-admin", UserID: "admin", Roles: []string{"admin", "member", "reader"}})
	c := authCfg(fake.URL)
	if cfg != nil {
		cfg(&c)
	}
	v, err := keystone.New(c, append([]keystone.Option{keystone.WithClock(clk.now)}, opts...)...)
	require.NoError(t, err)
	return fake, v, clk
}

func TestValidator_Validate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		prepare   func(fake *keystonetest.Server, clk *clock)
		token     string
		want      reqctx.Identity
		wantKind  errdefs.Kind
		wantMsg   string
		wantCalls int
	}{
		{
			name: "member token", token: "member-token", wantCalls: 1,
			want: reqctx.Identity{ProjectID: "proj-a", UserID: "user-a", Roles: []string{"member", "reader"}, AuthToken: "member-token", AuthEnabled: true},
		},
		{
			name: "admin token", token: "admin-token", wantCalls: 1,
			want: reqctx.Identity{ProjectID: "proj-admin", UserID: "admin", Roles: []string{"admin", "member", "reader"}, AuthToken: "admin-token", AuthEnabled: true},
		},
		{
			name: "missing token asks nobody", token: "",
			wantKind: errdefs.KindUnauthorized, wantMsg: "Failed to validate access token: Authentication required",
		},
		{
			name: "unknown token", token: "garbage", wantCalls: 1,
			wantKind: errdefs.KindUnauthorized, wantMsg: "Failed to validate access token: Auth token is invalid",
		},
		{
			name: "expired token (Keystone says 401)", token: "old", wantCalls: 1,
			prepare: func(fake *keystonetest.Server, clk *clock) {
				fake.Add("old", keystonetest.Token{ProjectID: "p", Roles: []string{"member"}, ExpiresAt: clk.now().Add(-time.Second)})
			},
			wantKind: errdefs.KindUnauthorized, wantMsg: "Failed to validate access token: Auth token is invalid",
		},
		{
			name: "expired by our clock though Keystone says 200", token: "skewed", wantCalls: 1,
			prepare: func(fake *keystonetest.Server, clk *clock) {
				fake.Add("skewed", keystonetest.Token{ProjectID: "p", ExpiresAt: clk.now().Add(-time.Minute), ClaimValid: true})
			},
			wantKind: errdefs.KindUnauthorized, wantMsg: "Failed to validate access token: Auth token is invalid",
		},
		{
			name: "unscoped token", token: "unscoped", wantCalls: 1,
			prepare: func(fake *keystonetest.Server, _ *clock) {
				fake.Add("unscoped", keystonetest.Token{UserID: "u"})
			},
			wantKind: errdefs.KindUnauthorized, wantMsg: "Failed to validate access token: Auth token is not scoped to a project",
		},
		{
			name: "Keystone 500", token: "member-token", wantCalls: 1,
			prepare:  func(fake *keystonetest.Server, _ *clock) { fake.FailWith(http.StatusInternalServerError) },
			wantKind: errdefs.KindUnavailable, wantMsg: "Identity service unavailable",
		},
		{
			name: "Keystone 503", token: "member-token", wantCalls: 1,
			prepare:  func(fake *keystonetest.Server, _ *clock) { fake.FailWith(http.StatusServiceUnavailable) },
			wantKind: errdefs.KindUnavailable, wantMsg: "Identity service unavailable",
		},
		{
			name: "Keystone refuses to validate (403)", token: "member-token", wantCalls: 1,
			prepare:  func(fake *keystonetest.Server, _ *clock) { fake.FailWith(http.StatusForbidden) },
			wantKind: errdefs.KindUnauthorized, wantMsg: "Failed to validate access token: Auth token is invalid",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake, v, clk := setup(t, nil)
			if tc.prepare != nil {
				tc.prepare(fake, clk)
			}
			id, err := v.Validate(context.Background(), tc.token)
			require.Equal(t, tc.wantCalls, fake.TotalCalls())
			if tc.wantKind != "" {
				require.Error(t, err)
				require.Equal(t, tc.wantKind, errdefs.KindOf(err))
				require.Equal(t, tc.wantMsg, errdefs.PublicMessage(err))
				require.Equal(t, reqctx.Identity{}, id)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, id)
			require.Equal(t, "/v3/auth/tokens", fake.LastPath())
		})
	}
}

func TestValidator_IsAdmin(t *testing.T) {
	t.Parallel()
	_, v, _ := setup(t, nil)
	member, err := v.Validate(context.Background(), "member-token")
	require.NoError(t, err)
	require.False(t, member.IsAdmin())
	admin, err := v.Validate(context.Background(), "admin-token")
	require.NoError(t, err)
	require.True(t, admin.IsAdmin())
}

func TestValidator_Unreachable(t *testing.T) {
	t.Parallel()
	dead := httptest.NewServer(http.NotFoundHandler())
	url := dead.URL
	dead.Close()
	v, err := keystone.New(authCfg(url), keystone.WithTimeout(2*time.Second))
	require.NoError(t, err)
	start := time.Now()
	_, err = v.Validate(context.Background(), "member-token")
	require.Equal(t, errdefs.KindUnavailable, errdefs.KindOf(err))
	require.Equal(t, http.StatusServiceUnavailable, errdefs.HTTPStatus(err))
	require.Equal(t, "Identity service unavailable", errdefs.PublicMessage(err))
	require.Less(t, time.Since(start), 2*time.Second)
}

func TestValidator_SlowKeystoneTimesOut(t *testing.T) {
	t.Parallel()
	fake, v, _ := setup(t, nil, keystone.WithTimeout(150*time.Millisecond))
	release := fake.Hold()
	defer release()
	start := time.Now()
	_, err := v.Validate(context.Background(), "member-token")
	require.Equal(t, errdefs.KindUnavailable, errdefs.KindOf(err))
	require.Less(t, time.Since(start), 2*time.Second, "bounded by the timeout, not Keystone")

	// The caller gave up, the validation did not: Keystone's late answer
	// serves the retry (joining the call still out, or from the cache),
	// without a second Keystone call.
	release()
	id, err := v.Validate(context.Background(), "member-token")
	require.NoError(t, err)
	require.Equal(t, "proj-a", id.ProjectID)
	require.Equal(t, 1, fake.Calls("member-token"))
}

func TestValidator_OutagesAreNotCached(t *testing.T) {
	t.Parallel()
	fake, v, _ := setup(t, nil)
	fake.FailWith(http.StatusServiceUnavailable)
	_, err := v.Validate(context.Background(), "member-token")
	require.Equal(t, errdefs.KindUnavailable, errdefs.KindOf(err))

	// Once Keystone answers again, so do we.
	fake.FailWith(0)
	_, err = v.Validate(context.Background(), "member-token")
	require.NoError(t, err)
}

func TestValidator_CallerGivesUp(t *testing.T) {
	t.Parallel()
	fake, v, _ := setup(t, nil)
	release := fake.Hold()
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := v.Validate(ctx, "member-token")
	require.Equal(t, errdefs.KindUnavailable, errdefs.KindOf(err))
}

func TestValidator_Cache(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  func(*config.KeystoneAuth)
		run  func(t *testing.T, fake *keystonetest.Server, v *keystone.Validator, clk *clock)
	}{
		{
			name: "N requests, one Keystone call",
			run: func(t *testing.T, fake *keystonetest.Server, v *keystone.Validator, _ *clock) {
				for range 50 {
					id, err := v.Validate(context.Background(), "member-token")
					require.NoError(t, err)
					require.Equal(t, "member-token", id.AuthToken, "each caller gets its own token back")
				}
				require.Equal(t, 1, fake.Calls("member-token"))
			},
		},
		{
			name: "cached roles cannot be changed by a caller",
			run: func(t *testing.T, _ *keystonetest.Server, v *keystone.Validator, _ *clock) {
				id, err := v.Validate(context.Background(), "member-token")
				require.NoError(t, err)
				id.Roles[0] = "admin"
				id, err = v.Validate(context.Background(), "member-token")
				require.NoError(t, err)
				require.Equal(t, []string{"member", "reader"}, id.Roles)
			},
		},
		{
			name: "invalid tokens are cached negatively for a short time",
			run: func(t *testing.T, fake *keystonetest.Server, v *keystone.Validator, clk *clock) {
				for range 20 {
					_, err := v.Validate(context.Background(), "garbage")
					require.ErrorIs(t, err, errdefs.ErrUnauthorized)
				}
				require.Equal(t, 1, fake.Calls("garbage"))
				clk.advance(keystone.DefaultNegativeTTL + time.Second)
				_, err := v.Validate(context.Background(), "garbage")
				require.ErrorIs(t, err, errdefs.ErrUnauthorized)
				require.Equal(t, 2, fake.Calls("garbage"))
			},
		},
		{
			name: "a token that becomes valid is seen after the negative TTL",
			run: func(t *testing.T, fake *keystonetest.Server, v *keystone.Validator, clk *clock) {
				_, err := v.Validate(context.Background(), "late")
				require.ErrorIs(t, err, errdefs.ErrUnauthorized)
				fake.Add("late", keystonetest.Token{ProjectID: "p"})
				clk.advance(keystone.DefaultNegativeTTL + time.Second)
				id, err := v.Validate(context.Background(), "late")
				require.NoError(t, err)
				require.Equal(t, "p", id.ProjectID)
			},
		},
		{
			name: "token expiry ends caching before token_cache_time",
			run: func(t *testing.T, fake *keystonetest.Server, v *keystone.Validator, clk *clock) {
				fake.Add("short", keystonetest.Token{ProjectID: "p", ExpiresAt: clk.now().Add(time.Minute)})
				_, err := v.Validate(context.Background(), "short")
				require.NoError(t, err)
				clk.advance(59 * time.Second)
				_, err = v.Validate(context.Background(), "short")
				require.NoError(t, err)
				require.Equal(t, 1, fake.Calls("short"))
				clk.advance(2 * time.Second)
				_, err = v.Validate(context.Background(), "short")
				require.Equal(t, "Failed to validate access token: Auth token is invalid", errdefs.PublicMessage(err))
				require.Equal(t, 2, fake.Calls("short"))
			},
		},
		{
			name: "token_cache_time ends caching before expiry",
			cfg:  func(c *config.KeystoneAuth) { c.TokenCacheTime = 30 * time.Second },
			run: func(t *testing.T, fake *keystonetest.Server, v *keystone.Validator, clk *clock) {
				_, err := v.Validate(context.Background(), "member-token")
				require.NoError(t, err)
				clk.advance(29 * time.Second)
				_, err = v.Validate(context.Background(), "member-token")
				require.NoError(t, err)
				require.Equal(t, 1, fake.Calls("member-token"))
				clk.advance(2 * time.Second)
				_, err = v.Validate(context.Background(), "member-token")
				require.NoError(t, err)
				require.Equal(t, 2, fake.Calls("member-token"))
			},
		},
		{
			name: "size bound evicts the least recently used",
			cfg:  func(c *config.KeystoneAuth) { c.TokenCacheSize = 2 },
			run: func(t *testing.T, fake *keystonetest.Server, v *keystone.Validator, _ *clock) {
				fake.Add("c-token", keystonetest.Token{ProjectID: "p"})
				for _, tok := range []string{"member-token", "admin-token", "member-token", "c-token"} {
					_, err := v.Validate(context.Background(), tok)
					require.NoError(t, err)
				}
				// admin-token was the least recently used when c-token came in.
				_, err := v.Validate(context.Background(), "member-token")
				require.NoError(t, err)
				require.Equal(t, 1, fake.Calls("member-token"))
				_, err = v.Validate(context.Background(), "admin-token")
				require.NoError(t, err)
				require.Equal(t, 2, fake.Calls("admin-token"))
			},
		},
		{
			name: "a flood of bad tokens does not evict good ones",
			cfg:  func(c *config.KeystoneAuth) { c.TokenCacheSize = 2 },
			run: func(t *testing.T, fake *keystonetest.Server, v *keystone.Validator, _ *clock) {
				_, err := v.Validate(context.Background(), "member-token")
				require.NoError(t, err)
				for i := range 10 {
					_, err := v.Validate(context.Background(), "bad-"+string(rune('a'+i)))
					require.Error(t, err)
				}
				_, err = v.Validate(context.Background(), "member-token")
				require.NoError(t, err)
				require.Equal(t, 1, fake.Calls("member-token"))
			},
		},
		{
			name: "cache size 0 turns caching off",
			cfg:  func(c *config.KeystoneAuth) { c.TokenCacheSize = 0 },
			run: func(t *testing.T, fake *keystonetest.Server, v *keystone.Validator, _ *clock) {
				for range 3 {
					_, err := v.Validate(context.Background(), "member-token")
					require.NoError(t, err)
				}
				require.Equal(t, 3, fake.Calls("member-token"))
			},
		},
		{
			name: "cache time 0 turns positive caching off",
			cfg:  func(c *config.KeystoneAuth) { c.TokenCacheTime = 0 },
			run: func(t *testing.T, fake *keystonetest.Server, v *keystone.Validator, _ *clock) {
				for range 3 {
					_, err := v.Validate(context.Background(), "member-token")
					require.NoError(t, err)
				}
				require.Equal(t, 3, fake.Calls("member-token"))
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake, v, clk := setup(t, tc.cfg)
			tc.run(t, fake, v, clk)
		})
	}
}

// TestValidator_Singleflight checks that concurrent validations of one
// token share one Keystone call, with the cache off so that only the
// singleflight can explain it.
func TestValidator_Singleflight(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		token string
		ok    bool
	}{
		{name: "valid token", token: "member-token", ok: true},
		{name: "invalid token", token: "garbage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake, v, _ := setup(t, func(c *config.KeystoneAuth) { c.TokenCacheSize = 0 })
			release := fake.Hold()
			defer release()
			const n = 20
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { _, errs[i] = v.Validate(context.Background(), tc.token) })
			}
			<-fake.Arrived()
			time.Sleep(100 * time.Millisecond) // let the others join the flight
			release()
			wg.Wait()
			require.Equal(t, 1, fake.Calls(tc.token))
			for _, err := range errs {
				if tc.ok {
					require.NoError(t, err)
				} else {
					require.ErrorIs(t, err, errdefs.ErrUnauthorized)
				}
			}
		})
	}
}

func TestValidator_Endpoint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, suffix string }{
		{name: "bare", suffix: ""},
		{name: "trailing slash", suffix: "/"},
		{name: "with v3", suffix: "/v3"},
		{name: "with v3 and slash", suffix: "/v3/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := keystonetest.New(t)
			fake.Add("tok", keystonetest.Token{ProjectID: "p"})
			v, err := keystone.New(authCfg(fake.URL + tc.suffix))
			require.NoError(t, err)
			require.Equal(t, fake.URL+"/v3/", v.Endpoint())
			_, err = v.Validate(context.Background(), "tok")
			require.NoError(t, err)
			require.Equal(t, "/v3/auth/tokens", fake.LastPath())
		})
	}
	t.Run("path prefix (devstack's /identity)", func(t *testing.T) {
		t.Parallel()
		v, err := keystone.New(authCfg("http://127.0.0.1:1/identity/v3"))
		require.NoError(t, err)
		require.Equal(t, "http://127.0.0.1:1/identity/v3/", v.Endpoint())
	})
	t.Run("missing URI", func(t *testing.T) {
		t.Parallel()
		_, err := keystone.New(authCfg(""))
		require.ErrorContains(t, err, "keystone_authtoken.www_authenticate_uri")
	})
}

func TestValidator_Authenticate(t *testing.T) {
	t.Parallel()
	fake, v, _ := setup(t, nil)
	for _, tc := range []struct {
		name, header string
		wantProject  string
		wantMsg      string
	}{
		{name: "no header", wantMsg: "Failed to validate access token: Authentication required"},
		{name: "blank header", header: "  ", wantMsg: "Failed to validate access token: Authentication required"},
		{name: "member", header: "member-token", wantProject: "proj-a"},
		{name: "garbage", header: "nope", wantMsg: "Failed to validate access token: Auth token is invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/v1/functions", nil)
			if tc.header != "" {
				r.Header.Set("X-Auth-Token", tc.header)
			}
			id, err := v.Authenticate(r)
			if tc.wantMsg != "" {
				require.Equal(t, http.StatusUnauthorized, errdefs.HTTPStatus(err))
				require.Equal(t, tc.wantMsg, errdefs.PublicMessage(err))
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantProject, id.ProjectID)
		})
	}
	require.Equal(t, `Keystone uri="`+fake.URL+`"`, v.Challenge())
}
