package nodectl

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ballast-os/ballast/pkg/client"
)

// explain turns transport and status errors into what an operator can act
// on. Connection failures are matched by their type (client.ConnectError
// carries the transport's own error), never by message text.
func explain(err error, node string) error {
	if err == nil {
		return nil
	}
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		alert     tls.AlertError
	)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return errors.New("cannot reach the machine API (connection refused): is machined running there?")
	case errors.Is(err, client.ErrFingerprintMismatch):
		return errors.New("the node's certificate does not match --cert-fingerprint (wrong node, or it is no longer in maintenance mode)")
	case errors.As(err, &unknownCA):
		return errors.New("the node's certificate is not from this nodeconfig's OS CA: the node may be in maintenance mode (use apply-config --insecure) or belong to another cluster")
	case errors.As(err, &hostname):
		return errors.New("the node's certificate does not cover the address " + node + " (add it to machine.certSANs): " + hostname.Error())
	case errors.As(err, &alert) && (alert == tlsAlertBadCertificate || alert == tlsAlertUnknownCA):
		return errors.New("the node refused this client certificate: it was not issued by the node's OS CA")
	case errors.Is(err, client.ErrNotControlPlane), errors.Is(err, client.ErrNoNodeIdentity):
		var ce *client.ConnectError
		if errors.As(err, &ce) {
			return ce.Cause
		}
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.Unavailable:
		return errors.New("machine API unavailable: " + st.Message())
	case codes.DeadlineExceeded:
		return errors.New("timed out waiting for the node")
	}
	return errors.New(st.Message())
}

// TLS alerts a server sends when it refuses the client's certificate.
const (
	tlsAlertBadCertificate tls.AlertError = 42
	tlsAlertUnknownCA      tls.AlertError = 48
)

// oneLine keeps the first line of an error for the summary; multi-line
// validation errors keep their lines, indented, because every one matters.
func oneLine(err error) string {
	return strings.TrimRight(err.Error(), "\n")
}
