package watch

import (
	"encoding/json"
	"fmt"
	"io"
)

// Write writes d to w on one line, as `vmrun net plan --watch` prints it:
// Line, or its JSON object.
func (d Decision) Write(w io.Writer, asJSON bool) error {
	if !asJSON {
		_, err := fmt.Fprintln(w, d.Line())
		return err
	}
	b, err := json.Marshal(d)
	if err == nil {
		_, err = fmt.Fprintf(w, "%s\n", b)
	}
	return err
}
