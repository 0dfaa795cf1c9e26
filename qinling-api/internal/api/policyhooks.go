package api

import (
	"context"

	"github.com/qinling-go/qinling/pkg/policy"
)

// enforceScale checks the scale_up/scale_down rule of a function or version.
func enforceScale(ctx context.Context, up, version bool) error {
	switch {
	case up && version:
		return policy.Enforce(ctx, policy.FunctionVersionScaleUp)
	case up:
		return policy.Enforce(ctx, policy.FunctionScaleUp)
	case version:
		return policy.Enforce(ctx, policy.FunctionVersionScaleDown)
	}
	return policy.Enforce(ctx, policy.FunctionScaleDown)
}

// enforceDetach checks the detach rule of a function or version.
func enforceDetach(ctx context.Context, version bool) error {
	if version {
		return policy.Enforce(ctx, policy.FunctionVersionDetach)
	}
	return policy.Enforce(ctx, policy.FunctionDetach)
}
