package logship

import (
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkShipTCP writes b.N lines of a typical kubelet line's length into
// one service's log at about 20,000 lines/s (in bursts of 200: the log's
// follower keeps at most 4096 waiting) and ships them to a TCP receiver
// that reads and discards; it reports the lines/s received and the
// process's CPU use, in % of one core, while doing so
// (go test -run '^$' -bench ShipTCP -benchtime 100000x ./machined/logship/).
func BenchmarkShipTCP(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var received atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					for _, x := range buf[:n] {
						if x == '\n' {
							received.Add(1)
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	sh := startShipper(&testing.T{}, b.N+1, "tcp://"+ln.Addr().String())
	sh.waitShipping(&testing.T{}, 1)
	line := "I1207 22:58:01.204312    1234 kubelet.go:2451] \"SyncLoop (PLEG): event for pod\" pod=\"kube-system/coredns-7c65d6cfc9-x8k2p\" event=ContainerStarted"
	var before syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	start := time.Now()
	b.ResetTimer()
	for i := range b.N {
		fmt.Fprintln(sh.kubelet, line)
		if i%200 == 199 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for received.Load() < int64(b.N) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	took := time.Since(start)
	var after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	b.ReportMetric(float64(received.Load())/took.Seconds(), "lines/s")
	b.ReportMetric(float64(int64(b.N)-received.Load()), "lost")
	b.ReportMetric(cpu.Seconds()/took.Seconds()*100, "%CPU")
}
