package cloudinit

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
)

// rootGuestUser is the seed's user when vmrun runs as root without sudo:
// cloud images refuse SSH logins as root.
const rootGuestUser = "vmrun"

// Login is who the seed lets in: the user and keys that go into it and
// the private key `vmrun ssh` passes to ssh.
type Login struct {
	User    string
	Keys    []string
	Private string
}

// Request is what the seed is prepared from: the VM's options.
type Request struct {
	// Dir is a seed directory given as is (--cloud-init DIR); "": vmrun's.
	Dir string
	// Keys are --ssh-key's files; none: the host user's ~/.ssh/*.pub.
	Keys []string
	// UserData is --user-data's file; "": none.
	UserData string
	// Hostname is the VM's name.
	Hostname string
	// MAC is the guest NIC's MAC.
	MAC net.HardwareAddr
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

// LoginOf decides the seed's user and keys: the files keys, else the host
// user's ~/.ssh/*.pub.
func LoginOf(keys []string) (Login, error) {
	name, home, err := hostUser()
	if err != nil {
		return Login{}, err
	}
	l := Login{User: name}
	if name == "root" {
		l.User = rootGuestUser
	}
	if len(keys) == 0 {
		l.Keys, l.Private, err = PublicKeys(filepath.Join(home, ".ssh"))
		return l, err
	}
	for _, k := range keys {
		key, err := ReadKey(k)
		if err != nil {
			return Login{}, err
		}
		l.Keys = append(l.Keys, key)
		if l.Private == "" {
			l.Private = PrivateKeyOf(k)
		}
	}
	return l, nil
}

// Prepare returns the seed's files, the directory's as given or vmrun's,
// and the login that goes into vmrun's (none for a directory). Every
// error it returns is the user's to fix.
func Prepare(r Request) (map[string][]byte, Login, error) {
	if r.Dir != "" {
		files, err := ReadDir(r.Dir)
		if err != nil {
			return nil, Login{}, err
		}
		return files, Login{}, nil
	}
	login, err := LoginOf(r.Keys)
	if err != nil {
		return nil, Login{}, err
	}
	sd := Seed{Hostname: r.Hostname, User: login.User, Keys: login.Keys, MAC: r.MAC}
	if r.UserData != "" {
		if sd.Extra, err = os.ReadFile(r.UserData); err != nil {
			return nil, Login{}, fmt.Errorf("--user-data: %w", err)
		}
	}
	files, err := sd.Files()
	if err != nil {
		return nil, Login{}, err
	}
	return files, login, nil
}
