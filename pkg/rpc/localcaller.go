package rpc

import "context"

type localCallerKey struct{}

// WithLocalCaller marks a call whose caller runs in this process and gets
// its request from no broker (the in-process transport): the request is
// delivered exactly once, and a crash of the process ends its caller too.
// done closes when the caller stops waiting.
func WithLocalCaller(ctx context.Context, done <-chan struct{}) context.Context {
	return context.WithValue(ctx, localCallerKey{}, done)
}

// LocalCaller returns, for a call marked by WithLocalCaller, the channel
// that closes when its caller stops waiting.
func LocalCaller(ctx context.Context) (done <-chan struct{}, ok bool) {
	done, ok = ctx.Value(localCallerKey{}).(<-chan struct{})
	return done, ok
}
