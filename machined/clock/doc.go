// Package clock abstracts time so that timing-dependent code in machined
// (restart back-off, health-check intervals, timeouts) can be driven
// deterministically in tests.
//
// Production code takes a Clock (usually Real()); tests pass a *Fake and move
// time forward explicitly with Advance, using BlockUntil to wait until the
// code under test has armed its timers instead of sleeping.
package clock
