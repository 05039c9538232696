package testutil

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// CheckJSONSchema checks that every JSON object in data has exactly the
// keys schema gives for its path: "" is the top level, "plan" the object
// under key plan, "checks[]" each element of the array under key checks.
// A path the schema does not list is an error too, so a new object must
// be documented; an object that is null is not looked into.
func CheckJSONSchema(t testing.TB, what string, data []byte, schema map[string][]string) {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, data)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			want, ok := schema[path]
			if !ok {
				t.Errorf("%s: an object at %q, which the schema does not list (keys %q)", what, path, keys)
				return
			}
			want = append([]string(nil), want...)
			sort.Strings(want)
			if !reflect.DeepEqual(keys, want) {
				t.Errorf("%s: the object at %q has keys %q, want %q", what, path, keys, want)
			}
			for k, e := range x {
				walk(strings.TrimPrefix(path+"."+k, "."), e)
			}
		case []any:
			for _, e := range x {
				walk(path+"[]", e)
			}
		}
	}
	walk("", v)
}

// JSONSchemaDocumented checks that doc (a document's text) names every
// key of schema as `key`.
func JSONSchemaDocumented(t testing.TB, doc string, schema map[string][]string) {
	t.Helper()
	for path, keys := range schema {
		for _, k := range keys {
			if !strings.Contains(doc, fmt.Sprintf("`%s`", k)) {
				t.Errorf("the documentation does not name the key %q (of %q)", k, path)
			}
		}
	}
}
