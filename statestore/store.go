// Package statestore keeps prompt documents in the Dapr state store: one
// immutable JSON document per prompt version, written through a daprd
// sidecar's gRPC API. In production the sidecar is deployed next to Bud;
// package daprd runs one as a child process for `bud dev` and the tests.
package statestore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	daprdeploy "github.com/budhq/bud/deploy/dapr"
)

// StoreName is the state store component that keeps prompt documents.
const StoreName = daprdeploy.StateStoreName

// CallTimeout bounds each call to daprd, so that a sidecar that is down or
// stuck yields ErrUnavailable instead of a hang.
const CallTimeout = 3 * time.Second

// healthKey is read, never written, by Healthy.
const healthKey = "bud:healthz"

var (
	// ErrNotFound: no document is stored under the key.
	ErrNotFound = errors.New("document not found")
	// ErrExists: Put found a different document under the key; documents
	// are immutable.
	ErrExists = errors.New("a different document exists under this key")
	// ErrUnavailable: daprd cannot be reached, or cannot reach the database
	// behind the store. Callers answer 503 "state store unavailable".
	ErrUnavailable = errors.New("state store unavailable")
)

// Store reads and writes prompt documents through daprd. It is safe for
// concurrent use.
type Store struct {
	conn      *grpc.ClientConn
	client    dapr.Client
	storeName string
}

// NewStore returns a Store that talks to the daprd gRPC API at grpcAddr
// (host:port) and uses the state store component storeName (StoreName if
// empty). It does not wait for daprd: the connection is made on first use
// and re-made after daprd restarts; Healthy says whether it serves. Close
// releases the connection. opts add, for example, daprd's API token.
func NewStore(grpcAddr, storeName string, opts ...Option) (*Store, error) {
	if grpcAddr == "" {
		return nil, errors.New("statestore: new store: empty daprd address")
	}
	if storeName == "" {
		storeName = StoreName
	}
	// go-sdk's own constructors block until daprd answers and print to
	// stdout; a lazy connection lets Bud start before its sidecar. daprd is
	// on loopback, so reconnecting is cheap: retry at most every 2s rather
	// than gRPC's default of up to 2 minutes, which would keep failing calls
	// long after a restarted daprd is back.
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	dialOpts := []grpc.DialOption{}
	if o.apiToken != "" {
		dialOpts = append(dialOpts, grpc.WithUnaryInterceptor(withAPIToken(o.apiToken)))
	}
	conn, err := grpc.NewClient(grpcAddr, append(dialOpts,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUserAgent("bud"),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 2 * time.Second,
		}),
	)...)
	if err != nil {
		return nil, fmt.Errorf("statestore: new store: %w", err)
	}
	return &Store{conn: conn, client: dapr.NewClientWithConnection(conn), storeName: storeName}, nil
}

// Option configures a Store.
type Option func(*options)

type options struct {
	apiToken string
}

// WithAPIToken sends token with every call, for a daprd started with an
// API token (DAPR_API_TOKEN); such a daprd refuses calls without it.
func WithAPIToken(token string) Option {
	return func(o *options) { o.apiToken = token }
}

// withAPIToken adds daprd's API token to each call's metadata.
func withAPIToken(token string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(metadata.AppendToOutgoingContext(ctx, daprdeploy.APITokenHeader, token), method, req, reply, cc, opts...)
	}
}

// Close releases the connection to daprd.
func (s *Store) Close() error {
	return s.conn.Close()
}

// DocumentKey is the key of a prompt version's document: "prompt:<id>:v<n>".
func DocumentKey(promptID uuid.UUID, version int) string {
	return "prompt:" + promptID.String() + ":v" + strconv.Itoa(version)
}

// ContentKey is the key under which a document is kept by its content,
// "document:sha256:<hex SHA-256 of doc>": the same bytes always get the same
// key and other bytes another, so Put under it is first-write-wins without
// a conflict, and a document that many runs carried is stored once.
func ContentKey(doc []byte) string {
	sum := sha256.Sum256(doc)
	return "document:sha256:" + hex.EncodeToString(sum[:])
}

// Put stores doc, which must be JSON, under key. The first write wins: when
// the key already holds a document, Put returns nil if it is byte-for-byte
// doc (so a retried Put is harmless) and ErrExists otherwise, and the stored
// document is left unchanged. The bytes are stored and returned as given.
func (s *Store) Put(ctx context.Context, key string, doc []byte) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("statestore: put: %w", err)
	}
	if !json.Valid(doc) {
		return fmt.Errorf("statestore: put %q: document is not valid JSON", key)
	}
	cctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	// No content type: with application/json daprd decodes and re-encodes
	// the value, which sorts keys, escapes <, > and &, and rounds integers
	// beyond 2^53 (a seed, say). Stored as bytes, a document comes back as
	// it was put.
	err := s.client.SaveState(cctx, s.storeName, key, doc, nil, dapr.WithConcurrency(dapr.StateConcurrencyFirstWrite))
	if err == nil {
		return nil
	}
	what := fmt.Sprintf("put %q", key)
	if ctx.Err() != nil || unreachable(err) {
		return wrap(ctx, what, err)
	}
	// A first-write refusal comes back as a generic Internal error ("no
	// item was updated"), so look at what is stored instead of parsing it.
	stored, getErr := s.Get(ctx, key)
	switch {
	case getErr == nil && bytes.Equal(stored, doc):
		return nil
	case getErr == nil:
		return fmt.Errorf("statestore: %s: %w", what, ErrExists)
	case errors.Is(getErr, ErrNotFound):
		return wrap(ctx, what, err)
	default:
		return getErr
	}
}

// Get returns the document stored under key, or ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("statestore: get: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	item, err := s.client.GetState(cctx, s.storeName, key, nil)
	if err != nil {
		return nil, wrap(ctx, fmt.Sprintf("get %q", key), err)
	}
	// A stored row always has an etag; Put never stores an empty document.
	if item.Etag == "" && len(item.Value) == 0 {
		return nil, fmt.Errorf("statestore: get %q: %w", key, ErrNotFound)
	}
	return item.Value, nil
}

// Delete removes the document under key. Deleting an absent key succeeds.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("statestore: delete: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	if err := s.client.DeleteState(cctx, s.storeName, key, nil); err != nil {
		return wrap(ctx, fmt.Sprintf("delete %q", key), err)
	}
	return nil
}

// DeleteMany removes the documents under keys in one call to daprd; absent
// keys are skipped. It is not atomic: after an error, some may be deleted,
// and repeating the call is safe.
func (s *Store) DeleteMany(ctx context.Context, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return fmt.Errorf("statestore: delete many: %w", err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	if err := s.client.DeleteBulkState(cctx, s.storeName, keys, nil); err != nil {
		return wrap(ctx, fmt.Sprintf("delete many (%d keys)", len(keys)), err)
	}
	return nil
}

// Healthy returns nil when daprd answers and the store serves a read (so the
// database behind it is up); otherwise an error wrapping ErrUnavailable. For
// /readyz.
func (s *Store) Healthy(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	if _, err := s.client.GetState(cctx, s.storeName, healthKey, nil); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("statestore: healthy: %w", ctx.Err())
		}
		return fmt.Errorf("statestore: healthy: %w: %w", ErrUnavailable, err)
	}
	return nil
}

// checkKey rejects keys daprd would refuse: empty, or containing "||",
// which separates a key from its prefix.
func checkKey(key string) error {
	if key == "" {
		return errors.New("empty key")
	}
	if strings.Contains(key, "||") {
		return fmt.Errorf("key %q contains \"||\"", key)
	}
	return nil
}

// unreachable reports errors that mean daprd did not answer: no
// connection, or no answer within CallTimeout.
func unreachable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// wrap names the operation and classifies err: the caller's own
// cancellation or deadline first; then ErrUnavailable when daprd did not
// answer or failed inside the component (daprd reports database errors as
// Internal).
func wrap(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("statestore: %s: %w", what, ctx.Err())
	}
	if unreachable(err) || status.Code(err) == codes.Internal {
		return fmt.Errorf("statestore: %s: %w: %w", what, ErrUnavailable, err)
	}
	return fmt.Errorf("statestore: %s: %w", what, err)
}
