package main

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/vmrun/vmrun/internal/detach"
	"github.com/vmrun/vmrun/internal/dryrun"
	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/netplan"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/vmbuild"
	"github.com/vmrun/vmrun/launcher"
	"github.com/vmrun/vmrun/netsetup"
)

// runAction boots a VM: validate, plan the network, then run a session
// that creates the runtime directory and links, starts and supervises
// QEMU, and undoes everything.
func runAction(c *cli.Context) error {
	if c.Bool("detach") && !c.Bool("dry-run") && !detach.IsSupervisor() {
		return startDetached(c)
	}
	sup, err := detach.FromEnv()
	if err != nil {
		return exitcode.Usagef("%w", err)
	}
	t0 := time.Now()
	verbose := c.Bool("verbose")
	notify := notifier(c)
	step := func(format string, args ...any) {
		if verbose {
			notify("%6.1fms "+format, append([]any{float64(time.Since(t0).Microseconds()) / 1000}, args...)...)
		}
	}
	// Stop signals are caught before anything is created, so an early
	// Ctrl-C still cleans up.
	sigc, pipesCaught := takeStops(c)
	defer signal.Stop(sigc)

	spec, err := resolve(c)
	if err != nil {
		return err
	}
	// The network is planned beside the checks of QEMU, KVM and the user
	// QEMU runs as, which it does not depend on (2 CPUs: their time
	// overlaps); a configuration error still comes first.
	planned := startPlan(c.Context, planRequest(spec))
	spec, vm, conf, err := vmbuild.Configure(spec, c.IsSet("qemu"), c.Bool("detach"))
	if err != nil {
		_, _ = planned()
		return err
	}
	step("configuration checked; QEMU will run as %s", conf.Describe())
	plan, err := planned()
	if err != nil {
		return err
	}
	if plan.Notice != "" {
		notify("%s", plan.Notice)
	}
	step("network plan: %s (%s)", plan.Mode, plan.Reason)
	fwd, err := sshForward(spec, &plan)
	if err != nil {
		return err
	}
	root := rundir.Root()
	plan.RuntimeRoot = root
	if c.Bool("dry-run") {
		return dryrun.Print(c.App.Writer, c.Bool("json"), root, spec, vm, plan, conf)
	}
	launcher.WarmUp() // beside the set-up, off the way to QEMU's exec
	if conf.NoSandbox != "" {
		notify("%s", conf.NoSandbox)
	}
	closeFiles, err := conf.OpenFiles(spec, &vm)
	if err != nil {
		return err
	}
	defer closeFiles()
	vmbuild.Announce(notify, spec, vm.KVM, conf.KVMDenied, conf.KVMBroken, plan)
	s := &session{c: c, spec: spec, vm: vm, plan: plan, conf: conf, root: root, sigc: sigc, pipesCaught: pipesCaught, notify: notify, step: step,
		sshForward: fwd}
	s.addrs = s.newAddrBook()
	if sup != nil {
		s.det = &detached{Supervisor: sup}
	}
	return s.run()
}

// startPlan plans the network for req on a goroutine of its own and
// returns the wait for its answer. Planning creates nothing that outlives
// it (a kernel probe's throwaway namespace goes with its thread).
func startPlan(ctx context.Context, req netsetup.Request) func() (netsetup.Plan, error) {
	type answer struct {
		plan netsetup.Plan
		err  error
	}
	c := make(chan answer, 1)
	go func() {
		p, err := netplan.Plan(ctx, req)
		c <- answer{p, err}
	}()
	return sync.OnceValues(func() (netsetup.Plan, error) {
		a := <-c
		return a.plan, a.err
	})
}

// interrupted reports (and consumes) a stop request that came in during
// set-up: the run ends there, cleanly, with exit code 0.
func interrupted(sigc chan os.Signal) bool {
	select {
	case <-sigc:
		return true
	default:
		return false
	}
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
