package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Roles. A partner user's role is "partner:" followed by the partner ID.
const (
	RoleAdmin    = "admin"
	RoleApprover = "approver"
	RoleViewer   = "viewer"
	partnerRole  = "partner:"
)

// PartnerRole is the role of a user of partner id's portal.
func PartnerRole(id string) string { return partnerRole + id }

// partnerOf returns the partner a role is scoped to, if it is a partner
// role.
func partnerOf(role string) (string, bool) {
	id, ok := strings.CutPrefix(role, partnerRole)
	if !ok || id == "" {
		return "", false
	}
	return id, true
}

// validRole reports whether role is one the console knows.
func validRole(role string) bool {
	switch role {
	case RoleAdmin, RoleApprover, RoleViewer:
		return true
	}
	_, ok := partnerOf(role)
	return ok
}

// User is a local user (whp dev, or a small installation without OIDC).
type User struct {
	Name         string `json:"name"`
	Role         string `json:"role"`
	PasswordHash string `json:"password_hash"` // bcrypt
}

// Users is a users file: {"users": [...]}.
type Users struct {
	Users []User `json:"users"`
}

// LoadUsers reads a users file and checks every entry.
func LoadUsers(path string) (Users, error) {
	var u Users
	b, err := os.ReadFile(path)
	if err != nil {
		return u, fmt.Errorf("console users: %w", err)
	}
	if err := json.Unmarshal(b, &u); err != nil {
		return u, fmt.Errorf("console users %s: %w", path, err)
	}
	for i, x := range u.Users {
		if x.Name == "" || !validRole(x.Role) || !strings.HasPrefix(x.PasswordHash, "$2") {
			return u, fmt.Errorf("console users %s: entry %d (%q) needs a name, a role (admin, approver, viewer or partner:<id>) and a bcrypt password_hash", path, i, x.Name)
		}
	}
	return u, nil
}

// errBadLogin is the one answer to a wrong name or password, so neither
// can be guessed apart.
var errBadLogin = errors.New("unknown user or wrong password")

// check verifies a login; it spends a bcrypt comparison even for an
// unknown name, so the timing does not tell names apart.
func (u Users) check(name, password string) (User, error) {
	for _, x := range u.Users {
		if subtle.ConstantTimeCompare([]byte(x.Name), []byte(name)) == 1 {
			if bcrypt.CompareHashAndPassword([]byte(x.PasswordHash), []byte(password)) != nil {
				return User{}, errBadLogin
			}
			return x, nil
		}
	}
	bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
	return User{}, errBadLogin
}

var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("whp-no-such-user"), bcrypt.MinCost)

// HashPassword hashes a password for a users file.
func HashPassword(password string) (string, error) {
	b, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	return string(b), err
}

// session is what the session cookie carries: who, their role, until
// when, and the CSRF token their forms must return.
type session struct {
	User    string `json:"u"`
	Role    string `json:"r"`
	Expires int64  `json:"e"`
	CSRF    string `json:"c"`
}

const sessionCookie = "whp_console"

// sessions signs and reads session cookies (HMAC-SHA256).
type sessions struct {
	key    []byte
	ttl    time.Duration
	secure bool // Secure cookies (https); off only in dev over http
	now    func() time.Time
}

func newToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *sessions) sign(payload string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// issue sets a new session cookie for user (a fresh CSRF token with it).
func (s *sessions) issue(w http.ResponseWriter, user, role string) session {
	ss := session{User: user, Role: role, Expires: s.now().Add(s.ttl).Unix(), CSRF: newToken()}
	b, _ := json.Marshal(ss)
	payload := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: payload + "." + s.sign(payload), Path: "/console/",
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode, MaxAge: int(s.ttl.Seconds())})
	return ss
}

// read returns the request's valid session.
func (s *sessions) read(r *http.Request) (session, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return session{}, false
	}
	payload, sig, ok := strings.Cut(c.Value, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(s.sign(payload))) {
		return session{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return session{}, false
	}
	var ss session
	if json.Unmarshal(b, &ss) != nil || s.now().Unix() >= ss.Expires || !validRole(ss.Role) {
		return session{}, false
	}
	return ss, true
}

func (s *sessions) clear(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/console/", HttpOnly: true, Secure: s.secure,
		SameSite: http.SameSiteLaxMode, MaxAge: -1})
}
