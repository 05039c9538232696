// Package privdrop decides which unprivileged user QEMU runs as when vmrun
// runs as root, opens files with that user's rights, and strips the thread
// that starts QEMU of every privilege a child could inherit.
//
// QEMU parses everything the guest does; vmrun opens every privileged
// resource it needs (taps, vhost-net, the QMP listener, the disk images)
// and passes them as fds, so QEMU itself needs no privilege at all.
package privdrop

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
)

// SystemUser is the dedicated user `vmrun setup` creates for QEMU. Like
// the allow-list's path (cmd/vmrun's aclPath) it is fixed when vmrun is
// built (-ldflags -X), never read from the environment or the command line.
var SystemUser = "vmrun-qemu"

// Nobody is the uid and gid QEMU falls back to when vmrun runs as root
// outside sudo and SystemUser does not exist (vmrun setup never ran).
const Nobody = 65534

// Where a User came from.
const (
	FromSudo   = "sudo"   // the user who ran sudo (SUDO_UID, SUDO_GID)
	FromSystem = "system" // SystemUser
	FromNobody = "nobody" // the fallback
)

// User is the identity QEMU runs as.
type User struct {
	// Name is the login name, or "uid N" when the uid has none.
	Name     string
	UID, GID uint32
	// Groups are the supplementary groups (the sudo user's own, or none).
	Groups []uint32
	// From says how the user was chosen (FromSudo, FromSystem, FromNobody).
	From string
}

// ErrBadSudo means SUDO_UID or SUDO_GID is not a number.
var ErrBadSudo = errors.New("invalid SUDO_UID or SUDO_GID")

// String names the user for messages: "alice (uid 1000)".
func (u User) String() string {
	if u.Name == "" || u.Name == "uid "+strconv.FormatUint(uint64(u.UID), 10) {
		return "uid " + strconv.FormatUint(uint64(u.UID), 10)
	}
	return fmt.Sprintf("%s (uid %d)", u.Name, u.UID)
}

// Choose returns the user QEMU runs as when vmrun runs as root: the user
// who ran sudo (SUDO_UID/SUDO_GID from getenv, when not 0), else
// SystemUser, else nobody (uid and gid 65534).
func Choose(getenv func(string) string) (User, error) {
	if su, sg := getenv("SUDO_UID"), getenv("SUDO_GID"); su != "" && su != "0" {
		uid, err1 := strconv.ParseUint(su, 10, 32)
		gid, err2 := strconv.ParseUint(sg, 10, 32)
		if err1 != nil || err2 != nil {
			return User{}, fmt.Errorf("%w: SUDO_UID=%q SUDO_GID=%q", ErrBadSudo, su, sg)
		}
		u := User{Name: "uid " + su, UID: uint32(uid), GID: uint32(gid), From: FromSudo}
		if pw, err := user.LookupId(su); err == nil {
			u.Name = pw.Username
			u.Groups = groupsOf(pw, u.GID)
		}
		return u, nil
	}
	if pw, err := user.Lookup(SystemUser); err == nil {
		uid, err1 := strconv.ParseUint(pw.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(pw.Gid, 10, 32)
		if err1 == nil && err2 == nil {
			return User{Name: SystemUser, UID: uint32(uid), GID: uint32(gid), Groups: groupsOf(pw, uint32(gid)), From: FromSystem}, nil
		}
	}
	u := User{Name: "nobody", UID: Nobody, GID: Nobody, From: FromNobody}
	if pw, err := user.LookupId(strconv.Itoa(Nobody)); err == nil {
		u.Name = pw.Username
	}
	return u, nil
}

// groupsOf returns pw's supplementary groups other than its primary gid.
func groupsOf(pw *user.User, primary uint32) []uint32 {
	ids, err := pw.GroupIds()
	if err != nil {
		return nil
	}
	var out []uint32
	for _, s := range ids {
		g, err := strconv.ParseUint(s, 10, 32)
		if err == nil && uint32(g) != primary {
			out = append(out, uint32(g))
		}
	}
	return out
}

// WithGroup returns u with gid added to its supplementary groups (for
// /dev/kvm's group when QEMU uses KVM).
func (u User) WithGroup(gid uint32) User {
	if gid == u.GID {
		return u
	}
	for _, g := range u.Groups {
		if g == gid {
			return u
		}
	}
	u.Groups = append(append([]uint32(nil), u.Groups...), gid)
	return u
}
