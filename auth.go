package rthub

import "time"

// Identity is who a connection belongs to, taken from its verified token.
// The hub never modifies an Identity after handing it out; treat it as read-only.
type Identity struct {
	// Subject is the token's sub claim: the user (or device) ID. Never empty.
	Subject string
	// Name is the token's name claim, if any, for display (presence lists).
	Name string
	// Roles are the roles from the token's role claim (AuthOptions.RolesClaim).
	Roles []string
	// ExpiresAt is the token's exp claim; zero if the token has none.
	ExpiresAt time.Time
	// Claims holds every claim of the token, as decoded JSON.
	Claims map[string]any
}

// HasRole reports whether id has the given role.
func (id *Identity) HasRole(role string) bool {
	for _, r := range id.Roles {
		if r == role {
			return true
		}
	}
	return false
}
