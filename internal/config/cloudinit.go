package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CloudInit says whether and how the guest gets a NoCloud seed
// (--cloud-init, --ssh-key, --user-data).
type CloudInit struct {
	// Seed: vmrun gives the guest a NoCloud seed.
	Seed bool
	// Dir, when set, is a seed the user made (meta-data, user-data, ...),
	// used as given; otherwise vmrun writes the seed's files.
	Dir string
	// Keys are --ssh-key public key files; none: ~/.ssh/*.pub.
	Keys []string
	// UserData is --user-data: a #cloud-config merged into vmrun's.
	UserData string
	// Why says what turned the seed on (for -v): "--cloud-init on", ...
	Why string
}

// looksLikeCloudImage is --cloud-init auto's test of a disk: the image's
// file name says "cloud", as the images distributions publish for cloud-init
// do (debian-12-genericcloud-amd64.qcow2, noble-server-cloudimg-amd64.img,
// Fedora-Cloud-Base-*.qcow2). No image is opened or mounted.
func looksLikeCloudImage(path string) bool {
	return strings.Contains(strings.ToLower(filepath.Base(path)), "cloud")
}

// resolveCloudInit checks --cloud-init auto|on|off|DIR, --ssh-key and
// --user-data, and decides auto.
func (c Config) resolveCloudInit(s *Spec) error {
	ci := CloudInit{Keys: append([]string(nil), c.SSHKey...), UserData: c.UserData}
	for _, k := range ci.Keys {
		if err := readableFile("ssh-key", k); err != nil {
			return err
		}
	}
	if ci.UserData != "" {
		if err := readableFile("user-data", ci.UserData); err != nil {
			return err
		}
	}
	asked := len(ci.Keys) > 0 || ci.UserData != ""
	switch mode := c.CloudInit; mode {
	case "", "auto":
		switch {
		case len(ci.Keys) > 0:
			ci.Seed, ci.Why = true, "--ssh-key"
		case ci.UserData != "":
			ci.Seed, ci.Why = true, "--user-data"
		default:
			for _, d := range s.Disks {
				if looksLikeCloudImage(d.Path) {
					ci.Seed, ci.Why = true, "the disk "+filepath.Base(d.Path)+" looks like a cloud image"
					break
				}
			}
		}
	case "on":
		ci.Seed, ci.Why = true, "--cloud-init on"
	case "off":
		if asked {
			return errors.New("--cloud-init off: --ssh-key and --user-data go into the cloud-init seed; remove them, or remove --cloud-init off")
		}
	default:
		fi, err := os.Stat(mode)
		if err != nil || !fi.IsDir() {
			return fmt.Errorf("--cloud-init %q is not auto, on, off or a seed directory (one holding meta-data and user-data)", mode)
		}
		if asked {
			return fmt.Errorf("--cloud-init %s: a seed directory is used as given; put the keys and user-data into its user-data instead of --ssh-key/--user-data", mode)
		}
		ci.Seed, ci.Dir, ci.Why = true, absOrEmpty(mode), "--cloud-init "+mode
	}
	s.CloudInit = ci
	return nil
}
