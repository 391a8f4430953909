package dev

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/whp-dev/whp/console"
)

// Files under the data dir that hold the dev console's users.
const (
	ConsoleUsersFile    = "console-users.json"
	ConsolePasswordFile = "console-password"
)

// DemoUsers are the dev console's users, one per role; they share the
// password in ConsolePasswordFile.
var DemoUsers = map[string]string{"admin": console.RoleAdmin, "approver": console.RoleApprover, "viewer": console.RoleViewer,
	"demo": console.PartnerRole(DemoPartnerID)}

// consoleUsers reads the dev users file, creating it (and a random
// password, 0600) on first start. An operator may edit the file: it is
// read as it is.
func consoleUsers(dataDir string) (console.Users, error) {
	path := filepath.Join(dataDir, ConsoleUsersFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		raw := make([]byte, 12)
		rand.Read(raw)
		password := hex.EncodeToString(raw)
		hash, err := console.HashPassword(password)
		if err != nil {
			return console.Users{}, err
		}
		var u console.Users
		for _, name := range []string{"admin", "approver", "viewer", "demo"} {
			u.Users = append(u.Users, console.User{Name: name, Role: DemoUsers[name], PasswordHash: hash})
		}
		b, _ := json.MarshalIndent(u, "", "  ")
		if err := os.WriteFile(filepath.Join(dataDir, ConsolePasswordFile), []byte(password+"\n"), 0o600); err != nil {
			return console.Users{}, fmt.Errorf("console password: %w", err)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return console.Users{}, fmt.Errorf("console users: %w", err)
		}
	}
	return console.LoadUsers(path)
}

// ConsolePassword is the dev users' password, for the banner and tests.
func ConsolePassword(dataDir string) string {
	b, _ := os.ReadFile(filepath.Join(dataDir, ConsolePasswordFile))
	return strings.TrimSpace(string(b))
}
