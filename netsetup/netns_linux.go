package netsetup

import "github.com/vmrun/vmrun/netsetup/internal/hostnet"

// Netns names the calling thread's network namespace, as a run's record
// keeps it (rundir.State's Netns and NetnsInode): the id never names
// another namespace while the host runs; the inode is how gc finds the
// namespace again.
func Netns() (id string, inode uint64, err error) {
	if id, err = hostnet.NetnsID(); err != nil {
		return "", 0, err
	}
	inode, err = hostnet.NetnsInode("/proc/thread-self/ns/net")
	return id, inode, err
}
