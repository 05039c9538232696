package hostnet

import "github.com/vmrun/vmrun/internal/service"

// The services attachments run, by the name the user reads in a notice or
// in the sentence of a dead one. docs/architecture.md ("Services of an
// attachment") has the table of their policies.
const (
	ServiceDHCP    = "vmrun's DHCP responder for the guest"
	ServiceDNS     = "vmrun's DNS forwarder for the guest"
	ServiceKeeper  = "the keeper of the guest's upstream DHCP lease"
	ServiceRA      = "vmrun's IPv6 router advertiser for the guest"
	ServiceLearn6  = "the learner of the guest's IPv6 addresses"
	ServiceLearner = "the learner of the guest's addresses"
	ServiceWatcher = "the watcher of the uplink's link events"
	ServicePasst   = "passt"
	ServiceAddrs   = "the watcher of the guest's addresses"
)

// restartRemedy is what the user does about a service that failed too
// often: vmrun ends the run (the guest cannot be left without it).
const restartRemedy = "vmrun stops the VM; start it again"

// The policies of the services. Every service but passt is restarted: it
// owns a socket or a timer in vmrun that can be made again as it was, and
// the guest loses nothing it cannot ask for again (a DHCP retry, a router
// solicitation, the next frame). passt ends the run: QEMU 7.2's stream
// netdev holds the socket vmrun passed it and cannot reconnect, so a new
// passt could not reach the guest.
var (
	DHCPPolicy    = service.Restart("can no longer get or renew its address by DHCP", restartRemedy)
	DNSPolicy     = service.Restart("has no DNS through its gateway", restartRemedy)
	KeeperPolicy  = service.Restart("holds an address whose upstream lease is no longer renewed", restartRemedy)
	RAPolicy      = service.Restart("gets no IPv6 router advertisements, and its IPv6 addresses expire", restartRemedy)
	Learn6Policy  = service.Restart("gets no route for the IPv6 addresses it takes from now on", restartRemedy)
	LearnerPolicy = service.Restart("gets no traffic for the addresses it takes from now on", restartRemedy)
	WatcherPolicy = service.Restart("is no longer followed when the uplink's MAC or carrier changes", restartRemedy)
	AddrsPolicy   = service.Restart("is no longer watched: the addresses it takes from now on are not shown by vmrun ls and vmrun wait", restartRemedy)
	PasstPolicy   = service.EndRun("has lost its network (QEMU's stream netdev cannot be reconnected to a new passt)",
		"vmrun stops the VM; start it again")
)
