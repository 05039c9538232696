package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vmrun/vmrun/internal/cloudinit"
	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/guestssh"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/launcher"
	"github.com/vmrun/vmrun/netsetup"
)

// seed writes the guest's NoCloud seed into the runtime directory (its
// removal on the undo stack), attaches it to the VM read-only, and
// records the login for `vmrun ssh`.
func (s *session) seed() error {
	ci := s.spec.CloudInit
	if !ci.Seed {
		return nil
	}
	files, login, err := cloudinit.Prepare(cloudinit.Request{
		Dir: ci.Dir, Keys: ci.Keys, UserData: ci.UserData, Hostname: s.spec.Name, MAC: s.plan.MAC})
	if err != nil {
		return exitcode.Usagef("%w", err)
	}
	if ci.Dir == "" && len(login.Keys) == 0 {
		s.notify("cloud-init: no SSH public key in ~/.ssh (create one with ssh-keygen, or give --ssh-key FILE): the guest's user %s has none", login.User)
	}
	path := filepath.Join(s.dir.Path, cloudinit.SeedFile)
	if err := cloudinit.WriteISO(path, files); err != nil {
		return exitcode.Setupf("%w", err)
	}
	s.undo.Push("cloud-init seed", func() error {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("cloud-init seed: %w", err)
		}
		return nil
	})
	s.vm.Seed = &launcher.Seed{Path: path}
	if s.conf.User != nil {
		f, err := os.Open(path)
		if err != nil {
			return exitcode.Setupf("cloud-init seed: %w", err)
		}
		s.undo.Push("cloud-init seed fd", func() error { f.Close(); return nil })
		s.vm.Seed.Files = []*os.File{f}
	}
	s.step("cloud-init seed %s (%s)", path, ci.Why)
	// A seed directory's user is the user's business (ssh's defaults
	// pick it); user mode's forward is recorded all the same.
	if err := s.dir.Update(func(st *rundir.State) {
		st.SSH = &rundir.SSH{User: login.User, Key: login.Private, Forward: s.sshForward}
	}); err != nil {
		return exitcode.Setupf("%w", err)
	}
	return nil
}

// sshForward is guestssh.Forward for the run's spec and plan.
func sshForward(spec config.Spec, plan *netsetup.Plan) (string, error) {
	return guestssh.Forward(spec.CloudInit.Seed, plan)
}
