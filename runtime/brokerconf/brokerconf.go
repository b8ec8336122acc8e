// Package brokerconf writes the configuration an external broker needs to
// enforce what the embedded one enforces on a site with a key: for Debian's
// mosquitto, a password file (the instances' accounts derived from the site
// key and the operators' of bus.users, hashed as mosquitto_passwd does), an
// ACL file (what each account may publish and read, from site.yaml) and the
// listener lines that use them.
package brokerconf

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"

	"understudy/runtime/config"
	"understudy/sitekey"
)

// File names written into the output folder.
const (
	ConfFile     = "understudy.conf"
	PasswordFile = "understudy.passwd"
	ACLFile      = "understudy.acl"
)

// MaxPacketSize is the largest MQTT packet the generated listener accepts
// (as the embedded broker).
const MaxPacketSize = 1<<20 + 64<<10

// pbkdf2Iterations and saltSize are mosquitto_passwd's defaults for its
// PBKDF2-SHA512 hashes ("$7$").
const (
	pbkdf2Iterations = 101
	saltSize         = 12
)

// Mosquitto is the files for mosquitto (2.0 or later): name → content. dir
// is the folder they will be read from (the listener lines name the others
// by their full path there); listen is the listener's "port [address]".
func Mosquitto(site *config.Site, ring *sitekey.Ring, dir, listen string) (map[string][]byte, error) {
	if ring.Empty() {
		return nil, fmt.Errorf("broker-config: the site has no key (make one with `understudy keys new`)")
	}
	accounts := append(site.InstanceAccounts(ring), site.BrokerUsers()...)
	permissive := site.AuthMode() == config.AuthPermissive
	// The ACL lines before the first "user" are the anonymous clients'.
	var passwd, acl, users strings.Builder
	acl.WriteString("# written by understudy broker-config from " + filepath.Base(site.File) + "; regenerate it when site.yaml or the key changes\n")
	anonymous := permissive
	if permissive {
		// An upgrade under way: instances not yet upgraded connect as they
		// did, without an account (as the embedded broker does then).
		acl.WriteString("# auth: permissive: clients without an account may use the site's tree until auth is required\n")
		fmt.Fprintf(&acl, "topic readwrite understudy/%s/#\n", site.Name)
	}
	for _, u := range accounts {
		if u.Username == "" { // bus.anonymous: read
			anonymous = true
			if !permissive {
				for _, f := range u.Subscribe {
					fmt.Fprintf(&acl, "topic read %s\n", f)
				}
			}
			continue
		}
		if strings.ContainsAny(u.Username, ":\n\r") {
			return nil, fmt.Errorf("broker-config: username %q: mosquitto's files cannot hold ':' or a line break", u.Username)
		}
		// mosquitto keeps one password per account: the signing key's.
		hash, err := passwordHash(u.Password)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&passwd, "%s:%s\n", u.Username, hash)
		fmt.Fprintf(&users, "\nuser %s\n", u.Username)
		for _, f := range u.Publish {
			fmt.Fprintf(&users, "topic write %s\n", f)
		}
		for _, f := range u.Subscribe {
			fmt.Fprintf(&users, "topic read %s\n", f)
		}
	}
	acl.WriteString(users.String())
	conf := fmt.Sprintf(`# written by understudy broker-config for site %s: include it from mosquitto.conf
# (include_dir, or copy these lines), with %s and %s beside it.
per_listener_settings false
listener %s
allow_anonymous %v
password_file %s
acl_file %s
max_packet_size %d
`, site.Name, PasswordFile, ACLFile, listen, anonymous, filepath.Join(dir, PasswordFile), filepath.Join(dir, ACLFile), MaxPacketSize)
	return map[string][]byte{ConfFile: []byte(conf), PasswordFile: []byte(passwd.String()), ACLFile: []byte(acl.String())}, nil
}

// passwordHash hashes password as mosquitto_passwd does by default:
// $7$iterations$salt$hash, PBKDF2 with HMAC-SHA512, base64.
func passwordHash(password string) (string, error) {
	salt := make([]byte, saltSize)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("broker-config: salt: %w", err)
	}
	key, err := pbkdf2.Key(sha512.New, password, salt, pbkdf2Iterations, sha512.Size)
	if err != nil {
		return "", fmt.Errorf("broker-config: hash: %w", err)
	}
	return fmt.Sprintf("$7$%d$%s$%s", pbkdf2Iterations, base64.StdEncoding.EncodeToString(salt), base64.StdEncoding.EncodeToString(key)), nil
}
