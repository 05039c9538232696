// Package doctor holds the host probes of `vmrun doctor` that need the
// network set-up's parts: the kernel features tried for real in a
// throwaway namespace, and the firewall chains that would drop NAT's
// forwarded packets. It changes nothing on the host.
package doctor
