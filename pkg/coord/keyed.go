package coord

import (
	"context"
	"sync"
)

// KeyedMutex is a set of named in-process mutexes whose Lock honours a
// context. Backends use it so two goroutines of one process exclude each other
// even where the distributed lock is re-entrant per process (etcd's is, per
// lease).
type KeyedMutex struct {
	mu   sync.Mutex
	held map[string]chan struct{}
}

// Lock takes the mutex named name, waiting until ctx ends.
func (k *KeyedMutex) Lock(ctx context.Context, name string) (func(), error) {
	for {
		k.mu.Lock()
		if k.held == nil {
			k.held = map[string]chan struct{}{}
		}
		busy, ok := k.held[name]
		if !ok {
			ch := make(chan struct{})
			k.held[name] = ch
			k.mu.Unlock()
			var once sync.Once
			return func() {
				once.Do(func() {
					k.mu.Lock()
					delete(k.held, name)
					k.mu.Unlock()
					close(ch)
				})
			}, nil
		}
		k.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
