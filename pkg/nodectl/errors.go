package nodectl

import (
	"errors"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ballast-os/ballast/pkg/client"
)

// explain turns transport and status errors into what an operator can act on.
func explain(err error, node string) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := st.Message()
	switch {
	case st.Code() == codes.Unavailable && strings.Contains(msg, "connection refused"):
		return errors.New("cannot reach the machine API (connection refused): is machined running there?")
	case strings.Contains(msg, client.ErrFingerprintMismatch.Error()):
		return errors.New("the node's certificate does not match --cert-fingerprint (wrong node, or it is no longer in maintenance mode)")
	case strings.Contains(msg, "certificate signed by unknown authority") || strings.Contains(msg, "not signed by this cluster"):
		return errors.New("the node's certificate is not from this nodeconfig's OS CA: the node may be in maintenance mode (use apply-config --insecure) or belong to another cluster")
	case strings.Contains(msg, "certificate is valid for"):
		return errors.New("the node's certificate does not cover the address " + node + " (add it to machine.certSANs): " + msg)
	case strings.Contains(msg, "bad certificate") || strings.Contains(msg, "unknown certificate authority"):
		return errors.New("the node refused this client certificate: it was not issued by the node's OS CA")
	case st.Code() == codes.Unavailable:
		return errors.New("machine API unavailable: " + msg)
	case st.Code() == codes.DeadlineExceeded:
		return errors.New("timed out waiting for the node")
	}
	return errors.New(msg)
}

// oneLine keeps the first line of an error for the summary; multi-line
// validation errors keep their lines, indented, because every one matters.
func oneLine(err error) string {
	return strings.TrimRight(err.Error(), "\n")
}
