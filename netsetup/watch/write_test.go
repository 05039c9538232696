package watch

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/vmrun/vmrun/netsetup"
)

// TestDecisionWrite: one line each, the text form or one JSON object.
func TestDecisionWrite(t *testing.T) {
	d := Decision{Action: Switch, From: Where{Mode: netsetup.Macvtap, Parent: "a0"}, To: Where{Mode: netsetup.NAT, Parent: "vmrnat0"}, Why: "because"}
	var text, js bytes.Buffer
	if err := d.Write(&text, false); err != nil || text.String() != d.Line()+"\n" {
		t.Errorf("text: %q %v", text.String(), err)
	}
	var obj map[string]any
	if err := d.Write(&js, true); err != nil || bytes.Count(js.Bytes(), []byte("\n")) != 1 || json.Unmarshal(js.Bytes(), &obj) != nil {
		t.Errorf("JSON: %q %v", js.String(), err)
	}
}
