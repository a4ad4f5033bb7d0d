#pragma once
// The verifier's token-signing keys: P-256 keys persisted in one directory, one current key that
// signs attestation tokens (ES256, kid header) and retired keys that stay in the published JWKS
// until every token they signed has expired.
//
// On-disk layout (the directory is created 0700):
//   <dir>/<kid>.key.pem  PKCS#8 PEM private key, mode 0600, written atomically; kid is the key's
//                        RFC 7638 thumbprint, so a file can be checked against its name.
//   <dir>/state.json     {"current": kid, "keys": [{"kid", "created", "retired_at"?}]}, times in
//                        RFC 3339 (UTC), written atomically after the key file it names.
// Retired keys are kept on disk; only the JWKS prunes them. Private key material never leaves this
// class (not in errors, not in any accessor).
//
// Thread-safety: all methods are thread-safe (Sign and Jwks run concurrently; Rotate excludes
// them). Two stores must not share a directory: there is no cross-process lock.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace pml::attestation {

// Public facts about one key (no key material).
struct SigningKeyInfo {
  std::string kid;
  absl::Time created;
  std::optional<absl::Time> retired_at;  // unset for the current key
};

class SigningKeyStore {
 public:
  // Opens the store in `dir`, creating the directory (0700) and a first key (created at `now`)
  // when it holds no state.json yet. On reopen every key named in state.json is loaded and
  // checked. Errors name the file:
  //   kFailedPrecondition: the directory is group/world writable; a key file is group/world
  //     accessible, not a regular file, or not owned by this user; a key's thumbprint differs from
  //     its kid; a key is not P-256; the current key is marked retired.
  //   kNotFound: a key file named in state.json is missing.
  //   kInvalidArgument: state.json or a key file is malformed (the field is named).
  //   kInternal: I/O or OpenSSL failure.
  static absl::StatusOr<std::unique_ptr<SigningKeyStore>> Open(absl::string_view dir,
                                                               absl::Time now);

  SigningKeyStore(const SigningKeyStore&) = delete;
  SigningKeyStore& operator=(const SigningKeyStore&) = delete;
  ~SigningKeyStore();

  // Generates a new key, makes it current and marks the previous current key retired at `now`;
  // both files are written before the in-memory state changes, so on error (kInternal) the store
  // is unchanged (a new key file may be left behind, unreferenced). Returns the new kid.
  absl::StatusOr<std::string> Rotate(absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);

  // The JWK Set ({"keys": [...]}, as lib/crypto JwkSet::Parse reads it) relying parties verify
  // with: the current key first, then each retired key whose retired_at + max_token_lifetime is
  // after `now`, newest first. `max_token_lifetime` must be at least the lifetime of every token
  // Sign was given, or tokens signed just before a rotation stop verifying early.
  nlohmann::json Jwks(absl::Time now, absl::Duration max_token_lifetime) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Signs `payload` with the current key as a compact JWS (ES256, header {"alg","kid","typ"}).
  // When the payload has no "iat", it is set to `now` (Unix seconds). kInvalidArgument when the
  // payload is not an object or has no numeric "exp" after `now` (tokens must expire, and
  // Jwks() relies on it); kInternal when signing fails.
  absl::StatusOr<std::string> Sign(const nlohmann::json& payload, absl::Time now) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // The current key's kid.
  std::string CurrentKid() const ABSL_LOCKS_EXCLUDED(mu_);
  // All keys in state.json order (oldest first).
  std::vector<SigningKeyInfo> Keys() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Key;  // defined in the .cc: info, private key and cached JWK

  explicit SigningKeyStore(std::string dir);
  absl::Status WriteState(const std::vector<Key>& keys, const std::string& current) const;

  const std::string dir_;
  mutable absl::Mutex mu_;
  std::vector<Key> keys_ ABSL_GUARDED_BY(mu_);
  std::string current_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pml::attestation
