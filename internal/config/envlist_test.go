package config

import (
	"reflect"
	"testing"
)

func TestSplitWords(t *testing.T) {
	for in, want := range map[string][]string{
		``:                        nil,
		`  -a  b `:                {"-a", "b"},
		`'x y' "p \"q\" \\r" z`:   {"x y", `p "q" \r`, "z"},
		`a\ b c''d`:               {"a b", "cd"},
		`-append 'console=ttyS0'`: {"-append", "console=ttyS0"},
		`''`:                      {""},
	} {
		got, err := SplitWords(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("SplitWords(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{`'open`, `"open`, `trailing\`} {
		if _, err := SplitWords(bad); err == nil {
			t.Errorf("SplitWords(%q) accepted", bad)
		}
	}
}
