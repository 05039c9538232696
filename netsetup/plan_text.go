package netsetup

import (
	"encoding/json"
	"fmt"
	"io"
)

// Write writes the plan to w as `vmrun net plan` prints it: as indented
// JSON, or as labelled lines (uplink, network, mode, mac, vhost, why,
// note).
func (p Plan) Write(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(p)
	}
	switch {
	case p.Mode == None:
		fmt.Fprintf(w, "uplink:  not looked at (no network)\n")
	case p.Uplink == "":
		fmt.Fprintf(w, "uplink:  none (%s)\n", p.UplinkKind)
	default:
		fmt.Fprintf(w, "uplink:  %s (%s)\n", p.Uplink, p.UplinkKind)
	}
	if p.Network != "" {
		fmt.Fprintf(w, "network: %s\n", p.Network)
	}
	fmt.Fprintf(w, "mode:    %s", p.Mode)
	if p.Parent != "" {
		fmt.Fprintf(w, " on %s", p.Parent)
	}
	if p.Passt != "" {
		fmt.Fprintf(w, " through passt (%s)", p.Passt)
	}
	if p.MAC != nil {
		fmt.Fprintf(w, "\nmac:     %s", p.MAC)
	}
	fmt.Fprintf(w, "\nvhost:   %v\nwhy:     %s\n", p.Vhost, p.Reason)
	if p.Notice != "" {
		fmt.Fprintf(w, "note:    %s\n", p.Notice)
	}
	return nil
}
