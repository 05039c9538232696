package main

import (
	"bytes"
	"io"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestHelpMayShow(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"vmrun", "ls"}, false},
		{[]string{"vmrun", "exec", "web", "--", "true"}, false},
		{[]string{"vmrun", "--disk", "a.qcow2", "--net", "none"}, false},
		{[]string{"vmrun", "--helper", "-hx", "helpful"}, false},
		{[]string{"vmrun"}, false},
		{nil, false},
		{[]string{"vmrun", "--help"}, true},
		{[]string{"vmrun", "-h"}, true},
		{[]string{"vmrun", "-help"}, true},
		{[]string{"vmrun", "--help=false"}, true},
		{[]string{"vmrun", "run", "-h"}, true},
		{[]string{"vmrun", "net", "help"}, true},
		{[]string{"vmrun", "exec", "web", "--", "ls", "--help"}, true},
	} {
		if got := helpMayShow(tc.args); got != tc.want {
			t.Errorf("helpMayShow(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}

// TestHelpKeepsCategories: the help realMain prints is the help of an app
// whose options keep their categories, and those categories show in it.
func TestHelpKeepsCategories(t *testing.T) {
	help := func(app *cli.App, args []string) string {
		var out bytes.Buffer
		app.Writer = &out
		if err := app.Run(append([]string{"vmrun"}, args...)); err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		return out.String()
	}
	for _, args := range [][]string{{"--help"}, {"-h"}, {"--help=true"}, {"run", "--help"}, {"run", "-h"}} {
		want := help(newApp(io.Discard, io.Discard), args)
		bare := newApp(io.Discard, io.Discard)
		dropFlagCategories(bare)
		if help(bare, args) == want {
			t.Errorf("%q: the help is the same without categories", args)
		}
		if got, _, code := vmrun(t, args...); got != want || code != 0 {
			t.Errorf("%q: exit %d, help:\n%s\nwant:\n%s", args, code, got, want)
		}
	}
}

// TestDropFlagCategories: no option of any command keeps a category (a new
// option type needs its case in dropFlagCategories).
func TestDropFlagCategories(t *testing.T) {
	app := newApp(io.Discard, io.Discard)
	dropFlagCategories(app)
	flags := app.Flags
	for _, c := range app.Commands {
		flags = append(flags, c.Flags...)
		for _, sub := range c.Subcommands {
			flags = append(flags, sub.Flags...)
		}
	}
	for _, f := range flags {
		if cf, ok := f.(cli.CategorizableFlag); ok && cf.GetCategory() != "" {
			t.Errorf("option %s keeps its category %q", f.Names()[0], cf.GetCategory())
		}
	}
}
