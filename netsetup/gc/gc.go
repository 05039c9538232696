// Package gc undoes what a vmrun recorded in its VM's state file: after a
// run (Undo), after a vmrun that died (GCState, GC), and lists what `vmrun
// gc` would remove (Leftovers). It dispatches on each object's kind to the
// package that made it: hostnet's links, sysctls, processes, routes,
// neighbours and addresses, package nat's tables and memberships. No mode
// package imports it.
package gc
