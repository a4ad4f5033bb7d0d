#include "lib/crypto/seal.h"

#include <openssl/evp.h>

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/ossl.h"

namespace pml::crypto {
namespace {

constexpr absl::string_view kSealLabel = "pml-seal:v1";

absl::StatusOr<EvpPkeyPtr> PrivateKey(absl::Span<const uint8_t> priv) {
  if (priv.size() != kX25519KeyBytes)
    return absl::InvalidArgumentError("X25519 private key: want 32 bytes");
  EvpPkeyPtr k(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, priv.data(), priv.size()));
  if (k == nullptr)
    return absl::InternalError("X25519 private key: OpenSSL refused it");
  return k;
}

absl::StatusOr<EvpPkeyPtr> PublicKey(absl::Span<const uint8_t> pub) {
  if (pub.size() != kX25519KeyBytes)
    return absl::InvalidArgumentError("X25519 public key: want 32 bytes");
  EvpPkeyPtr k(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, pub.data(), pub.size()));
  if (k == nullptr)
    return absl::InvalidArgumentError("X25519 public key: malformed");
  return k;
}

absl::StatusOr<SecretBytes> BoxKey(const SecretBytes& shared, const X25519PublicKey& eph,
                                   absl::Span<const uint8_t> recipient, absl::string_view label) {
  std::string info(kSealLabel);
  const uint32_t n = static_cast<uint32_t>(label.size());
  for (int s = 24; s >= 0; s -= 8)
    info.push_back(static_cast<char>((n >> s) & 0xff));
  info.append(label.data(), label.size());
  info.append(eph.begin(), eph.end());
  info.append(recipient.begin(), recipient.end());
  PML_ASSIGN_OR_RETURN(
      std::vector<uint8_t> key,
      HkdfSha256(shared.span(),
                 absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(kSealLabel.data()),
                                           kSealLabel.size()),
                 absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(info.data()),
                                           info.size()),
                 32));
  return SecretBytes(std::move(key));
}

absl::Status Gcm(bool encrypt, absl::Span<const uint8_t> key, absl::Span<const uint8_t> nonce,
                 absl::Span<const uint8_t> in, absl::Span<const uint8_t> aad, uint8_t* out,
                 uint8_t* tag) {
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0, fin = 0;
  auto init = encrypt ? EVP_EncryptInit_ex : EVP_DecryptInit_ex;
  auto update = encrypt ? EVP_EncryptUpdate : EVP_DecryptUpdate;
  if (ctx == nullptr || init(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), nonce.data()) != 1 ||
      (!aad.empty() &&
       update(ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1) ||
      update(ctx.get(), out, &len, in.data(), static_cast<int>(in.size())) != 1) {
    return absl::InternalError("AES-256-GCM failed");
  }
  if (encrypt) {
    if (EVP_EncryptFinal_ex(ctx.get(), out + len, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kSealTagBytes, tag) != 1)
      return absl::InternalError("AES-256-GCM failed");
    return absl::OkStatus();
  }
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kSealTagBytes, tag) != 1)
    return absl::InternalError("AES-256-GCM failed");
  if (EVP_DecryptFinal_ex(ctx.get(), out + len, &fin) != 1)
    return absl::PermissionDeniedError("sealed data does not open (wrong key, context or tampered)");
  return absl::OkStatus();
}

absl::StatusOr<SecretBytes> Agree(EVP_PKEY& priv, absl::Span<const uint8_t> peer_public_key) {
  PML_ASSIGN_OR_RETURN(EvpPkeyPtr peer, PublicKey(peer_public_key));
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(&priv, nullptr));
  std::vector<uint8_t> out(kX25519KeyBytes);
  size_t len = out.size();
  if (ctx == nullptr || EVP_PKEY_derive_init(ctx.get()) != 1 ||
      EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1 ||
      EVP_PKEY_derive(ctx.get(), out.data(), &len) != 1 || len != out.size()) {
    // OpenSSL refuses an all-zero result (a low-order peer point) here.
    return absl::InvalidArgumentError("X25519 public key: low order or malformed");
  }
  if (std::all_of(out.begin(), out.end(), [](uint8_t b) { return b == 0; }))
    return absl::InvalidArgumentError("X25519 public key: low order");
  return SecretBytes(std::move(out));
}

}  // namespace

absl::StatusOr<std::vector<uint8_t>> AeadSeal(absl::Span<const uint8_t> key,
                                              absl::Span<const uint8_t> plaintext,
                                              absl::Span<const uint8_t> aad) {
  if (key.size() != 32)
    return absl::InvalidArgumentError("AES-256-GCM key: want 32 bytes");
  std::vector<uint8_t> out = RandomBytes(kSealNonceBytes);
  out.resize(kSealNonceBytes + plaintext.size() + kSealTagBytes);
  PML_RETURN_IF_ERROR(Gcm(true, key, absl::MakeConstSpan(out.data(), kSealNonceBytes), plaintext,
                          aad, out.data() + kSealNonceBytes,
                          out.data() + kSealNonceBytes + plaintext.size()));
  return out;
}

absl::StatusOr<SecretBytes> AeadOpen(absl::Span<const uint8_t> key,
                                     absl::Span<const uint8_t> sealed,
                                     absl::Span<const uint8_t> aad) {
  if (key.size() != 32)
    return absl::InvalidArgumentError("AES-256-GCM key: want 32 bytes");
  if (sealed.size() < kSealNonceBytes + kSealTagBytes)
    return absl::InvalidArgumentError("sealed data: shorter than nonce and tag");
  const size_t n = sealed.size() - kSealNonceBytes - kSealTagBytes;
  std::vector<uint8_t> plain(n);
  std::array<uint8_t, kSealTagBytes> tag;
  std::copy(sealed.end() - kSealTagBytes, sealed.end(), tag.begin());
  absl::Status s = Gcm(false, key, sealed.subspan(0, kSealNonceBytes),
                       sealed.subspan(kSealNonceBytes, n), aad, plain.data(), tag.data());
  if (!s.ok()) {
    OPENSSL_cleanse(plain.data(), plain.size());
    return s;
  }
  return SecretBytes(std::move(plain));
}

absl::StatusOr<X25519KeyPair> GenerateX25519() {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, nullptr));
  EVP_PKEY* raw = nullptr;
  if (ctx == nullptr || EVP_PKEY_keygen_init(ctx.get()) != 1 ||
      EVP_PKEY_keygen(ctx.get(), &raw) != 1) {
    return absl::InternalError("X25519 key generation failed");
  }
  EvpPkeyPtr key(raw);
  X25519KeyPair kp;
  std::vector<uint8_t> priv(kX25519KeyBytes);
  size_t len = priv.size();
  if (EVP_PKEY_get_raw_private_key(key.get(), priv.data(), &len) != 1 || len != priv.size())
    return absl::InternalError("X25519: reading the private key failed");
  len = kp.public_key.size();
  if (EVP_PKEY_get_raw_public_key(key.get(), kp.public_key.data(), &len) != 1 ||
      len != kp.public_key.size())
    return absl::InternalError("X25519: reading the public key failed");
  kp.private_key = SecretBytes(std::move(priv));
  return kp;
}

absl::StatusOr<X25519PublicKey> X25519PublicFromPrivate(absl::Span<const uint8_t> private_key) {
  PML_ASSIGN_OR_RETURN(EvpPkeyPtr key, PrivateKey(private_key));
  X25519PublicKey pub{};
  size_t len = pub.size();
  if (EVP_PKEY_get_raw_public_key(key.get(), pub.data(), &len) != 1 || len != pub.size())
    return absl::InternalError("X25519: reading the public key failed");
  return pub;
}

absl::StatusOr<SecretBytes> X25519SharedSecret(absl::Span<const uint8_t> private_key,
                                               absl::Span<const uint8_t> peer_public_key) {
  PML_ASSIGN_OR_RETURN(EvpPkeyPtr priv, PrivateKey(private_key));
  return Agree(*priv, peer_public_key);
}

absl::StatusOr<std::shared_ptr<const SealSender>> SealSender::Generate() {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, nullptr));
  EVP_PKEY* raw = nullptr;
  if (ctx == nullptr || EVP_PKEY_keygen_init(ctx.get()) != 1 ||
      EVP_PKEY_keygen(ctx.get(), &raw) != 1) {
    return absl::InternalError("X25519 key generation failed");
  }
  std::shared_ptr<SealSender> s(new SealSender());
  s->key_.reset(raw);
  size_t len = s->public_key_.size();
  if (EVP_PKEY_get_raw_public_key(s->key_.get(), s->public_key_.data(), &len) != 1 ||
      len != s->public_key_.size())
    return absl::InternalError("X25519: reading the public key failed");
  return std::shared_ptr<const SealSender>(std::move(s));
}

absl::StatusOr<SecretBytes> SealSender::SharedSecret(
    absl::Span<const uint8_t> peer_public_key) const {
  return Agree(*key_, peer_public_key);
}

absl::StatusOr<SealedBox> Seal(absl::Span<const uint8_t> recipient_public_key,
                               absl::Span<const uint8_t> plaintext, absl::Span<const uint8_t> aad,
                               absl::string_view label) {
  PML_ASSIGN_OR_RETURN(std::shared_ptr<const SealSender> eph, SealSender::Generate());
  return Seal(*eph, recipient_public_key, plaintext, aad, label);
}

absl::StatusOr<SealedBox> Seal(const SealSender& eph,
                               absl::Span<const uint8_t> recipient_public_key,
                               absl::Span<const uint8_t> plaintext, absl::Span<const uint8_t> aad,
                               absl::string_view label) {
  PML_ASSIGN_OR_RETURN(SecretBytes shared, eph.SharedSecret(recipient_public_key));
  PML_ASSIGN_OR_RETURN(SecretBytes key,
                       BoxKey(shared, eph.public_key(), recipient_public_key, label));
  SealedBox box;
  box.ephemeral_public_key = eph.public_key();
  const std::vector<uint8_t> nonce = RandomBytes(kSealNonceBytes);
  std::copy(nonce.begin(), nonce.end(), box.nonce.begin());
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  box.ciphertext.resize(plaintext.size() + kSealTagBytes);
  int len = 0, fin = 0;
  if (ctx == nullptr ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.span().data(),
                         box.nonce.data()) != 1 ||
      (!aad.empty() && EVP_EncryptUpdate(ctx.get(), nullptr, &len, aad.data(),
                                         static_cast<int>(aad.size())) != 1) ||
      EVP_EncryptUpdate(ctx.get(), box.ciphertext.data(), &len, plaintext.data(),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), box.ciphertext.data() + len, &fin) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kSealTagBytes,
                          box.ciphertext.data() + plaintext.size()) != 1) {
    return absl::InternalError("AES-256-GCM encryption failed");
  }
  return box;
}

absl::StatusOr<SecretBytes> Open(absl::Span<const uint8_t> recipient_private_key,
                                 const SealedBox& box, absl::Span<const uint8_t> aad,
                                 absl::string_view label) {
  if (box.ciphertext.size() < kSealTagBytes)
    return absl::InvalidArgumentError("sealed box: shorter than its tag");
  PML_ASSIGN_OR_RETURN(X25519PublicKey me, X25519PublicFromPrivate(recipient_private_key));
  PML_ASSIGN_OR_RETURN(SecretBytes shared,
                       X25519SharedSecret(recipient_private_key, box.ephemeral_public_key));
  PML_ASSIGN_OR_RETURN(SecretBytes key, BoxKey(shared, box.ephemeral_public_key, me, label));
  const size_t n = box.ciphertext.size() - kSealTagBytes;
  std::vector<uint8_t> plain(n);
  std::array<uint8_t, kSealTagBytes> tag;
  std::copy(box.ciphertext.end() - kSealTagBytes, box.ciphertext.end(), tag.begin());
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0, fin = 0;
  if (ctx == nullptr ||
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.span().data(),
                         box.nonce.data()) != 1 ||
      (!aad.empty() && EVP_DecryptUpdate(ctx.get(), nullptr, &len, aad.data(),
                                         static_cast<int>(aad.size())) != 1) ||
      EVP_DecryptUpdate(ctx.get(), plain.data(), &len, box.ciphertext.data(),
                        static_cast<int>(n)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kSealTagBytes, tag.data()) != 1) {
    return absl::InternalError("AES-256-GCM decryption failed");
  }
  if (EVP_DecryptFinal_ex(ctx.get(), plain.data() + len, &fin) != 1) {
    OPENSSL_cleanse(plain.data(), plain.size());
    return absl::PermissionDeniedError("sealed box does not open (wrong key, context or tampered)");
  }
  return SecretBytes(std::move(plain));
}

}  // namespace pml::crypto
