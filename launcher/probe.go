package launcher

// SandboxArg is the -sandbox setting vmrun gives QEMU: seccomp mode 2
// with obsolete system calls, privilege changes (set*uid and friends),
// fork/exec and resource control (scheduler, affinity) all denied.
const SandboxArg = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
