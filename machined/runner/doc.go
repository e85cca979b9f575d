// Package runner defines how a machined service's workload is executed.
//
// A Runner runs a service once: until it exits on its own or its context is
// cancelled, in which case it stops the workload gracefully and returns only
// after it is gone. Restart policies, dependencies and health checks are
// layered on top by package supervisor.
//
// Two runners are provided: Process (an external program in its own process
// group) and Goroutine (a function inside machined).
package runner
