package config

import (
	"testing"

	"github.com/stretchr/testify/require"

	orchlocal "github.com/qinling-go/qinling/orchestrator/local"
)

// TestDefault_LocalOrchestratorAgrees: a [local_orchestrator] default is
// the value orchestrator/local applies to a field left zero, so the two
// declarations cannot drift apart and an option left out of the file
// means the same as a caller leaving the field unset.
func TestDefault_LocalOrchestratorAgrees(t *testing.T) {
	c := Default()
	for _, tc := range []struct {
		option    string
		file, pkg any
	}{
		{option: "python3", file: c.Local.Python3, pkg: orchlocal.DefaultPython3},
		{option: "nodejs", file: c.Local.NodeJS, pkg: orchlocal.DefaultNodeJS},
		{option: "nodejs_memory_overhead", file: c.Local.NodeMemoryOverhead, pkg: int64(orchlocal.DefaultNodeMemoryOverhead)},
		{option: "max_log_size", file: c.Local.MaxLogSize, pkg: orchlocal.DefaultLogSize},
		{option: "max_result_size", file: c.Local.MaxResultSize, pkg: orchlocal.DefaultResultSize},
		{option: "sandbox_uid", file: c.Local.SandboxUID, pkg: orchlocal.DefaultSandboxUID},
		{option: "sandbox_gid", file: c.Local.SandboxGID, pkg: orchlocal.DefaultSandboxUID},
		{option: "sandbox_tmp_size", file: c.Local.SandboxTmpSize, pkg: int64(orchlocal.DefaultTmpSize)},
		{option: "package_cache_size", file: c.Local.PackageCacheSize, pkg: int64(orchlocal.DefaultPackageCacheSize)},
		{option: "package_cache_project_share", file: c.Local.PackageCacheProjectShare, pkg: orchlocal.DefaultPackageCacheProjectShare},
		{option: "engine.preload_window", file: c.Engine.PreloadWindow, pkg: orchlocal.DefaultPreloadWindow},
		{option: "engine.preload_interval", file: c.Engine.PreloadInterval, pkg: orchlocal.DefaultPreloadInterval},
	} {
		t.Run(tc.option, func(t *testing.T) {
			require.Equal(t, tc.pkg, tc.file)
		})
	}
}
