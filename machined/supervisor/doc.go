// Package supervisor runs machined's services: it starts them in dependency
// order once their dependencies are ready and their conditions hold, restarts
// them according to their restart policy with exponential back-off, runs
// their health checks, captures their output, and stops them in reverse
// dependency order.
//
// Each service is described by a Spec whose Runner (package runner) runs the
// workload once. The restart policy is layered on top by composition: the
// supervisor wraps the Runner in a restarting Runner, which in turn wraps a
// monitoring Runner that reports the Running state and runs health checks.
//
// All timing (back-off, health-check intervals and timeouts) uses the injected
// clock.Clock, so tests drive it with a clock.Fake.
package supervisor
