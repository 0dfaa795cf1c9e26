package swiftcode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/trusts"

	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/reqctx"
	"github.com/qinling-go/qinling/storage/internal/objstore"
)

// Source is how the API and the engine reach users' objects; Keystone is
// the real one, and unit tests of the API and engine use a fake.
type Source interface {
	// Check reads the object's size and ETag with the caller's token: 400
	// MsgInvalid when it is missing, refused or larger than max_package_size.
	Check(ctx context.Context, caller reqctx.Identity, container, object string) (Object, error)
	// Download opens the recorded bytes of o with the caller's token.
	Download(ctx context.Context, caller reqctx.Identity, o Object) (io.ReadCloser, error)
	// CreateTrust lets Qinling's service user act as the caller in the
	// caller's project (a Keystone trust with impersonation and the caller's
	// roles); DeleteTrust removes one.
	CreateTrust(ctx context.Context, caller reqctx.Identity) (string, error)
	DeleteTrust(ctx context.Context, caller reqctx.Identity, trustID string) error
	// Fetch opens the recorded bytes of o on its owner's behalf, through
	// the trust: no token of the owner's is needed (jobs, webhooks).
	Fetch(ctx context.Context, trustID string, o Object) (io.ReadCloser, error)
}

// Retry says how a transiently failing Swift request is repeated
// ([storage] retries and retry_backoff).
type Retry struct {
	Retries int
	Backoff time.Duration
}

// Config says where Keystone is and who Qinling's service user is
// ([keystone_authtoken]), and how Swift is reached ([storage]).
type Config struct {
	AuthURL           string
	Username          string
	Password          string
	UserDomainName    string
	ProjectName       string
	ProjectDomainName string
	RegionName        string
	// Interface is the catalog endpoint of object-store used: public,
	// internal or admin.
	Interface string
	Timeout   time.Duration
	Retry     Retry
	MaxSize   int64
}

// Keystone is the Source of a cloud with Keystone and Swift.
type Keystone struct {
	cfg  Config
	http *http.Client

	mu            sync.Mutex
	serviceUserID string
}

var _ Source = (*Keystone)(nil)

// New returns a Keystone Source; nothing is asked before it is used.
func New(cfg Config) (*Keystone, error) {
	if cfg.AuthURL == "" {
		return nil, errors.New("swift functions: keystone_authtoken.auth_url (or www_authenticate_uri) is needed")
	}
	if cfg.MaxSize <= 0 {
		return nil, fmt.Errorf("swift functions: max_package_size %d: must be positive", cfg.MaxSize)
	}
	return &Keystone{cfg: cfg, http: objstore.HTTPClient(cfg.Timeout)}, nil
}

// provider is a client of Keystone carrying token.
func (k *Keystone) provider(token string) (*gophercloud.ProviderClient, error) {
	pc, err := openstack.NewClient(k.cfg.AuthURL)
	if err != nil {
		return nil, fmt.Errorf("keystone_authtoken.auth_url %q: %w", k.cfg.AuthURL, err)
	}
	pc.HTTPClient = *k.http
	pc.UserAgent.Prepend("qinling")
	if token != "" {
		pc.SetToken(token)
	}
	return pc, nil
}

func (k *Keystone) endpointOpts() gophercloud.EndpointOpts {
	return gophercloud.EndpointOpts{Region: k.cfg.RegionName, Availability: gophercloud.Availability(k.cfg.Interface)}
}

// identityError is the answer when Keystone itself failed us.
func identityError(err error) error {
	if transient(err) {
		return errdefs.Wrap(errdefs.KindUnavailable, err, "Identity service unavailable")
	}
	return err
}

// asCaller is an object-store client with the caller's token, at the
// caller's project's endpoint of the catalog.
func (k *Keystone) asCaller(ctx context.Context, caller reqctx.Identity) (*gophercloud.ServiceClient, error) {
	if caller.AuthToken == "" {
		return nil, errdefs.Invalid("Swift object not supported.")
	}
	pc, err := k.provider(caller.AuthToken)
	if err != nil {
		return nil, err
	}
	idc, err := openstack.NewIdentityV3(pc, gophercloud.EndpointOpts{})
	if err != nil {
		return nil, err
	}
	// A token may read itself, catalog included.
	catalog, err := tokens.Get(ctx, idc, caller.AuthToken).ExtractServiceCatalog()
	if err != nil {
		return nil, identityError(err)
	}
	eo := k.endpointOpts()
	eo.ApplyDefaults("object-store")
	url, err := openstack.V3EndpointURL(catalog, eo)
	if err != nil {
		return nil, fmt.Errorf("%w: no object-store endpoint in the caller's catalog: %v", ErrMissing, err)
	}
	return &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: gophercloud.NormalizeURL(url), Type: "object-store"}, nil
}

// Check implements Source.
func (k *Keystone) Check(ctx context.Context, caller reqctx.Identity, container, object string) (Object, error) {
	o, err := k.check(ctx, caller, container, object)
	if err != nil && errdefs.KindOf(err) == errdefs.KindInternal {
		// Upstream's one answer for an object that cannot be used.
		return o, errdefs.Wrap(errdefs.KindInvalid, err, MsgInvalid)
	}
	return o, err
}

func (k *Keystone) check(ctx context.Context, caller reqctx.Identity, container, object string) (Object, error) {
	sc, err := k.asCaller(ctx, caller)
	if err != nil {
		return Object{}, err
	}
	return Head(ctx, sc, k.cfg.Retry, container, object, k.cfg.MaxSize)
}

// Download implements Source.
func (k *Keystone) Download(ctx context.Context, caller reqctx.Identity, o Object) (io.ReadCloser, error) {
	sc, err := k.asCaller(ctx, caller)
	if err != nil {
		return nil, err
	}
	rc, err := Open(ctx, sc, k.cfg.Retry, o)
	return rc, fetchError(err, o)
}

// serviceUser is the ID of Qinling's service user, the trustee of every
// trust; learnt from its first token and kept.
func (k *Keystone) serviceUser(ctx context.Context) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.serviceUserID != "" {
		return k.serviceUserID, nil
	}
	pc, err := k.provider("")
	if err != nil {
		return "", err
	}
	err = openstack.Authenticate(ctx, pc, gophercloud.AuthOptions{
		IdentityEndpoint: k.cfg.AuthURL, Username: k.cfg.Username, Password: k.cfg.Password, DomainName: k.cfg.UserDomainName,
		Scope: &gophercloud.AuthScope{ProjectName: k.cfg.ProjectName, DomainName: k.cfg.ProjectDomainName},
	})
	if err != nil {
		return "", identityError(fmt.Errorf("service user %q (keystone_authtoken.username): %w", k.cfg.Username, err))
	}
	res, ok := pc.GetAuthResult().(tokens.CreateResult)
	if !ok {
		return "", errors.New("keystone: no token result for the service user")
	}
	u, err := res.ExtractUser()
	if err != nil {
		return "", err
	}
	k.serviceUserID = u.ID
	return u.ID, nil
}

// CreateTrust implements Source.
func (k *Keystone) CreateTrust(ctx context.Context, caller reqctx.Identity) (string, error) {
	trustee, err := k.serviceUser(ctx)
	if err != nil {
		return "", err
	}
	pc, err := k.provider(caller.AuthToken)
	if err != nil {
		return "", err
	}
	idc, err := openstack.NewIdentityV3(pc, gophercloud.EndpointOpts{})
	if err != nil {
		return "", err
	}
	roles := make([]trusts.Role, len(caller.Roles))
	for i, r := range caller.Roles {
		roles[i] = trusts.Role{Name: r}
	}
	t, err := trusts.Create(ctx, idc, trusts.CreateOpts{
		TrustorUserID: caller.UserID, TrusteeUserID: trustee, Impersonation: true,
		ProjectID: caller.ProjectID, Roles: roles,
	}).Extract()
	if err != nil {
		if transient(err) {
			return "", errdefs.Wrap(errdefs.KindUnavailable, err, "Trust creation failed for function; the identity service is unavailable, try again later.")
		}
		return "", errdefs.Wrap(errdefs.KindForbidden, err, "Trust creation failed for function.")
	}
	return t.ID, nil
}

// DeleteTrust implements Source. Keystone lets only the trustor (or an
// admin) delete a trust; a trust already gone is not an error.
func (k *Keystone) DeleteTrust(ctx context.Context, caller reqctx.Identity, trustID string) error {
	pc, err := k.provider(caller.AuthToken)
	if err != nil {
		return err
	}
	idc, err := openstack.NewIdentityV3(pc, gophercloud.EndpointOpts{})
	if err != nil {
		return err
	}
	err = trusts.Delete(ctx, idc, trustID).ExtractErr()
	if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return nil
	}
	return err
}

// asTrustee is an object-store client of the service user acting through
// trustID: the trustor's project's endpoint, the trustor's rights.
func (k *Keystone) asTrustee(ctx context.Context, trustID string) (*gophercloud.ServiceClient, error) {
	pc, err := k.provider("")
	if err != nil {
		return nil, err
	}
	err = openstack.Authenticate(ctx, pc, gophercloud.AuthOptions{
		IdentityEndpoint: k.cfg.AuthURL, Username: k.cfg.Username, Password: k.cfg.Password, DomainName: k.cfg.UserDomainName,
		Scope: &gophercloud.AuthScope{TrustID: trustID},
	})
	if err != nil {
		if transient(err) {
			return nil, identityError(err)
		}
		return nil, errdefs.Wrap(errdefs.KindForbidden, err,
			"The function's Keystone trust is no longer usable (its owner may have lost a role or been removed); create the function again.")
	}
	return openstack.NewObjectStorageV1(pc, k.endpointOpts())
}

// Fetch implements Source.
func (k *Keystone) Fetch(ctx context.Context, trustID string, o Object) (io.ReadCloser, error) {
	if trustID == "" {
		return nil, errdefs.New(errdefs.KindForbidden, "The function has no Keystone trust to read its Swift object %s with; create the function again.", o)
	}
	sc, err := k.asTrustee(ctx, trustID)
	if err != nil {
		return nil, err
	}
	rc, err := Open(ctx, sc, k.cfg.Retry, o)
	return rc, fetchError(err, o)
}

// fetchError says what went wrong with a recorded object, in words a
// function's owner can act on.
func fetchError(err error, o Object) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrChanged):
		return errdefs.Wrap(errdefs.KindConflict, err,
			"The Swift object %s changed after the function recorded it (ETag %s); run 'openstack function update' on the function to use the new content.", o, o.ETag)
	case errors.Is(err, ErrMissing):
		return errdefs.Wrap(errdefs.KindNotFound, err,
			"The Swift object %s of the function no longer exists; upload it again and run 'openstack function update' on the function.", o)
	case errors.Is(err, ErrDenied):
		return errdefs.Wrap(errdefs.KindForbidden, err, "Swift refused to read the object %s for the function's owner.", o)
	}
	return err
}
