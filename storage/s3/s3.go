// Package s3 stores function packages as objects in one S3 bucket, through
// minio-go (any S3 server: AWS, Swift's s3api, Ceph). Addressing is
// path-style, which every server answers; minio-go's own retries are off so
// that storage/internal/objstore's (the same for Swift) are the only ones.
package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/qinling-go/qinling/storage"
	"github.com/qinling-go/qinling/storage/internal/objstore"
)

// Config configures a Storage.
type Config struct {
	// Endpoint is the server's URL, http:// or https:// (no path).
	Endpoint  string
	Region    string
	Bucket    string
	AccessKey string
	SecretKey string

	storage.Transfer
}

// New checks that the credentials work and the bucket is there, and
// returns the storage. Refused credentials wrap storage.ErrBadCredentials,
// a missing bucket storage.ErrNoContainer.
func New(ctx context.Context, cfg Config) (*objstore.Storage, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("s3: endpoint %q: want http://host[:port] or https://host[:port]", cfg.Endpoint)
	}
	if cfg.Bucket == "" {
		return nil, fmt.Errorf("s3: %w: no bucket configured", storage.ErrNoContainer)
	}
	client, err := minio.New(u.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       u.Scheme == "https",
		Region:       cfg.Region,
		BucketLookup: minio.BucketLookupPath,
		Transport:    objstore.HTTPClient(cfg.Timeout).Transport,
		MaxRetries:   1,
	})
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	ok, err := client.BucketExists(ctx, cfg.Bucket)
	switch {
	case err != nil && isAuthError(err):
		return nil, fmt.Errorf("s3: %w: %v", storage.ErrBadCredentials, err)
	case err != nil:
		return nil, fmt.Errorf("s3: bucket %q at %s: %w", cfg.Bucket, cfg.Endpoint, err)
	case !ok:
		return nil, fmt.Errorf("s3: %w: bucket %q at %s", storage.ErrNoContainer, cfg.Bucket, cfg.Endpoint)
	}
	return objstore.New(objstore.Config{
		Bucket: &bucket{client: client, name: cfg.Bucket}, Name: "s3", Transfer: cfg.Transfer,
	})
}

func isAuthError(err error) bool {
	r := minio.ToErrorResponse(err)
	switch r.Code {
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch":
		return true
	}
	return r.StatusCode == http.StatusForbidden || r.StatusCode == http.StatusUnauthorized
}

// bucket is one bucket, an objstore.Bucket.
type bucket struct {
	client *minio.Client
	name   string
}

func notFound(err error) error {
	r := minio.ToErrorResponse(err)
	if r.Code == "NoSuchKey" || (r.StatusCode == http.StatusNotFound && r.Code != "NoSuchBucket") {
		return objstore.ErrObjectNotFound
	}
	return err
}

func (b *bucket) Put(ctx context.Context, key string, body io.ReadSeeker, size int64, _ string) error {
	// One plain PUT: minio-go's default over http is a chunked streaming
	// signature (aws-chunked), which Swift's s3api refuses. The payload is
	// left unsigned and Content-MD5 makes the server refuse a changed body.
	_, err := b.client.PutObject(ctx, b.name, key, body, size, minio.PutObjectOptions{
		ContentType:          "application/zip",
		DisableMultipart:     true,
		DisableContentSha256: true,
		SendContentMd5:       true,
	})
	return err
}

func (b *bucket) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	obj, err := b.client.GetObject(ctx, b.name, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, notFound(err)
	}
	// GetObject is lazy: Stat sends the request, so a missing object or a
	// down store is known here rather than at the first Read.
	if _, err := obj.Stat(); err != nil {
		obj.Close()
		return nil, notFound(err)
	}
	return obj, nil
}

func (b *bucket) Exists(ctx context.Context, key string) (bool, error) {
	_, err := b.client.StatObject(ctx, b.name, key, minio.StatObjectOptions{})
	if err = notFound(err); errors.Is(err, objstore.ErrObjectNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (b *bucket) Delete(ctx context.Context, key string) error {
	err := notFound(b.client.RemoveObject(ctx, b.name, key, minio.RemoveObjectOptions{}))
	if errors.Is(err, objstore.ErrObjectNotFound) {
		return nil
	}
	return err
}

func (b *bucket) Copy(ctx context.Context, src, dst string) error {
	_, err := b.client.CopyObject(ctx,
		minio.CopyDestOptions{Bucket: b.name, Object: dst},
		minio.CopySrcOptions{Bucket: b.name, Object: src})
	return notFound(err)
}

func (b *bucket) List(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	for o := range b.client.ListObjects(ctx, b.name, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, o.Err
		}
		keys = append(keys, o.Key)
	}
	return keys, nil
}

func (b *bucket) Transient(err error) bool {
	if r := minio.ToErrorResponse(err); r.StatusCode != 0 {
		return objstore.StatusTransient(r.StatusCode)
	}
	return objstore.NetTransient(err)
}
