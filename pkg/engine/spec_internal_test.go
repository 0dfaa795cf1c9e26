package engine

import (
	"context"
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/reqctx"
	"github.com/qinling-go/qinling/storage/swiftcode/swiftcodetest"
)

// A swift function's workers get the bytes its row recorded, read through
// the owner's trust; anything else is refused with the reason.
func TestSpec_SwiftPackage(t *testing.T) {
	ctx := context.Background()
	src := swiftcodetest.New(1 << 20)
	one, two := []byte("zip one"), []byte("zip two")
	etag := src.Put("functions", "hello.zip", one)
	trust, err := src.CreateTrust(ctx, reqctx.Identity{UserID: "alice"})
	require.NoError(t, err)
	fn := func(trustID, etag string) *db.Function {
		f := &db.Function{Base: db.Base{ID: "f1", ProjectID: "p"}, TrustID: &trustID}
		f.SetCode(db.Code{Source: db.SourceSwift, Swift: &db.SwiftCode{Container: "functions", Object: "hello.zip", ETag: etag}})
		return f
	}
	for _, tc := range []struct {
		name    string
		swift   bool
		f       *db.Function
		replace bool
		want    []byte
		kind    errdefs.Kind
	}{
		{name: "recorded bytes through the trust", swift: true, f: fn(trust, etag), want: one},
		{name: "object replaced since", swift: true, f: fn(trust, etag), replace: true, kind: errdefs.KindConflict},
		{name: "trust gone", swift: true, f: fn("trust-deleted", etag), kind: errdefs.KindForbidden},
		{name: "engine without Keystone", f: fn(trust, etag), kind: errdefs.KindInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src.Put("functions", "hello.zip", one)
			if tc.replace {
				src.Put("functions", "hello.zip", two)
			}
			e := &Engine{}
			if tc.swift {
				e.opts.Swift = src
			}
			p := e.spec(tc.f, 0).Package
			require.Equal(t, etag, p.MD5, "an ordinary object's ETag is the MD5 the orchestrator checks")
			rc, err := p.Open(ctx)
			if tc.kind != "" {
				require.Equal(t, tc.kind, errdefs.KindOf(err), "%v", err)
				return
			}
			require.NoError(t, err)
			defer rc.Close()
			got, err := io.ReadAll(rc)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}
