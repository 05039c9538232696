// Command startfloor is the least a program built to vmrun's design does
// before QEMU's exec, for BenchmarkQMPReady to set vmrun's start-up
// overhead against: it links the four libraries the design requires,
// parses a command line with urfave/cli against a flag set of vmrun's size,
// writes one crash-safe record (a file and its directory made durable)
// and starts QEMU as vmrun does (own process group, killed with its
// parent), passing on the descriptors from 3 on that it was started with.
//
//	startfloor --state DIR [vmrun-like flags] -- QEMU [ARGS...]
//
// It plans no network, checks no configuration and confines nothing:
// whatever vmrun takes beyond this floor is its own work.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	_ "github.com/digitalocean/go-qemu/qmp"
	_ "github.com/mdlayher/wifi"
	"github.com/urfave/cli/v2"
	_ "github.com/vishvananda/netlink"
)

// vmrunFlags is about how many flags `vmrun --help` lists.
const vmrunFlags = 44

func main() {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "state", Required: true, Usage: "directory of the record"},
		&cli.StringSliceFlag{Name: "disk"},
		&cli.StringFlag{Name: "net"},
		&cli.StringFlag{Name: "name"},
		&cli.StringFlag{Name: "console"},
		&cli.BoolFlag{Name: "snapshot"},
	}
	for i := len(flags); i < vmrunFlags; i++ {
		if i%2 == 0 {
			flags = append(flags, &cli.StringFlag{Name: fmt.Sprintf("option-%d", i), Usage: "an option vmrun has"})
		} else {
			flags = append(flags, &cli.BoolFlag{Name: fmt.Sprintf("switch-%d", i), Usage: "a switch vmrun has"})
		}
	}
	app := &cli.App{Name: "startfloor", Usage: "the floor of vmrun's start", Flags: flags, Action: run}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "startfloor:", err)
		os.Exit(1)
	}
}

func run(c *cli.Context) error {
	passed := inherited() // before this process opens anything
	argv := c.Args().Slice()
	if len(argv) == 0 {
		return errors.New("no QEMU command after --")
	}
	if err := record(c.String("state"), map[string]any{
		"name": c.String("name"), "disks": c.StringSlice("disk"), "net": c.String("net"), "pid": os.Getpid(),
	}); err != nil {
		return err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = passed
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd.Run()
}

// inherited returns the descriptors from 3 on that this process was started
// with: open and not close-on-exec, up to the first that is not (the Go
// runtime's own, such as the cgroup files it reads, are close-on-exec).
func inherited() []*os.File {
	var files []*os.File
	for fd := 3; ; fd++ {
		flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
		if errno != 0 || flags&syscall.FD_CLOEXEC != 0 {
			return files
		}
		files = append(files, os.NewFile(uintptr(fd), fmt.Sprintf("fd%d", fd)))
	}
}

// record writes v to DIR/state.json so that a crash leaves the whole
// record or none: a synced temporary file renamed into place, then the
// directory synced.
func record(dir string, v any) error {
	f, err := os.CreateTemp(dir, ".state-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := json.NewEncoder(f).Encode(v); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, "state.json")); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
