package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"

	"github.com/vmrun/vmrun/internal/cloudinit"
	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/launcher"
	"github.com/vmrun/vmrun/netsetup"
)

// seedFile is the seed image's name in the VM's runtime directory.
const seedFile = "cidata.iso"

// rootGuestUser is the seed's user when vmrun runs as root without sudo:
// cloud images refuse SSH logins as root.
const rootGuestUser = "vmrun"

// seedLogin is who the seed lets in: the user and keys that go into it
// and the private key `vmrun ssh` passes to ssh.
type seedLogin struct {
	user    string
	keys    []string
	private string
}

// hostUser returns the user vmrun acts for (the one who ran sudo, when
// vmrun runs as root through it) and their home directory.
func hostUser() (name, home string, err error) {
	if os.Geteuid() == 0 {
		if su := os.Getenv("SUDO_USER"); su != "" && su != "root" {
			if u, err := user.Lookup(su); err == nil {
				return u.Username, u.HomeDir, nil
			}
		}
	}
	u, err := user.Current()
	if err != nil {
		return "", "", fmt.Errorf("cloud-init seed: who are you: %w", err)
	}
	return u.Username, u.HomeDir, nil
}

// loginOf decides the seed's user and keys: --ssh-key's files, else the
// host user's ~/.ssh/*.pub.
func loginOf(ci config.CloudInit) (seedLogin, error) {
	name, home, err := hostUser()
	if err != nil {
		return seedLogin{}, err
	}
	l := seedLogin{user: name}
	if name == "root" {
		l.user = rootGuestUser
	}
	if len(ci.Keys) == 0 {
		l.keys, l.private, err = cloudinit.PublicKeys(filepath.Join(home, ".ssh"))
		return l, err
	}
	for _, k := range ci.Keys {
		key, err := cloudinit.ReadKey(k)
		if err != nil {
			return seedLogin{}, err
		}
		l.keys = append(l.keys, key)
		if l.private == "" {
			l.private = cloudinit.PrivateKeyOf(k)
		}
	}
	return l, nil
}

// seed writes the guest's NoCloud seed into the runtime directory (its
// removal on the undo stack), attaches it to the VM read-only, and
// records the login for `vmrun ssh`.
func (s *session) seed() error {
	ci := s.spec.CloudInit
	if !ci.Seed {
		return nil
	}
	files, login, err := seedFiles(ci, s.spec.Name, s.plan.MAC)
	if err != nil {
		return err
	}
	if ci.Dir == "" && len(login.keys) == 0 {
		s.notify("cloud-init: no SSH public key in ~/.ssh (create one with ssh-keygen, or give --ssh-key FILE): the guest's user %s has none", login.user)
	}
	path := filepath.Join(s.dir.Path, seedFile)
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
		st.SSH = &rundir.SSH{User: login.user, Key: login.private, Forward: s.sshForward}
	}); err != nil {
		return exitcode.Setupf("%w", err)
	}
	return nil
}

// seedFiles are the seed's files: the directory's as given, or vmrun's.
func seedFiles(ci config.CloudInit, name string, mac net.HardwareAddr) (map[string][]byte, seedLogin, error) {
	if ci.Dir != "" {
		files, err := cloudinit.ReadDir(ci.Dir)
		if err != nil {
			return nil, seedLogin{}, exitcode.Usagef("%w", err)
		}
		return files, seedLogin{}, nil
	}
	login, err := loginOf(ci)
	if err != nil {
		return nil, seedLogin{}, exitcode.Usagef("%w", err)
	}
	sd := cloudinit.Seed{Hostname: name, User: login.user, Keys: login.keys, MAC: mac}
	if ci.UserData != "" {
		if sd.Extra, err = os.ReadFile(ci.UserData); err != nil {
			return nil, seedLogin{}, exitcode.Usagef("--user-data: %w", err)
		}
	}
	files, err := sd.Files()
	if err != nil {
		return nil, seedLogin{}, exitcode.Usagef("%w", err)
	}
	return files, login, nil
}

// sshForward adds, in user mode with a seed, a forward from a free port
// on 127.0.0.1 to the guest's port 22 (unless --forward already has one
// there) and returns its host end, for `vmrun ssh`; "" otherwise.
func sshForward(spec config.Spec, plan *netsetup.Plan) (string, error) {
	if !spec.CloudInit.Seed || plan.Mode != netsetup.User {
		return "", nil
	}
	for _, f := range plan.Forwards {
		if f.Proto == "tcp" && f.GuestPort == 22 && (f.HostAddr == "" || f.HostAddr == "127.0.0.1") {
			return net.JoinHostPort("127.0.0.1", strconv.Itoa(f.HostPort)), nil
		}
	}
	// A free port now; QEMU (or passt) binds it a moment later.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", exitcode.Setupf("a free port for the guest's SSH forward: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	plan.Forwards = append(plan.Forwards, netsetup.Forward{Proto: "tcp", HostAddr: "127.0.0.1", HostPort: port, GuestPort: 22})
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}
