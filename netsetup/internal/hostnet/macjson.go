package hostnet

import (
	"encoding/json"
	"fmt"
	"net"
)

// The JSON form of a value with a MAC (Facts, Plan): its other fields as
// encoding/json writes them, then "mac" in the usual colon form. The
// value's MAC field itself is not in the JSON (json:"-").

// MarshalWithMAC writes plain (the value, converted to a type without
// JSON methods) with "mac" added last; omitEmpty leaves out an unknown MAC.
func MarshalWithMAC(plain any, mac net.HardwareAddr, omitEmpty bool) ([]byte, error) {
	b, err := json.Marshal(plain)
	if err != nil || omitEmpty && len(mac) == 0 {
		return b, err
	}
	if len(b) < 2 || b[len(b)-1] != '}' {
		return nil, fmt.Errorf("MAC JSON of %T: not an object", plain)
	}
	field, err := json.Marshal(MACString(mac))
	if err != nil {
		return nil, err
	}
	sep := ","
	if len(b) == 2 {
		sep = ""
	}
	return append(append(append(b[:len(b)-1:len(b)-1], sep+`"mac":`...), field...), '}'), nil
}

// UnmarshalWithMAC reads what MarshalWithMAC writes into plain (a pointer
// to a type without JSON methods) and returns the MAC.
func UnmarshalWithMAC(b []byte, plain any) (net.HardwareAddr, error) {
	var m struct {
		MAC string `json:"mac"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, plain); err != nil {
		return nil, err
	}
	return parseMACField(m.MAC)
}

// MACString is m in colon form, "" for none.
func MACString(m net.HardwareAddr) string {
	if len(m) == 0 {
		return ""
	}
	return m.String()
}

func parseMACField(s string) (net.HardwareAddr, error) {
	if s == "" {
		return nil, nil
	}
	m, err := net.ParseMAC(s)
	if err != nil {
		return nil, fmt.Errorf("mac %q: %w", s, err)
	}
	return m, nil
}
