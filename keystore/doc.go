// Package keystore holds Keygate's key model and everything needed to
// issue and check a key without a web server: the key format (generate,
// parse, checksum), peppered hashing, the lifecycle service, and the Store
// interface, made of small ones (Keys, UsageStore, AuditLog, ChangeFeed,
// Migrator, Registry). The backends live in packages of their own,
// keystore/postgres and keystore/sqlite, each with its schema; they
// register with Open (see Backend) and share what is not SQL from here.
// Package keystore/storetest is the conformance suite both pass.
//
// A key travels as one string:
//
//	<prefix>_<id>_<secret><checksum>
//
// The prefix (default "kg") tells people and secret scanners what the
// string is; the id is public and names the key in logs, headers and the
// CLI; the secret carries 256 bits from crypto/rand; the checksum (CRC32)
// lets Parse reject typos and random strings without touching a store.
// Only the HMAC-SHA-256 of the whole string under a server-side pepper is
// ever stored, so a database dump lets nobody use or forge a key.
package keystore
