package keystone

import (
	"crypto/sha256"
	"fmt"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/reqctx"
)

// tokenKey is the SHA-256 of a token. The cache is keyed by it so that raw
// tokens are not kept in memory beyond the request that carried them.
type tokenKey = [sha256.Size]byte

// cache remembers Keystone's answers. It is two bounded LRUs:
//
//   - good: identities of valid tokens, each until the earlier of the token's
//     expiry and token_cache_time after validation;
//   - bad: rejections (401s), each for the negative TTL.
//
// They are separate so that a flood of garbage tokens evicts only other
// garbage, never the identities of real callers. Keystone outages (503s) are
// not cached at all: the next request asks again. A nil *cache caches
// nothing.
type cache struct {
	good        *lru.Cache[tokenKey, goodEntry]
	bad         *lru.Cache[tokenKey, badEntry]
	negativeTTL time.Duration
}

type goodEntry struct {
	id    reqctx.Identity // without AuthToken
	until time.Time
}

type badEntry struct {
	err   error
	until time.Time
}

// newCache returns a cache of at most size entries of each kind, or nil when
// size is not positive. Positive answers are kept only when ttl is positive,
// negative ones only when negativeTTL is.
func newCache(size int, ttl, negativeTTL time.Duration) (*cache, error) {
	if size <= 0 {
		return nil, nil
	}
	c := &cache{negativeTTL: negativeTTL}
	var err error
	if ttl > 0 {
		if c.good, err = lru.New[tokenKey, goodEntry](size); err != nil {
			return nil, fmt.Errorf("keystone: token cache: %w", err)
		}
	}
	if negativeTTL > 0 {
		if c.bad, err = lru.New[tokenKey, badEntry](size); err != nil {
			return nil, fmt.Errorf("keystone: token cache: %w", err)
		}
	}
	return c, nil
}

// get returns the cached answer for key at time now: an identity or a
// rejection, and whether there was one. Entries found stale are dropped.
func (c *cache) get(key tokenKey, now time.Time) (reqctx.Identity, error, bool) {
	if c == nil {
		return reqctx.Identity{}, nil, false
	}
	if c.good != nil {
		if e, ok := c.good.Get(key); ok {
			if now.Before(e.until) {
				return e.id, nil, true
			}
			c.good.Remove(key)
		}
	}
	if c.bad != nil {
		if e, ok := c.bad.Get(key); ok {
			if now.Before(e.until) {
				return reqctx.Identity{}, e.err, true
			}
			c.bad.Remove(key)
		}
	}
	return reqctx.Identity{}, nil, false
}

// put records Keystone's answer for key: an identity trusted until until, or
// err. Only rejections (unauthorized) are cached negatively.
func (c *cache) put(key tokenKey, id reqctx.Identity, until time.Time, err error, now time.Time) {
	if c == nil {
		return
	}
	switch {
	case err == nil && c.good != nil && until.After(now):
		id.AuthToken = ""
		c.good.Add(key, goodEntry{id: id, until: until})
		if c.bad != nil {
			c.bad.Remove(key)
		}
	case err != nil && c.bad != nil && errdefs.KindOf(err) == errdefs.KindUnauthorized:
		c.bad.Add(key, badEntry{err: err, until: now.Add(c.negativeTTL)})
	}
}
