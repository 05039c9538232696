package hostcheck

import (
	"encoding/json"
	"fmt"
	"io"
)

// Report is `vmrun doctor`'s report (its --json form).
type Report struct {
	// OK: --net auto can use a layer-2 mode (bridge, macvtap, ipvtap) here.
	OK     bool    `json:"ok"`
	Auto   Auto    `json:"auto"`
	Checks []Check `json:"checks"`
}

// Auto is what --net auto plans on this host.
type Auto struct {
	Mode   string `json:"mode"`
	Parent string `json:"parent"`
	Reason string `json:"reason"`
	Notice string `json:"notice"`
}

// Write writes r to w: as indented JSON, or as one line per problem with
// its fix, then what --net auto uses and why.
func (r Report) Write(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	for _, ch := range r.Checks {
		if ch.Status == StatusOK {
			continue
		}
		line := fmt.Sprintf("%s: %s", ch.Status, ch.Summary)
		if ch.Fix != "" {
			line += "; fix: " + ch.Fix
		}
		fmt.Fprintln(w, line)
	}
	verdict := "--net auto uses " + r.Auto.Mode
	if r.Auto.Parent != "" {
		verdict += " on " + r.Auto.Parent
	}
	fmt.Fprintf(w, "%s (%s)\n", verdict, r.Auto.Reason)
	return nil
}
