package db_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/db"
)

// TestClaimOutbox: senders claim batches of the outbox in one statement;
// each message goes to one sender while its claim holds, a sender gets its
// own claims again (at once, too: MySQL counts a row its claim did not
// change as not updated), and a lapsed claim is anyone's.
func TestClaimOutbox(t *testing.T) {
	each(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		d := open(t)
		d.EnableNotifications("qinling-engine.test")
		for range 5 {
			require.NoError(t, d.CreateRuntime(ctx, &db.Runtime{Base: db.Base{ProjectID: "p"}, Image: "python3", Status: db.StatusAvailable}))
		}
		claim := func(owner string, lease time.Duration, limit int) []int64 {
			msgs, err := d.ClaimOutbox(ctx, owner, lease, limit)
			require.NoError(t, err)
			var seqs []int64
			for _, m := range msgs {
				require.Equal(t, owner, *m.ClaimedBy)
				seqs = append(seqs, m.Seq)
			}
			return seqs
		}
		first := claim("a", time.Minute, 3)
		for _, tc := range []struct {
			name  string
			owner string
			lease time.Duration
			limit int
			want  []int64 // nil: the last two, which nobody claimed
		}{
			{"another sender gets what is left", "b", -time.Second, 10, nil},
			{"b's claim lapsed: c takes it, not a's", "c", time.Minute, 10, nil},
			{"a sender's own again, at once", "a", time.Minute, 10, first},
			{"nothing while claims hold", "d", time.Minute, 10, []int64{}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got := claim(tc.owner, tc.lease, tc.limit)
				want := tc.want
				if want == nil {
					want = []int64{first[2] + 1, first[2] + 2}
				}
				require.ElementsMatch(t, want, got)
			})
		}
	})
}
