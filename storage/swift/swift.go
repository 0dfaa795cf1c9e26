// Package swift stores function packages as objects in one OpenStack Swift
// container, through gophercloud's object storage v1. It authenticates as
// Qinling's service user through Keystone (the catalog's object-store
// endpoint) or, without Keystone, with Swift's own auth (tempauth) against a
// given URL. Layout, checks and retries are storage/internal/objstore's.
package swift

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/objectstorage/v1/containers"
	"github.com/gophercloud/gophercloud/v2/openstack/objectstorage/v1/objects"
	"github.com/gophercloud/gophercloud/v2/openstack/objectstorage/v1/swauth"

	"github.com/qinling-go/qinling/storage"
	"github.com/qinling-go/qinling/storage/internal/objstore"
)

// Keystone is the service user that reaches Swift through Keystone.
type Keystone struct {
	AuthURL           string
	Username          string
	Password          string
	ProjectName       string
	UserDomainName    string
	ProjectDomainName string
	RegionName        string
	// Interface is the catalog endpoint used: public, internal or admin.
	Interface string
}

// Config configures a Storage. Exactly one of AuthURL (Swift's own auth)
// and Keystone.AuthURL is set.
type Config struct {
	Container string
	// AuthURL is Swift's own auth endpoint (…/auth/v1.0); with it, User and
	// Key authenticate and Keystone is not used.
	AuthURL string
	User    string
	Key     string
	// Keystone is used when AuthURL is empty.
	Keystone Keystone

	storage.Transfer
}

// New authenticates, checks that the container is there, and returns the
// storage. Refused credentials wrap storage.ErrBadCredentials, a missing
// container storage.ErrNoContainer.
func New(ctx context.Context, cfg Config) (*objstore.Storage, error) {
	if cfg.Container == "" {
		return nil, fmt.Errorf("swift: %w: no container configured", storage.ErrNoContainer)
	}
	client, err := connect(ctx, cfg)
	if err != nil {
		if isAuthError(err) {
			return nil, fmt.Errorf("swift: %w: %v", storage.ErrBadCredentials, err)
		}
		return nil, fmt.Errorf("swift: %w", err)
	}
	b := &bucket{client: client, container: cfg.Container}
	if err := containers.Get(ctx, client, cfg.Container, nil).Err; err != nil {
		switch {
		case gophercloud.ResponseCodeIs(err, http.StatusNotFound):
			return nil, fmt.Errorf("swift: %w: container %q at %s", storage.ErrNoContainer, cfg.Container, client.Endpoint)
		case isAuthError(err):
			return nil, fmt.Errorf("swift: %w: %v", storage.ErrBadCredentials, err)
		}
		return nil, fmt.Errorf("swift: container %q at %s: %w", cfg.Container, client.Endpoint, err)
	}
	return objstore.New(objstore.Config{
		Bucket: b, Name: "swift", Transfer: cfg.Transfer,
	})
}

func isAuthError(err error) bool {
	return gophercloud.ResponseCodeIs(err, http.StatusUnauthorized) || gophercloud.ResponseCodeIs(err, http.StatusForbidden)
}

// connect returns an authenticated object-store client that authenticates
// again when its token expires.
func connect(ctx context.Context, cfg Config) (*gophercloud.ServiceClient, error) {
	httpClient := *objstore.HTTPClient(cfg.Timeout)
	if cfg.AuthURL != "" {
		// gophercloud's swauth asks <IdentityBase>auth/v1.0.
		base, ok := strings.CutSuffix(strings.TrimRight(cfg.AuthURL, "/"), "/auth/v1.0")
		if !ok {
			return nil, fmt.Errorf("auth URL %q: want Swift's v1.0 auth, http(s)://host:port/auth/v1.0", cfg.AuthURL)
		}
		pc := &gophercloud.ProviderClient{IdentityBase: base + "/", IdentityEndpoint: cfg.AuthURL, HTTPClient: httpClient}
		opts := swauth.AuthOpts{User: cfg.User, Key: cfg.Key}
		sc, err := swauth.NewObjectStorageV1(ctx, pc, opts)
		if err != nil {
			return nil, err
		}
		pc.ReauthFunc = func(ctx context.Context) error {
			auth, err := swauth.Auth(ctx, pc, opts).Extract()
			if err != nil {
				return err
			}
			pc.SetToken(auth.Token)
			return nil
		}
		pc.SetToken(sc.TokenID)
		return sc, nil
	}
	k := cfg.Keystone
	pc, err := openstack.NewClient(k.AuthURL)
	if err != nil {
		return nil, err
	}
	pc.HTTPClient = httpClient
	err = openstack.Authenticate(ctx, pc, gophercloud.AuthOptions{
		IdentityEndpoint: k.AuthURL,
		Username:         k.Username,
		Password:         k.Password,
		DomainName:       k.UserDomainName,
		AllowReauth:      true,
		Scope:            &gophercloud.AuthScope{ProjectName: k.ProjectName, DomainName: k.ProjectDomainName},
	})
	if err != nil {
		return nil, err
	}
	return openstack.NewObjectStorageV1(pc, gophercloud.EndpointOpts{
		Region:       k.RegionName,
		Availability: gophercloud.Availability(k.Interface),
	})
}

// bucket is one container, an objstore.Bucket.
type bucket struct {
	client    *gophercloud.ServiceClient
	container string
}

func notFound(err error) error {
	if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return objstore.ErrObjectNotFound
	}
	return err
}

func (b *bucket) Put(ctx context.Context, key string, body io.ReadSeeker, size int64, md5 string) error {
	// The ETag makes Swift refuse a body that arrived changed.
	return objects.Create(ctx, b.client, b.container, key, objects.CreateOpts{
		Content: body, ContentLength: size, ETag: md5, ContentType: "application/zip",
	}).Err
}

func (b *bucket) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	r := objects.Download(ctx, b.client, b.container, key, nil)
	if r.Err != nil {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, notFound(r.Err)
	}
	return r.Body, nil
}

func (b *bucket) Exists(ctx context.Context, key string) (bool, error) {
	err := notFound(objects.Get(ctx, b.client, b.container, key, nil).Err)
	if errors.Is(err, objstore.ErrObjectNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (b *bucket) Delete(ctx context.Context, key string) error {
	err := notFound(objects.Delete(ctx, b.client, b.container, key, nil).Err)
	if errors.Is(err, objstore.ErrObjectNotFound) {
		return nil
	}
	return err
}

func (b *bucket) Copy(ctx context.Context, src, dst string) error {
	return notFound(objects.Copy(ctx, b.client, b.container, src, objects.CopyOpts{
		Destination: "/" + b.container + "/" + dst,
	}).Err)
}

func (b *bucket) List(ctx context.Context, prefix string) ([]string, error) {
	pages, err := objects.List(b.client, b.container, objects.ListOpts{Prefix: prefix}).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	return objects.ExtractNames(pages)
}

func (b *bucket) Transient(err error) bool {
	var code gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &code) {
		return objstore.StatusTransient(code.Actual)
	}
	return objstore.NetTransient(err)
}
