package config

// Redacted replaces secret values in the output of Redact.
const Redacted = "******"

// Redact returns a deep copy of c with every non-empty secret (machine and
// cluster tokens, CA and service-account private keys, the secretbox
// encryption secret) replaced by Redacted. Certificates are kept.
func (c *Config) Redact() *Config {
	out := c.DeepCopy()
	if out == nil {
		return nil
	}
	redact(&out.Machine.Token)
	redactKey(out.Machine.CA)
	redact(&out.Cluster.Token)
	redact(&out.Cluster.SecretboxEncryptionSecret)
	redactKey(out.Cluster.CA)
	redactKey(out.Cluster.AggregatorCA)
	redactKey(out.Cluster.KubeletServingCA)
	redactKey(out.Cluster.Etcd.CA)
	if out.Cluster.ServiceAccount != nil {
		redact(&out.Cluster.ServiceAccount.Key)
	}
	return out
}

// RedactBytes is Redact for a config document: the document decoded, its
// secrets redacted, encoded again (nil stays nil).
func RedactBytes(data []byte) ([]byte, error) {
	if data == nil {
		return nil, nil
	}
	c, err := Decode(data)
	if err != nil {
		return nil, err
	}
	return c.Redact().Bytes()
}

func redactKey(ck *CertAndKey) {
	if ck != nil {
		redact(&ck.Key)
	}
}

func redact(s *string) {
	if *s != "" {
		*s = Redacted
	}
}
