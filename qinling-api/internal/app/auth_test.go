package app

import (
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/config"
	"github.com/qinling-go/qinling/pkg/keystone"
	"github.com/qinling-go/qinling/qinling-api/internal/api"
)

func TestAuthenticator(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		name    string
		change  func(*config.Config)
		want    any
		wantErr string
	}{
		{name: "auth off is no-auth", change: func(c *config.Config) { c.Pecan.AuthEnable = false }, want: api.NoAuth{}},
		{name: "auth on validates Keystone tokens", change: func(c *config.Config) {
			c.Keystone.WWWAuthenticateURI = "http://127.0.0.1:5000/v3"
		}, want: &keystone.Validator{}},
		{name: "auth on needs Keystone", change: func(c *config.Config) { c.Keystone.WWWAuthenticateURI = "" },
			wantErr: "keystone_authtoken.www_authenticate_uri"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := config.Default()
			tc.change(c)
			got, err := authenticator(c, log)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.IsType(t, tc.want, got)
		})
	}
}
