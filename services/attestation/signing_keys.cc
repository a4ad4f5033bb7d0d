#include "services/attestation/signing_keys.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/memory/memory.h"
#include "absl/strings/str_cat.h"
#include "lib/core/file.h"
#include "lib/core/status.h"
#include "lib/crypto/jwt.h"
#include "lib/crypto/key.h"
#include "lib/crypto/ossl.h"
#include "lib/crypto/secret_bytes.h"

namespace pml::attestation {

struct SigningKeyStore::Key {
  SigningKeyInfo info;
  crypto::EvpPkeyPtr key;  // private
  nlohmann::json jwk;      // public JWK, computed once
};

namespace {

constexpr char kStateFile[] = "state.json";
constexpr size_t kMaxStateBytes = 1 << 20;
constexpr size_t kMaxKeyFileBytes = 64 << 10;
// A kid is a SHA-256 thumbprint: 43 base64url characters. Checking this also keeps a kid read
// from state.json from naming a path outside the directory.
constexpr size_t kKidLength = 43;

bool IsKid(absl::string_view kid) {
  return kid.size() == kKidLength && std::all_of(kid.begin(), kid.end(), [](char c) {
           return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_';
         });
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_full, t, absl::UTCTimeZone());
}

std::string KeyPath(absl::string_view dir, absl::string_view kid) {
  return absl::StrCat(dir, "/", kid, ".key.pem");
}

std::string StatePath(absl::string_view dir) { return absl::StrCat(dir, "/", kStateFile); }

absl::Status ErrnoError(absl::string_view what, absl::string_view path) {
  const int err = errno;
  char buf[128];
  // The GNU strerror_r (glibc with _GNU_SOURCE): returns the message, thread-safe.
  const std::string msg = absl::StrCat(what, " ", path, ": ", ::strerror_r(err, buf, sizeof(buf)));
  if (err == ENOENT) {
    return absl::NotFoundError(msg);
  }
  return absl::InternalError(msg);
}

// Reads a private key file without following symlinks, refusing one that others could read or
// write or that someone else owns (as ssh does), and parses it. The PEM is wiped after parsing.
absl::StatusOr<crypto::EvpPkeyPtr> ReadPrivateKeyFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
  if (fd < 0) {
    if (errno == ELOOP) {
      return absl::FailedPreconditionError(absl::StrCat("key file ", path, " is a symlink"));
    }
    return ErrnoError("cannot open key file", path);
  }
  absl::Cleanup closer = [fd] { ::close(fd); };
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return ErrnoError("cannot stat key file", path);
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat("key file ", path, " is not a regular file"));
  }
  if (st.st_uid != ::geteuid()) {
    return absl::FailedPreconditionError(
        absl::StrCat("key file ", path, " is owned by uid ", st.st_uid, ", not ", ::geteuid()));
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return absl::FailedPreconditionError(absl::StrCat(
        "key file ", path, " is group/world accessible (mode ", mode, "); chmod 600 it"));
  }
  std::vector<uint8_t> buf(kMaxKeyFileBytes + 1);
  size_t len = 0;
  while (len < buf.size()) {
    const ssize_t n = ::read(fd, buf.data() + len, buf.size() - len);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      crypto::SecretBytes wipe(std::move(buf));
      return ErrnoError("cannot read key file", path);
    }
    if (n == 0) {
      break;
    }
    len += static_cast<size_t>(n);
  }
  buf.resize(len);
  const crypto::SecretBytes pem(std::move(buf));  // wiped on every return below
  if (len > kMaxKeyFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("key file ", path, " is larger than ", kMaxKeyFileBytes, " bytes"));
  }
  auto key = crypto::PrivateKeyFromPem(
      absl::string_view(reinterpret_cast<const char*>(pem.data()), pem.size()));
  if (!key.ok()) {
    // The OpenSSL reason is enough; the PEM itself never goes into a message.
    return absl::InvalidArgumentError(absl::StrCat("key file ", path, " is not a PEM private key"));
  }
  return key;
}

// A fresh P-256 key, written to <dir>/<kid>.key.pem (0600, atomically).
absl::StatusOr<std::pair<std::string, crypto::EvpPkeyPtr>> GenerateKeyFile(absl::string_view dir) {
  PML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr key, crypto::GenerateEcKey(crypto::Curve::kP256));
  PML_ASSIGN_OR_RETURN(std::string kid, crypto::JwkThumbprint(*key));
  PML_ASSIGN_OR_RETURN(crypto::SecretBytes pem, crypto::PrivateKeyToPem(*key));
  PML_RETURN_IF_ERROR(core::WriteFileAtomic(
      KeyPath(dir, kid), absl::string_view(reinterpret_cast<const char*>(pem.data()), pem.size()),
      0600));
  return std::make_pair(std::move(kid), std::move(key));
}

absl::StatusOr<nlohmann::json> PublicJwk(const EVP_PKEY& key, absl::string_view kid) {
  PML_ASSIGN_OR_RETURN(crypto::Jwk jwk, crypto::Jwk::FromPublicKey(key, kid));
  return jwk.ToJson();
}

absl::StatusOr<absl::Time> ParseTimeField(const nlohmann::json& entry, const char* name,
                                          absl::string_view where) {
  const auto it = entry.find(name);
  absl::Time t;
  std::string err;
  if (it == entry.end() || !it->is_string() ||
      !absl::ParseTime(absl::RFC3339_full, it->get<std::string>(), &t, &err)) {
    return absl::InvalidArgumentError(absl::StrCat(where, " ", name, " is not an RFC 3339 time"));
  }
  return t;
}

}  // namespace

SigningKeyStore::SigningKeyStore(std::string dir) : dir_(std::move(dir)) {}
SigningKeyStore::~SigningKeyStore() = default;

absl::StatusOr<std::unique_ptr<SigningKeyStore>> SigningKeyStore::Open(absl::string_view dir,
                                                                       absl::Time now) {
  if (dir.empty()) {
    return absl::InvalidArgumentError("signing key directory is empty");
  }
  PML_RETURN_IF_ERROR(core::MakeDirs(dir, 0700));
  const std::string dir_s(dir);
  struct stat st {};
  if (::stat(dir_s.c_str(), &st) != 0) {
    return ErrnoError("cannot stat", dir);
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("signing key path ", dir, " is not a directory"));
  }
  if ((st.st_mode & 022) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("signing key directory ", dir, " is group/world writable; chmod 700 it"));
  }

  std::unique_ptr<SigningKeyStore> store = absl::WrapUnique(new SigningKeyStore(dir_s));
  const std::string state_path = StatePath(dir);
  std::vector<Key> keys;
  std::string current;

  if (!core::PathExists(state_path)) {
    PML_ASSIGN_OR_RETURN(auto generated, GenerateKeyFile(dir));
    Key k;
    k.info = SigningKeyInfo{generated.first, now, std::nullopt};
    k.key = std::move(generated.second);
    PML_ASSIGN_OR_RETURN(k.jwk, PublicJwk(*k.key, k.info.kid));
    current = k.info.kid;
    keys.push_back(std::move(k));
    PML_RETURN_IF_ERROR(store->WriteState(keys, current));
  } else {
    PML_ASSIGN_OR_RETURN(std::string text, core::ReadFile(state_path, kMaxStateBytes));
    const nlohmann::json state = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!state.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(state_path, " is not a JSON object"));
    }
    const auto cur = state.find("current");
    if (cur == state.end() || !cur->is_string() || !IsKid(cur->get<std::string>())) {
      return absl::InvalidArgumentError(absl::StrCat(state_path, " current is not a kid"));
    }
    current = cur->get<std::string>();
    const auto list = state.find("keys");
    if (list == state.end() || !list->is_array() || list->empty()) {
      return absl::InvalidArgumentError(absl::StrCat(state_path, " keys is not a non-empty array"));
    }
    for (size_t i = 0; i < list->size(); ++i) {
      const nlohmann::json& e = (*list)[i];
      const std::string where = absl::StrCat(state_path, " keys[", i, "]");
      if (!e.is_object()) {
        return absl::InvalidArgumentError(absl::StrCat(where, " is not an object"));
      }
      const auto kid_it = e.find("kid");
      if (kid_it == e.end() || !kid_it->is_string() || !IsKid(kid_it->get<std::string>())) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, " kid is not a 43-character thumbprint"));
      }
      Key k;
      k.info.kid = kid_it->get<std::string>();
      if (std::any_of(keys.begin(), keys.end(),
                      [&](const Key& o) { return o.info.kid == k.info.kid; })) {
        return absl::InvalidArgumentError(absl::StrCat(where, " repeats kid ", k.info.kid));
      }
      PML_ASSIGN_OR_RETURN(k.info.created, ParseTimeField(e, "created", where));
      if (e.contains("retired_at")) {
        PML_ASSIGN_OR_RETURN(k.info.retired_at, ParseTimeField(e, "retired_at", where));
      }
      const std::string path = KeyPath(dir, k.info.kid);
      PML_ASSIGN_OR_RETURN(k.key, ReadPrivateKeyFile(path));
      auto alg = crypto::JwsAlgForKey(*k.key);
      if (!alg.ok() || *alg != "ES256") {
        return absl::FailedPreconditionError(
            absl::StrCat("key file ", path, " is not a P-256 key"));
      }
      PML_ASSIGN_OR_RETURN(std::string thumbprint, crypto::JwkThumbprint(*k.key));
      if (thumbprint != k.info.kid) {
        return absl::FailedPreconditionError(absl::StrCat(
            "key file ", path, " holds the key with thumbprint ", thumbprint, ", not its kid"));
      }
      PML_ASSIGN_OR_RETURN(k.jwk, PublicJwk(*k.key, k.info.kid));
      keys.push_back(std::move(k));
    }
    const auto cur_key =
        std::find_if(keys.begin(), keys.end(), [&](const Key& k) { return k.info.kid == current; });
    if (cur_key == keys.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(state_path, " current ", current, " is not among its keys"));
    }
    if (cur_key->info.retired_at.has_value()) {
      return absl::FailedPreconditionError(
          absl::StrCat(state_path, " current key ", current, " is marked retired"));
    }
  }
  {
    absl::MutexLock lock(&store->mu_);
    store->keys_ = std::move(keys);
    store->current_ = std::move(current);
  }
  return store;
}

absl::Status SigningKeyStore::WriteState(const std::vector<Key>& keys,
                                         const std::string& current) const {
  nlohmann::json list = nlohmann::json::array();
  for (const Key& k : keys) {
    nlohmann::json e = {{"kid", k.info.kid}, {"created", Rfc3339(k.info.created)}};
    if (k.info.retired_at.has_value()) {
      e["retired_at"] = Rfc3339(*k.info.retired_at);
    }
    list.push_back(std::move(e));
  }
  const nlohmann::json state = {{"current", current}, {"keys", std::move(list)}};
  return core::WriteFileAtomic(StatePath(dir_), state.dump(2) + "\n", 0600);
}

absl::StatusOr<std::string> SigningKeyStore::Rotate(absl::Time now) {
  absl::MutexLock lock(&mu_);
  PML_ASSIGN_OR_RETURN(auto generated, GenerateKeyFile(dir_));
  Key k;
  k.info = SigningKeyInfo{generated.first, now, std::nullopt};
  k.key = std::move(generated.second);
  PML_ASSIGN_OR_RETURN(k.jwk, PublicJwk(*k.key, k.info.kid));
  // Plain loops here and in Sign, not std::find_if: the thread-safety analysis does not see the
  // lock inside a lambda.
  auto old = keys_.end();
  for (auto it = keys_.begin(); it != keys_.end(); ++it) {
    if (it->info.kid == current_) {
      old = it;
    }
  }
  PML_CHECK(old != keys_.end());
  if (k.info.kid == current_) {
    // A SHA-256 collision of fresh keys: not a state we can represent.
    return absl::InternalError("generated key repeats the current kid");
  }
  // Write the new state first; commit it in memory only once it is durable.
  old->info.retired_at = now;
  keys_.push_back(std::move(k));
  const std::string new_kid = keys_.back().info.kid;
  const absl::Status written = WriteState(keys_, new_kid);
  if (!written.ok()) {
    keys_.pop_back();
    // `old` may be invalidated by push_back; look it up again.
    for (Key& e : keys_) {
      if (e.info.kid == current_) {
        e.info.retired_at.reset();
      }
    }
    return written;
  }
  current_ = new_kid;
  return new_kid;
}

nlohmann::json SigningKeyStore::Jwks(absl::Time now, absl::Duration max_token_lifetime) const {
  absl::ReaderMutexLock lock(&mu_);
  nlohmann::json keys = nlohmann::json::array();
  for (const Key& k : keys_) {
    if (k.info.kid == current_) {
      keys.push_back(k.jwk);
    }
  }
  for (auto it = keys_.rbegin(); it != keys_.rend(); ++it) {
    if (it->info.kid == current_ || !it->info.retired_at.has_value()) {
      continue;
    }
    if (*it->info.retired_at + max_token_lifetime > now) {
      keys.push_back(it->jwk);
    }
  }
  return {{"keys", std::move(keys)}};
}

absl::StatusOr<std::string> SigningKeyStore::Sign(const nlohmann::json& payload,
                                                  absl::Time now) const {
  if (!payload.is_object()) {
    return absl::InvalidArgumentError("token payload is not an object");
  }
  const auto exp = payload.find("exp");
  if (exp == payload.end() || !exp->is_number() ||
      absl::UnixEpoch() + absl::Seconds(exp->get<double>()) <= now) {
    return absl::InvalidArgumentError("token payload exp is missing or not after now");
  }
  nlohmann::json claims = payload;
  if (!claims.contains("iat")) {
    claims["iat"] = absl::ToUnixSeconds(now);
  }
  absl::ReaderMutexLock lock(&mu_);
  const Key* current = nullptr;
  for (const Key& k : keys_) {
    if (k.info.kid == current_) {
      current = &k;
    }
  }
  PML_CHECK(current != nullptr);
  return crypto::SignJwt({{"kid", current->info.kid}}, claims, *current->key);
}

std::string SigningKeyStore::CurrentKid() const {
  absl::ReaderMutexLock lock(&mu_);
  return current_;
}

std::vector<SigningKeyInfo> SigningKeyStore::Keys() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<SigningKeyInfo> out;
  out.reserve(keys_.size());
  for (const Key& k : keys_) {
    out.push_back(k.info);
  }
  return out;
}

}  // namespace pml::attestation
