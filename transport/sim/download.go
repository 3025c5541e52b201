package sim

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/otactl/otactl/ota"
)

// errDigest marks a file that arrived whole but whose digest differs from
// the push's sign: a verification failure (step -3), not a download failure.
var errDigest = errors.New("digest mismatch")

// downloader fetches firmware files the way a device would: the whole file,
// streamed through the digest, never held in memory.
type downloader struct {
	client *http.Client
	tr     *http.Transport
}

func newDownloader(timeout time.Duration, roots *x509.CertPool) *downloader {
	// A transport of its own, so that Run can close its idle connections on
	// exit instead of leaving keep-alive goroutines behind.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if roots != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	return &downloader{client: &http.Client{Timeout: timeout, Transport: tr}, tr: tr}
}

func (d *downloader) close() { d.tr.CloseIdleConnections() }

// fetch downloads p.FileURL and checks its size and digest. A failure to
// obtain the bytes, or the wrong number of them, is a download error; a
// whole file with the wrong digest is errDigest.
func (d *downloader) fetch(ctx context.Context, p ota.UpgradeParams) error {
	body, err := d.open(ctx, p.FileURL)
	if err != nil {
		return err
	}
	defer body.Close()

	var h hash.Hash
	if p.SignMethod == ota.SignMD5 {
		h = md5.New()
	} else {
		h = sha256.New()
	}
	// Read one byte past the announced size, to notice a longer file without
	// reading all of a file that never ends.
	n, err := io.Copy(h, io.LimitReader(body, p.FileSize+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", p.FileURL, err)
	}
	if n != p.FileSize {
		if n > p.FileSize {
			return fmt.Errorf("%s is larger than fileSize %d", p.FileURL, p.FileSize)
		}
		return fmt.Errorf("%s has %d bytes, fileSize says %d", p.FileURL, n, p.FileSize)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != p.Sign {
		return fmt.Errorf("%w: %s of %s is %s, push says %s",
			errDigest, p.SignMethod, p.FileURL, got, p.Sign)
	}
	return nil
}

func (d *downloader) open(ctx context.Context, rawURL string) (io.ReadCloser, error) {
	u, err := parseFileURL(rawURL)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "file" {
		f, err := os.Open(u.Path)
		if err != nil {
			return nil, err
		}
		return f, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", rawURL, resp.Status)
	}
	return resp.Body, nil
}
