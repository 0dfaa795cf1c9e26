// Command genconfig writes the sample configuration to standard output:
//
//	go run ./pkg/config/cmd/genconfig > etc/qinling.conf.sample
//
// scripts/genconfig.sh does exactly that; pkg/config's tests fail while the
// checked-in sample differs from what this prints.
package main

import (
	"fmt"
	"os"

	"github.com/qinling-go/qinling/pkg/config"
)

func main() {
	if err := config.WriteSample(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "genconfig:", err)
		os.Exit(1)
	}
}
