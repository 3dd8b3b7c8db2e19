package keystore

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// minPepperDistinct is the fewest distinct byte values the decoded pepper
// may hold. 32 random bytes hold about 30 (fewer than 20 practically
// never); a repeated character, or a pattern of up to 16 bytes repeated,
// holds at most 16.
const minPepperDistinct = 20

// pepperHint ends every pepper error: how to make a good one.
const pepperHint = "; make one with `openssl rand -hex 32`"

// ValidatePepper checks that p (surrounding whitespace ignored) encodes
// at least MinPepperLen random bytes, as hex or base64 (standard or URL
// alphabet, padded or not). It refuses values that cannot hold that much:
// passphrases, short strings, a repeated character or pattern. The store
// keeps a check value derived from the pepper, so whoever holds a database
// dump can test guesses offline; only a long random pepper makes that
// hopeless. Errors never contain the pepper.
func ValidatePepper(p []byte) error {
	p = bytes.TrimSpace(p)
	// Raw base64 is the densest accepted form: 43 characters for 32 bytes.
	if len(p) < base64.RawStdEncoding.EncodedLen(MinPepperLen) {
		return errors.New("pepper is too short: it must be at least 32 random bytes, hex encoded (64 characters) " +
			"or base64 encoded (44 characters)" + pepperHint)
	}
	raw, isHex, ok := decodePepper(p)
	if !ok {
		return errors.New("pepper is neither hex nor base64: it must be at least 32 random bytes in one of these " +
			"encodings (a passphrase is not a pepper)" + pepperHint)
	}
	if len(raw) < MinPepperLen {
		return fmt.Errorf("pepper is too short: it decodes to %d bytes, at least %d random bytes are needed%s",
			len(raw), MinPepperLen, pepperHint)
	}
	var seen [256]bool
	distinct := 0
	for _, b := range raw {
		if !seen[b] {
			seen[b] = true
			distinct++
		}
	}
	if distinct < minPepperDistinct {
		return errors.New("pepper is not random: its decoded bytes repeat a few values " +
			"(a repeated character or a short repeated pattern)" + pepperHint)
	}
	if !isHex && !looksRandomBase64(p) {
		return errors.New("pepper looks like words, not random bytes: base64 of random bytes mixes upper and " +
			"lower case letters with digits or symbols" + pepperHint)
	}
	return nil
}

// looksRandomBase64 tells random bytes in base64 from text that merely
// uses its alphabet (a passphrase without spaces, "ThisIsMySecret…"): the
// former mixes upper and lower case and, all but surely, digits or
// symbols too; without them it still draws on most of the 52 letters.
// 43 random characters lack a digit and a symbol once in about 7,700
// tries, and then also lack the letter variety about half of the time.
func looksRandomBase64(p []byte) bool {
	var upper, lower, other bool
	var seen [256]bool
	distinct := 0
	for _, c := range p {
		switch {
		case c >= 'A' && c <= 'Z':
			upper = true
		case c >= 'a' && c <= 'z':
			lower = true
		case c == '=':
			continue
		default:
			other = true
		}
		if !seen[c] {
			seen[c] = true
			distinct++
		}
	}
	return upper && lower && (other || distinct >= 30)
}

// decodePepper decodes p as hex or, failing that, base64. A value made of
// hex digits is taken as hex: that is how `openssl rand -hex` prints.
func decodePepper(p []byte) (raw []byte, isHex, ok bool) {
	if raw, err := hex.DecodeString(string(p)); err == nil {
		return raw, true, true
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if raw, err := enc.DecodeString(string(p)); err == nil {
			return raw, false, true
		}
	}
	return nil, false, false
}

// PepperFileFor returns where the generated pepper of an embedded store
// lives: beside the database file.
func PepperFileFor(dbPath string) string { return dbPath + ".pepper" }

// LoadOrCreatePepperFile returns the pepper kept in path, creating the file
// with a fresh random pepper (32 bytes, hex encoded) and mode 0600 if it
// does not exist. Two processes racing to create it end up with the same
// pepper: the file appears atomically (link of a complete temporary file),
// and the loser reads the winner's.
func LoadOrCreatePepperFile(path string) ([]byte, error) {
	p, err := ReadPepperFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return p, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating directory for pepper file: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("generating pepper: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".pepper-*")
	if err != nil {
		return nil, fmt.Errorf("writing pepper file: %w", err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file with mode 0600.
	_, werr := tmp.WriteString(hex.EncodeToString(raw) + "\n")
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return nil, fmt.Errorf("writing pepper file: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("writing pepper file: %w", err)
	}
	return ReadPepperFile(path)
}

// ReadPepperFile returns the pepper kept in path, surrounding whitespace
// removed. A file that group or others can read is refused: the pepper
// is the one secret that makes the stored digests useless to a thief.
// The one exception is a systemd credential (LoadCredential=): a file
// directly in $CREDENTIALS_DIRECTORY, which systemd sets up for this
// service alone; there the group bits show the mask of the ACL through
// which systemd lets the service user read the file. Others may still
// not read it.
func ReadPepperFile(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading pepper file: %w", err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 && !(perm&0o007 == 0 && isCredential(path)) {
		return nil, fmt.Errorf("pepper file %s is readable by other users (mode %v); run: chmod 600 %s", path, info.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading pepper file: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) < MinPepperLen {
		return nil, fmt.Errorf("pepper file %s holds fewer than %d bytes", path, MinPepperLen)
	}
	return b, nil
}

// isCredential reports whether path is a file directly in the systemd
// credentials directory of this service ($CREDENTIALS_DIRECTORY).
func isCredential(path string) bool {
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	if dir == "" || !filepath.IsAbs(dir) {
		return false
	}
	abs, err := filepath.Abs(path)
	return err == nil && filepath.Dir(abs) == filepath.Clean(dir)
}
