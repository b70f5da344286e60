package daemon

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wiz-run/wiz/core/ids"
	"github.com/wiz-run/wiz/core/store"
	"github.com/wiz-run/wiz/proto/wizpb"
	"github.com/wiz-run/wiz/proto/wizrpc"
)

// TokenPrefix starts every secret, so that leaked tokens are easy to find.
const TokenPrefix = "wiz_"

// NewSecret makes a fresh token secret.
func NewSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// Hash returns the hex sha256 of a secret: what the store keeps.
func Hash(secret string) string {
	s := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(s[:])
}

// need is the least role each method needs. Methods not listed need admin.
var need = map[string]wizpb.Role{
	"/wizrpc.v1.Manager/ListPipelines": wizpb.Role_ROLE_VIEWER,
	"/wizrpc.v1.Manager/GetPipeline":   wizpb.Role_ROLE_VIEWER,
	"/wizrpc.v1.Manager/WatchRun":      wizpb.Role_ROLE_VIEWER,
	"/wizrpc.v1.Manager/ListRuns":      wizpb.Role_ROLE_VIEWER,
	"/wizrpc.v1.Manager/GetRun":        wizpb.Role_ROLE_VIEWER,
	"/wizrpc.v1.Manager/GetLogs":       wizpb.Role_ROLE_VIEWER,
	"/wizrpc.v1.Manager/GetOutput":     wizpb.Role_ROLE_VIEWER,
	"/wizrpc.v1.Manager/ApplyPipeline": wizpb.Role_ROLE_RUNNER,
	"/wizrpc.v1.Manager/StartRun":      wizpb.Role_ROLE_RUNNER,
	"/wizrpc.v1.Manager/UploadBlob":    wizpb.Role_ROLE_RUNNER,
	"/wizrpc.v1.Manager/CancelRun":     wizpb.Role_ROLE_RUNNER,
	"/wizrpc.v1.Manager/ListCache":     wizpb.Role_ROLE_VIEWER,
	"/wizrpc.v1.Manager/ClearCache":    wizpb.Role_ROLE_RUNNER,
	// SetSecret and DeleteSecret need the admin role (not listed).
	"/wizrpc.v1.Secrets/ListSecrets":      wizpb.Role_ROLE_RUNNER,
	"/wizrpc.v1.Schedules/ListSchedules":  wizpb.Role_ROLE_VIEWER,
	"/wizrpc.v1.Schedules/PauseSchedule":  wizpb.Role_ROLE_RUNNER,
	"/wizrpc.v1.Schedules/ResumeSchedule": wizpb.Role_ROLE_RUNNER,
	"/wizrpc.v1.Schedules/Backfill":       wizpb.Role_ROLE_RUNNER,
	"/wizrpc.v1.Schedules/TriggerURL":     wizpb.Role_ROLE_RUNNER,
	// Reflection only describes the API; every token may use it.
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      wizpb.Role_ROLE_VIEWER,
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": wizpb.Role_ROLE_VIEWER,
}

// open methods need no token: health checks, for load balancers and probes.
func open(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.Health/")
}

// auth checks bearer tokens against the store.
type auth struct {
	st  *store.Store
	now func() time.Time
}

type tokenKey struct{}

// check returns the caller's token, or Unauthenticated / PermissionDenied.
func (a *auth) check(ctx context.Context, method string) (*wizpb.Token, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return nil, status.Error(codes.Unauthenticated, "no token: every call needs a bearer token")
	}
	// RFC 7235: the scheme is case-insensitive ("bearer TOKEN" too).
	scheme, secret, ok := strings.Cut(vals[0], " ")
	secret = strings.TrimLeft(secret, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return nil, status.Error(codes.Unauthenticated, "the authorization header is not \"Bearer TOKEN\"")
	}
	h := Hash(secret)
	t, err := a.st.TokenByHash(h)
	if err != nil || subtle.ConstantTimeCompare([]byte(t.Hash), []byte(h)) != 1 {
		return nil, status.Error(codes.Unauthenticated, "unknown token")
	}
	if t.Revoked {
		return nil, status.Errorf(codes.Unauthenticated, "token %s was revoked", t.Name)
	}
	if t.Expires != nil && a.now().After(t.Expires.AsTime()) {
		return nil, status.Errorf(codes.Unauthenticated, "token %s expired at %s", t.Name, t.Expires.AsTime().Format(time.RFC3339))
	}
	want, ok := need[method]
	if !ok {
		want = wizpb.Role_ROLE_ADMIN
	}
	if t.Role < want {
		return nil, status.Errorf(codes.PermissionDenied, "token %s has role %s, and %s needs %s", t.Name, RoleName(t.Role), method[strings.LastIndexByte(method, '/')+1:], RoleName(want))
	}
	return t, nil
}

func (a *auth) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if open(info.FullMethod) {
		return h(ctx, req)
	}
	t, err := a.check(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return h(context.WithValue(ctx, tokenKey{}, t), req)
}

func (a *auth) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if open(info.FullMethod) {
		return h(srv, ss)
	}
	if _, err := a.check(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return h(srv, ss)
}

// RoleName is a role as users write it.
func RoleName(r wizpb.Role) string {
	switch r {
	case wizpb.Role_ROLE_VIEWER:
		return "viewer"
	case wizpb.Role_ROLE_RUNNER:
		return "runner"
	case wizpb.Role_ROLE_ADMIN:
		return "admin"
	}
	return "none"
}

// ParseRole reads a role as users write it.
func ParseRole(s string) (wizpb.Role, error) {
	switch s {
	case "viewer":
		return wizpb.Role_ROLE_VIEWER, nil
	case "runner":
		return wizpb.Role_ROLE_RUNNER, nil
	case "admin":
		return wizpb.Role_ROLE_ADMIN, nil
	}
	return 0, fmt.Errorf("role %q: use admin, runner or viewer", s)
}

// tokens serves the Tokens API.
type tokens struct {
	wizrpc.UnimplementedTokensServer
	st *store.Store
}

// create makes and stores a token with the given secret, or a fresh one when
// secret is ""; it returns the secret.
func create(st *store.Store, name string, role wizpb.Role, ttl time.Duration, secret string) (*wizpb.Token, string, error) {
	if name == "" {
		return nil, "", errors.New("a token needs a name")
	}
	if secret == "" {
		var err error
		if secret, err = NewSecret(); err != nil {
			return nil, "", err
		}
	}
	t := &wizpb.Token{Id: ids.NewString(), Name: name, Role: role, Hash: Hash(secret), Created: timestamppb.Now()}
	if ttl > 0 {
		t.Expires = timestamppb.New(time.Now().Add(ttl))
	}
	if err := st.PutToken(t); err != nil {
		return nil, "", err
	}
	return t, secret, nil
}

func (s *tokens) CreateToken(_ context.Context, req *wizrpc.CreateTokenRequest) (*wizrpc.CreateTokenResponse, error) {
	if req.Role == wizpb.Role_ROLE_UNSPECIFIED {
		req.Role = wizpb.Role_ROLE_RUNNER
	}
	if req.ExpiresInSeconds < 0 {
		return nil, status.Error(codes.InvalidArgument, "a token's lifetime must be positive, or 0 for never")
	}
	all, err := s.st.Tokens()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	for _, t := range all {
		expired := t.Expires != nil && time.Now().After(t.Expires.AsTime())
		if t.Name == req.Name && !t.Revoked && !expired {
			return nil, status.Errorf(codes.AlreadyExists, "a token named %s exists; revoke it first or pick another name", req.Name)
		}
	}
	t, secret, err := create(s.st, req.Name, req.Role, time.Duration(req.ExpiresInSeconds)*time.Second, "")
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	t.Hash = ""
	return &wizrpc.CreateTokenResponse{Token: t, Secret: secret}, nil
}

func (s *tokens) ListTokens(context.Context, *wizrpc.ListTokensRequest) (*wizrpc.ListTokensResponse, error) {
	all, err := s.st.Tokens()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	for _, t := range all {
		t.Hash = ""
	}
	return &wizrpc.ListTokensResponse{Tokens: all}, nil
}

func (s *tokens) RevokeToken(_ context.Context, req *wizrpc.RevokeTokenRequest) (*wizrpc.RevokeTokenResponse, error) {
	all, err := s.st.Tokens()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	for _, t := range all {
		if (t.Id == req.IdOrName || t.Name == req.IdOrName) && !t.Revoked {
			t.Revoked = true
			if err := s.st.PutToken(t); err != nil {
				return nil, status.Error(codes.Internal, err.Error())
			}
			t.Hash = ""
			return &wizrpc.RevokeTokenResponse{Token: t}, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "no active token %q; `wiz token list` shows them", req.IdOrName)
}
