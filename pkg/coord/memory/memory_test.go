package memory_test

import (
	"testing"

	"github.com/qinling-go/qinling/pkg/coord"
	"github.com/qinling-go/qinling/pkg/coord/coordtest"
	"github.com/qinling-go/qinling/pkg/coord/memory"
)

func TestMemory(t *testing.T) {
	coordtest.Run(t, func(t *testing.T) coord.Coordinator { return memory.New() })
}
