package keystore

import (
	"net/url"
	"strings"
)

// RedactDSN hides passwords in a DSN so that it can be logged or shown in
// an error: the password of the user information and the value of every
// query parameter whose name contains "password" (password, sslpassword,
// in any case or percent-encoding) of a URL, even one that does not
// parse, and the same parameters of the key=value form
// (host=… password=…).
func RedactDSN(dsn string) string {
	if !strings.Contains(dsn, "://") {
		return redactKeyValue(dsn)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return redactUnparsable(dsn)
	}
	if u.Scheme == "" || u.Opaque != "" {
		return dsn
	}
	changed := false
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), redactedPassword)
		changed = true
	}
	if q, ok := redactQuery(u.RawQuery); ok {
		u.RawQuery = q
		changed = true
	}
	if !changed {
		return dsn
	}
	return u.String()
}

const redactedPassword = "xxxxx"

// isPasswordParam reports whether a parameter name (raw, as in a URL
// query) names a password.
func isPasswordParam(raw string) bool {
	name, err := url.QueryUnescape(raw)
	if err != nil {
		name = raw
	}
	return strings.Contains(strings.ToLower(name), "password")
}

// redactQuery masks the password parameters of a raw URL query, keeping
// everything else as written, and reports whether it masked any.
func redactQuery(raw string) (string, bool) {
	if raw == "" {
		return raw, false
	}
	parts := strings.Split(raw, "&")
	changed := false
	for i, part := range parts {
		name, value, _ := strings.Cut(part, "=")
		if value != "" && isPasswordParam(name) {
			parts[i] = name + "=" + redactedPassword
			changed = true
		}
	}
	return strings.Join(parts, "&"), changed
}

// redactUnparsable hides whatever sits between "scheme://user:" and the
// last "@" of a DSN that is not a valid URL, and the password parameters
// of its query.
func redactUnparsable(dsn string) string {
	scheme := strings.Index(dsn, "://")
	if scheme < 0 {
		return dsn
	}
	rest := dsn[scheme+3:]
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if colon := strings.IndexByte(rest[:at], ':'); colon >= 0 {
			rest = rest[:colon] + ":" + redactedPassword + rest[at:]
		}
	}
	// The query starts at the first '?' after the user information.
	from := strings.LastIndex(rest, "@") + 1
	if q := strings.IndexByte(rest[from:], '?'); q >= 0 {
		q += from + 1
		end := len(rest)
		if hash := strings.IndexByte(rest[q:], '#'); hash >= 0 {
			end = q + hash
		}
		masked, _ := redactQuery(rest[q:end])
		rest = rest[:q] + masked + rest[end:]
	}
	return dsn[:scheme+3] + rest
}

// redactKeyValue masks the password values of a key=value DSN
// ("host=h password='a b'"): values may be single-quoted, with backslash
// escapes, and spaces may surround '='. It never fails: text it cannot
// make sense of is left as it is, and an unterminated value runs to the
// end.
func redactKeyValue(dsn string) string {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' }
	var out strings.Builder
	copied, i := 0, 0
	for i < len(dsn) {
		for i < len(dsn) && isSpace(dsn[i]) {
			i++
		}
		keyStart := i
		for i < len(dsn) && dsn[i] != '=' && !isSpace(dsn[i]) {
			i++
		}
		key := dsn[keyStart:i]
		for i < len(dsn) && isSpace(dsn[i]) {
			i++
		}
		if i >= len(dsn) || dsn[i] != '=' {
			continue
		}
		i++
		for i < len(dsn) && isSpace(dsn[i]) {
			i++
		}
		valueStart := i
		quoted := i < len(dsn) && dsn[i] == '\''
		if quoted {
			i++
		}
		for i < len(dsn) {
			c := dsn[i]
			if quoted && c == '\'' {
				i++
				break
			}
			if !quoted && isSpace(c) {
				break
			}
			if c == '\\' {
				i++
			}
			i++
		}
		i = min(i, len(dsn))
		if i > valueStart && strings.Contains(strings.ToLower(key), "password") {
			out.WriteString(dsn[copied:valueStart])
			out.WriteString(redactedPassword)
			copied = i
		}
	}
	if copied == 0 {
		return dsn
	}
	out.WriteString(dsn[copied:])
	return out.String()
}
