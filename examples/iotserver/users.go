package main

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Passwords are stored as PBKDF2-SHA256 (standard library, no dependency):
// "pbkdf2-sha256$<iterations>$<salt>$<key>", base64 without padding.
const (
	pbkdf2Iterations = 60000
	pbkdf2KeyLen     = 32
)

// hashPassword returns the stored form of password.
func hashPassword(password string) (string, error) {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	key, err := pbkdf2.Key(sha256.New, password, salt, pbkdf2Iterations, pbkdf2KeyLen)
	if err != nil {
		return "", err
	}
	enc := base64.RawStdEncoding
	return fmt.Sprintf("pbkdf2-sha256$%d$%s$%s", pbkdf2Iterations, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// checkPassword reports whether password matches the stored hash, in
// constant time for a given hash.
func checkPassword(hash, password string) bool {
	f := strings.Split(hash, "$")
	if len(f) != 4 || f[0] != "pbkdf2-sha256" {
		return false
	}
	iter, err := strconv.Atoi(f[1])
	if err != nil || iter < 1 || iter > 10_000_000 {
		return false
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(f[2])
	want, err2 := enc.DecodeString(f[3])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got, err := pbkdf2.Key(sha256.New, password, salt, iter, len(want))
	return err == nil && subtle.ConstantTimeCompare(got, want) == 1
}

// dummyHash is checked against when the user does not exist, so that a
// login takes as long for an unknown user as for a wrong password.
var dummyHash, _ = hashPassword("not a password")

// seedUsers creates or replaces the given users.
func seedUsers(ctx context.Context, s Store, users []seedUser) error {
	for _, u := range users {
		h, err := hashPassword(u.Password)
		if err != nil {
			return err
		}
		if err := s.UpsertUser(ctx, User{Username: u.Username, Name: u.Name, Roles: []string{u.Role}, PasswordHash: h}); err != nil {
			return fmt.Errorf("user %s: %w", u.Username, err)
		}
	}
	return nil
}

// errBadLogin is the one answer to a wrong user name or password.
var errBadLogin = errors.New("wrong user name or password")

// login checks a user name and password against the store.
func login(ctx context.Context, s Store, username, password string) (User, error) {
	u, err := s.User(ctx, username)
	if errors.Is(err, ErrNotFound) {
		checkPassword(dummyHash, password)
		return User{}, errBadLogin
	}
	if err != nil {
		return User{}, err
	}
	if !checkPassword(u.PasswordHash, password) {
		return User{}, errBadLogin
	}
	return u, nil
}

// tokenClaims are the claims of the tokens the server issues; the hub reads
// sub, name, roles and exp (rthub.AuthOptions defaults).
type tokenClaims struct {
	jwt.RegisteredClaims
	Name  string   `json:"name,omitempty"`
	Roles []string `json:"roles"`
}

// issueToken signs an HS256 token for u, valid for ttl. Each token has a
// random ID (jti), so that two tokens issued to a user in the same second
// differ and one can be revoked alone (rthub.Revocation.TokenID).
func issueToken(secret []byte, u User, ttl time.Duration, now time.Time) (string, time.Time, error) {
	exp := now.Add(ttl).Truncate(time.Second)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			ID:        rand.Text(),
			Subject:   u.Username,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
		Name:  u.Name,
		Roles: u.Roles,
	}).SignedString(secret)
	return tok, exp, err
}

// verifyToken checks an HS256 token issued by issueToken.
func verifyToken(secret []byte, tok string) (*tokenClaims, error) {
	var c tokenClaims
	_, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
	if err != nil {
		return nil, err
	}
	if c.Subject == "" {
		return nil, errors.New("token has no subject")
	}
	return &c, nil
}

func (c *tokenClaims) hasRole(r string) bool { return slices.Contains(c.Roles, r) }
