package local

import "github.com/qinling-go/qinling/orchestrator"

var _ orchestrator.EngineLocal = (*Orchestrator)(nil)

// EngineLocal marks the local orchestrator's workers as usable only by the
// engine that started them: they are processes of its machine, reached over
// Unix sockets.
func (*Orchestrator) EngineLocal() {}
