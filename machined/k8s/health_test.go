package k8s

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestLivenessCountsAnAnswerAsAlive: the liveness probe takes a 401/403
// (anonymous not let in yet) as alive; the readiness probe does not, and a
// 5xx fails both.
func TestLivenessCountsAnAnswerAsAlive(t *testing.T) {
	for _, tt := range []struct {
		status          int
		liveOK, readyOK bool
	}{
		{http.StatusOK, true, true},
		{http.StatusForbidden, true, false},
		{http.StatusUnauthorized, true, false},
		{http.StatusInternalServerError, false, false},
		{http.StatusServiceUnavailable, false, false},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(tt.status) }))
		for _, p := range []struct {
			alive bool
			want  bool
		}{{true, tt.liveOK}, {false, tt.readyOK}} {
			pr := &Probe{url: srv.URL, client: srv.Client(), answeredIsAlive: p.alive}
			if err := pr.Check(context.Background()); (err == nil) != p.want {
				t.Errorf("status %d, liveness=%v: err %v, want ok=%v", tt.status, p.alive, err, p.want)
			}
		}
		srv.Close()
	}
}
