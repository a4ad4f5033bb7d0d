#include "services/kms/root_keys.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/cert_builder.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/key.h"
#include "lib/crypto/seal.h"
#include "lib/crypto/secp256k1.h"
#include "lib/crypto/x509.h"
#include "lib/ratls/cert.h"
#include "lib/rpc/wipe.h"

namespace pml::kms {
namespace {

constexpr char kClusterKeyFile[] = "cluster.key";
constexpr char kCheckMeta[] = "cluster_key_check";
constexpr absl::string_view kEpochAad = "pml-kms-epoch:v1";

std::vector<uint8_t> EpochAad(uint32_t epoch, const std::string& ca_cert_der,
                              const std::string& k256_public) {
  std::vector<uint8_t> aad(kEpochAad.begin(), kEpochAad.end());
  for (int s = 24; s >= 0; s -= 8)
    aad.push_back(static_cast<uint8_t>((epoch >> s) & 0xff));
  const auto h = crypto::Sha256(ca_cert_der);
  aad.insert(aad.end(), h.begin(), h.end());
  aad.insert(aad.end(), k256_public.begin(), k256_public.end());
  return aad;
}

absl::StatusOr<EpochRow> SealRow(const crypto::SecretBytes& cluster_key, uint32_t epoch,
                                 const crypto::SecretBytes& ca_scalar,
                                 const crypto::SecretBytes& k256_scalar,
                                 const std::string& ca_cert_der, const std::string& k256_public,
                                 int64_t create_unix) {
  std::vector<uint8_t> plain(ca_scalar.span().begin(), ca_scalar.span().end());
  plain.insert(plain.end(), k256_scalar.span().begin(), k256_scalar.span().end());
  auto sealed = crypto::AeadSeal(cluster_key.span(), plain,
                                 EpochAad(epoch, ca_cert_der, k256_public));
  OPENSSL_cleanse(plain.data(), plain.size());
  PML_RETURN_IF_ERROR(sealed.status());
  return EpochRow{epoch, create_unix, ca_cert_der, k256_public, core::ToString(*sealed)};
}

}  // namespace

std::string Epoch::key_provider_id() const { return core::HexEncode(ca_spki_der); }

absl::StatusOr<std::string> IdentityKeyProviderId(const crypto::SecretBytes& epoch1_ca_scalar) {
  PML_ASSIGN_OR_RETURN(crypto::SecretBytes okm,
                       DeriveOkm(epoch1_ca_scalar, "kms-identity-ca", {}, 1, {}, 48));
  PML_ASSIGN_OR_RETURN(crypto::SecretBytes scalar, crypto::ScalarFromOkm(okm, crypto::Curve::kP256));
  PML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr key,
                       crypto::PrivateKeyFromScalar(crypto::Curve::kP256, scalar.span()));
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> spki, crypto::PublicKeyToDer(*key));
  return core::HexEncode(spki);
}

absl::StatusOr<IdentityCa> MakeIdentityCa(const Epoch& epoch1) {
  if (epoch1.secret.epoch != 1)
    return absl::InternalError("the identity CA derives from epoch 1");
  PML_ASSIGN_OR_RETURN(crypto::SecretBytes okm,
                       DeriveOkm(epoch1.secret.ca_scalar, "kms-identity-ca", {}, 1, {}, 48));
  PML_ASSIGN_OR_RETURN(crypto::SecretBytes scalar, crypto::ScalarFromOkm(okm, crypto::Curve::kP256));
  IdentityCa id;
  PML_ASSIGN_OR_RETURN(id.key, crypto::PrivateKeyFromScalar(crypto::Curve::kP256, scalar.span()));
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> spki, crypto::PublicKeyToDer(*id.key));
  id.key_provider_id = core::HexEncode(spki);
  crypto::CertSpec spec;
  spec.common_name = "PML KMS identity CA";
  spec.organization = "PML KMS";
  spec.is_ca = true;
  spec.path_len = 0;
  // Fixed fields, so every replica's certificate has the same name, serial and validity.
  spec.not_before = epoch1.created - absl::Hours(1);
  spec.not_after = epoch1.created + absl::Hours(24 * 365 * 20);
  const auto serial = crypto::Sha256(core::ToString(spki));
  spec.serial.assign(serial.begin(), serial.begin() + 16);
  spec.serial[0] &= 0x7f;
  PML_ASSIGN_OR_RETURN(id.cert, crypto::IssueCertificate(spec, *id.key, *id.key, nullptr));
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> der, crypto::CertificateToDer(*id.cert));
  id.cert_der = core::ToString(der);
  PML_ASSIGN_OR_RETURN(id.cert_pem, crypto::CertificateToPem(*id.cert));
  return id;
}

absl::StatusOr<common::v1::EvidenceBundle> NodeEvidence(tee::TeeProvider& tee,
                                                        absl::Span<const uint8_t> report_data) {
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> quote, tee.GetQuote(report_data));
  common::v1::EvidenceBundle b;
  b.set_tdx_quote(core::ToString(quote));
  b.set_report_data(core::ToString(report_data));
  b.set_simulated(tee.IsSimulated());
  switch (tee.Kind()) {
    case tee::TeeKind::kSimulated:
      b.set_tee_provider(common::v1::TEE_PROVIDER_SIMULATOR);
      break;
    case tee::TeeKind::kConfigfsTsm:
      b.set_tee_provider(common::v1::TEE_PROVIDER_CONFIGFS_TSM);
      break;
    case tee::TeeKind::kTdxGuestDevice:
      b.set_tee_provider(common::v1::TEE_PROVIDER_TDX_GUEST_DEVICE);
      break;
  }
  return b;
}

absl::StatusOr<GuestTls> IssueGuestTls(const IdentityCa& identity, const std::string& node_name,
                                       const std::vector<std::string>& names,
                                       tee::TeeProvider* tee) {
  PML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr key, crypto::GenerateEcKey(crypto::Curve::kP256));
  crypto::CertSpec spec;
  spec.common_name = absl::StrCat("pml-kms ", node_name);
  spec.organization = "PML KMS";
  for (const std::string& n : names) {
    unsigned char buf[16];
    const bool ip = inet_pton(AF_INET, n.c_str(), buf) == 1 || inet_pton(AF_INET6, n.c_str(), buf) == 1;
    (ip ? spec.ip_sans : spec.dns_sans).push_back(n);
  }
  spec.server_auth = true;
  PML_ASSIGN_OR_RETURN(crypto::Validity root, crypto::CertificateValidity(*identity.cert));
  spec.not_before = std::max(absl::Now() - absl::Hours(1), root.not_before);
  spec.not_after = std::min(absl::Now() + absl::Hours(24 * 365), root.not_after);
  ratls::RaTlsClaims claims;
  claims.usage = std::string(ratls::kUsageKmsRpc);
  GuestTls out;
  if (tee != nullptr) {
    PML_ASSIGN_OR_RETURN(ratls::ReportData rd, ratls::KeyReportData(*key));
    PML_ASSIGN_OR_RETURN(out.evidence, NodeEvidence(*tee, rd));
    const std::string& quote = out.evidence.tdx_quote();
    claims.quote.assign(quote.begin(), quote.end());
  }
  spec.extensions = ratls::RaTlsExtensions(claims);
  PML_ASSIGN_OR_RETURN(crypto::X509Ptr cert, crypto::IssueCertificate(spec, *key, *identity.key,
                                                                      identity.cert.get()));
  PML_ASSIGN_OR_RETURN(crypto::SecretBytes key_pem, crypto::PrivateKeyToPem(*key));
  out.key_pem = core::ToString(key_pem.span());
  PML_ASSIGN_OR_RETURN(std::string leaf, crypto::CertificateToPem(*cert));
  out.root_pem = identity.cert_pem;
  out.chain_pem = leaf + out.root_pem;
  return out;
}

std::string ClusterKeyCheck(const crypto::SecretBytes& cluster_key) {
  const auto mac =
      crypto::HmacSha256(cluster_key.span(), core::AsBytes("pml-kms-cluster-key-check:v1"));
  return std::string(mac.begin(), mac.end());
}

absl::StatusOr<std::shared_ptr<const Epoch>> RootKeys::OpenRow(const EpochRow& row) const {
  PML_ASSIGN_OR_RETURN(crypto::SecretBytes plain,
                       crypto::AeadOpen(cluster_key_.span(), core::AsBytes(row.sealed_secrets),
                                        EpochAad(row.epoch, row.ca_cert_der,
                                                 row.k256_public_key)));
  if (plain.size() != 64)
    return absl::DataLossError(absl::StrCat("epoch ", row.epoch, ": sealed secrets of bad size"));
  auto e = std::make_shared<Epoch>();
  e->secret.epoch = row.epoch;
  e->secret.ca_scalar = crypto::SecretBytes(plain.span().subspan(0, 32));
  e->secret.k256_scalar = crypto::SecretBytes(plain.span().subspan(32, 32));
  PML_ASSIGN_OR_RETURN(e->ca_key,
                       crypto::PrivateKeyFromScalar(crypto::Curve::kP256,
                                                    e->secret.ca_scalar.span()));
  PML_ASSIGN_OR_RETURN(e->ca_cert, crypto::ParseDerCertificate(core::AsBytes(row.ca_cert_der)));
  e->ca_cert_der = row.ca_cert_der;
  PML_ASSIGN_OR_RETURN(e->ca_spki_der, crypto::PublicKeyToDer(*e->ca_key));
  PML_ASSIGN_OR_RETURN(const EVP_PKEY* cert_key, crypto::CertificatePublicKey(*e->ca_cert));
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> cert_spki, crypto::PublicKeyToDer(*cert_key));
  if (cert_spki != e->ca_spki_der)
    return absl::DataLossError(absl::StrCat("epoch ", row.epoch, ": CA certificate is not its key's"));
  PML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr k,
                       crypto::PrivateKeyFromScalar(crypto::Curve::kSecp256k1,
                                                    e->secret.k256_scalar.span()));
  PML_ASSIGN_OR_RETURN(e->k256_public_key, crypto::Secp256k1CompressedPublicKey(*k));
  if (core::ToString(e->k256_public_key) != row.k256_public_key)
    return absl::DataLossError(absl::StrCat("epoch ", row.epoch, ": k256 public key mismatch"));
  e->created = absl::FromUnixSeconds(row.create_unix);
  return std::shared_ptr<const Epoch>(std::move(e));
}

absl::Status RootKeys::Refresh() {
  PML_ASSIGN_OR_RETURN(std::vector<EpochRow> rows, store_.ListEpochs());
  for (const EpochRow& row : rows) {
    if (epochs_.count(row.epoch) != 0)
      continue;
    PML_ASSIGN_OR_RETURN(auto e, OpenRow(row));
    epochs_[row.epoch] = std::move(e);
  }
  return absl::OkStatus();
}

absl::Status RootKeys::Create(uint32_t epoch, std::optional<uint32_t> expected_current,
                              v1::AuditEvent audit) {
  PML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr ca_key, crypto::GenerateEcKey(crypto::Curve::kP256));
  PML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr k256, crypto::GenerateEcKey(crypto::Curve::kSecp256k1));
  PML_ASSIGN_OR_RETURN(crypto::SecretBytes ca_scalar, crypto::PrivateKeyToScalar(*ca_key));
  PML_ASSIGN_OR_RETURN(crypto::SecretBytes k_scalar, crypto::PrivateKeyToScalar(*k256));
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> k_pub, crypto::Secp256k1CompressedPublicKey(*k256));
  const absl::Time now = absl::Now();
  crypto::CertSpec spec;
  spec.common_name = absl::StrCat("PML KMS root CA (epoch ", epoch, ")");
  spec.organization = "PML KMS";
  spec.is_ca = true;
  spec.path_len = 1;
  spec.not_before = now - absl::Hours(1);
  spec.not_after = now + absl::Hours(24 * 365 * 20);
  PML_ASSIGN_OR_RETURN(crypto::X509Ptr cert,
                       crypto::IssueCertificate(spec, *ca_key, *ca_key, nullptr));
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> der, crypto::CertificateToDer(*cert));
  PML_ASSIGN_OR_RETURN(EpochRow row, SealRow(cluster_key_, epoch, ca_scalar, k_scalar,
                                             core::ToString(der), core::ToString(k_pub),
                                             absl::ToUnixSeconds(now)));
  return store_.InsertEpoch(row, expected_current, {{kCheckMeta, ClusterKeyCheck(cluster_key_)}},
                            std::move(audit));
}

absl::StatusOr<std::unique_ptr<RootKeys>> RootKeys::Open(const std::string& state_dir,
                                                         KmsStore& store,
                                                         const std::string& node_name) {
  PML_RETURN_IF_ERROR(core::MakeDirs(state_dir, 0700));
  const std::string key_path = absl::StrCat(state_dir, "/", kClusterKeyFile);
  const std::string new_path = key_path + ".new";
  PML_ASSIGN_OR_RETURN(std::vector<EpochRow> rows, store.ListEpochs());
  PML_ASSIGN_OR_RETURN(std::optional<std::string> check, store.GetMeta(kCheckMeta));
  auto read_key = [](const std::string& path) -> absl::StatusOr<crypto::SecretBytes> {
    PML_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, core::ReadFileBytes(path, 64));
    if (bytes.size() != 32)
      return absl::DataLossError(absl::StrCat(path, ": not a 32-byte cluster key"));
    return crypto::SecretBytes(std::move(bytes));
  };
  auto matches = [&check](const crypto::SecretBytes& key) {
    const std::string want = ClusterKeyCheck(key);
    return check.has_value() && check->size() == want.size() &&
           CRYPTO_memcmp(check->data(), want.data(), want.size()) == 0;
  };
  crypto::SecretBytes key;
  bool first_start = false;
  if (core::PathExists(key_path)) {
    PML_ASSIGN_OR_RETURN(key, read_key(key_path));
    if (rows.empty() || !check.has_value()) {
      return absl::FailedPreconditionError(absl::StrCat(
          key_path, " exists but the store holds no root keys: is --store the right one? "
          "(refusing to start a new cluster over an existing cluster key)"));
    }
    if (!matches(key)) {
      return absl::FailedPreconditionError(absl::StrCat(
          key_path, " is not the cluster key of the KMS cluster this store belongs to"));
    }
  } else if (!rows.empty() || check.has_value()) {
    // A first start that committed epoch 1 but crashed before its key file was renamed: finish
    // it. Any other key (a node that lost the first-start race) must join instead.
    if (core::PathExists(new_path)) {
      PML_ASSIGN_OR_RETURN(crypto::SecretBytes pending, read_key(new_path));
      if (matches(pending)) {
        PML_RETURN_IF_ERROR(core::WriteFileAtomic(key_path, core::ToString(pending.span()), 0600));
        (void)std::remove(new_path.c_str());
        return Open(state_dir, store, node_name);
      }
      (void)std::remove(new_path.c_str());
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "the store already holds a KMS cluster's root keys but ", key_path,
        " is missing: start this node with --join URL to join that cluster"));
  } else {
    // First start: the key is written aside, epoch 1 committed, then the key becomes the node's.
    first_start = true;
    if (core::PathExists(new_path)) {
      PML_ASSIGN_OR_RETURN(key, read_key(new_path));
    } else {
      key = crypto::SecretBytes(crypto::RandomBytes(32));
      PML_RETURN_IF_ERROR(core::WriteFileAtomic(new_path, core::ToString(key.span()), 0600));
    }
  }
  auto rk = std::unique_ptr<RootKeys>(new RootKeys(store, key));
  if (first_start) {
    // The new cluster's key chains its first audit row too.
    store.SetAuditChain(key, node_name);
    v1::AuditEvent a;
    a.set_action(v1::AUDIT_ACTION_ROOT_KEY_GENERATE);
    a.set_outcome(v1::AUDIT_OUTCOME_ALLOWED);
    a.set_caller(absl::StrCat("kms:", node_name));
    a.set_reason("root secrets generated on first start");
    absl::Status s = rk->Create(1, 0, std::move(a));
    if (!s.ok())
      store.ClearAuditChain();  // not this store's cluster key after all (or not yet)
    if (absl::IsAborted(s) || absl::IsAlreadyExists(s)) {
      (void)std::remove(new_path.c_str());
      return absl::FailedPreconditionError(
          "another KMS node initialized this store first: start this node with --join URL");
    }
    PML_RETURN_IF_ERROR(s);
    PML_RETURN_IF_ERROR(core::WriteFileAtomic(key_path, core::ToString(key.span()), 0600));
    (void)std::remove(new_path.c_str());
  }
  {
    absl::MutexLock l(&rk->mu_);
    PML_RETURN_IF_ERROR(rk->Refresh());
    if (rk->epochs_.empty())
      return absl::InternalError("no root-key epoch after start-up");
  }
  // The cluster key opened the store's epochs: it now authenticates the app-policy rows
  // (KmsStore::SetPolicyMacKey) and this node's audit rows (KmsStore::SetAuditChain). Join ends
  // here too.
  store.SetPolicyMacKey(rk->cluster_key_);
  store.SetAuditChain(rk->cluster_key_, node_name);
  return rk;
}

absl::StatusOr<std::unique_ptr<RootKeys>> RootKeys::Join(const std::string& state_dir,
                                                         KmsStore& store,
                                                         const std::string& node_name,
                                                         const v1::RootSecrets& secrets) {
  PML_RETURN_IF_ERROR(core::MakeDirs(state_dir, 0700));
  const std::string key_path = absl::StrCat(state_dir, "/", kClusterKeyFile);
  if (core::PathExists(key_path)) {
    return absl::AlreadyExistsError(absl::StrCat(
        key_path, " exists: this node already belongs to a cluster (remove --join)"));
  }
  if (secrets.cluster_key().size() != 32 || secrets.epochs_size() == 0)
    return absl::InvalidArgumentError("root secrets: no cluster key or no epochs");
  const crypto::SecretBytes key(core::AsBytes(secrets.cluster_key()));
  PML_ASSIGN_OR_RETURN(std::optional<std::string> check, store.GetMeta(kCheckMeta));
  if (check.has_value() && *check != ClusterKeyCheck(key)) {
    return absl::FailedPreconditionError(
        "the store belongs to another KMS cluster than the one joined");
  }
  // Re-seal every received epoch under the cluster key, checking each opens.
  RootKeys probe(store, key);
  std::vector<EpochRow> rows;
  uint32_t want = 1;
  for (const v1::EpochRootSecrets& e : secrets.epochs()) {
    if (e.epoch() != want++)
      return absl::InvalidArgumentError("root secrets: epochs not contiguous from 1");
    PML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr ca, crypto::PrivateKeyFromPkcs8Der(core::AsBytes(e.ca_key())));
    PML_ASSIGN_OR_RETURN(crypto::SecretBytes ca_scalar, crypto::PrivateKeyToScalar(*ca));
    if (e.k256_key().size() != 32)
      return absl::InvalidArgumentError("root secrets: k256 key not 32 bytes");
    const crypto::SecretBytes k_scalar(core::AsBytes(e.k256_key()));
    PML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr k,
                         crypto::PrivateKeyFromScalar(crypto::Curve::kSecp256k1, k_scalar.span()));
    PML_ASSIGN_OR_RETURN(std::vector<uint8_t> k_pub, crypto::Secp256k1CompressedPublicKey(*k));
    PML_ASSIGN_OR_RETURN(EpochRow row,
                         SealRow(key, e.epoch(), ca_scalar, k_scalar, e.ca_cert(),
                                 core::ToString(k_pub), e.create_time().seconds()));
    PML_RETURN_IF_ERROR(probe.OpenRow(row).status());
    rows.push_back(std::move(row));
  }
  store.SetAuditChain(key, node_name);  // every epoch opened under it: the join's row is chained
  v1::AuditEvent a;
  a.set_action(v1::AUDIT_ACTION_REPLICA_JOIN);
  a.set_outcome(v1::AUDIT_OUTCOME_ALLOWED);
  a.set_caller(absl::StrCat("kms:", node_name));
  a.set_reason("root secrets received through JoinCluster");
  PML_RETURN_IF_ERROR(store.ImportEpochs(rows, {{kCheckMeta, ClusterKeyCheck(key)}}, a));
  // Last: the key makes the node a member (a crash before this leaves a store a re-join completes).
  PML_RETURN_IF_ERROR(core::WriteFileAtomic(key_path, core::ToString(key.span()), 0600));
  return Open(state_dir, store, node_name);
}

absl::StatusOr<std::shared_ptr<const Epoch>> RootKeys::Current() {
  // Another node may have rotated (shared PostgreSQL): ask the store which epoch is current, and
  // read the epoch rows only when that one is new here.
  PML_ASSIGN_OR_RETURN(const uint32_t current, store_.CurrentEpoch());
  absl::MutexLock l(&mu_);
  auto it = epochs_.find(current);
  if (it != epochs_.end() && it == std::prev(epochs_.end()))
    return it->second;
  PML_RETURN_IF_ERROR(Refresh());
  if (epochs_.empty())
    return absl::FailedPreconditionError("no root-key epoch");
  return epochs_.rbegin()->second;
}

absl::StatusOr<std::shared_ptr<const Epoch>> RootKeys::Get(uint32_t n) {
  absl::MutexLock l(&mu_);
  auto it = epochs_.find(n);
  if (it == epochs_.end()) {
    PML_RETURN_IF_ERROR(Refresh());
    it = epochs_.find(n);
    if (it == epochs_.end())
      return absl::NotFoundError(absl::StrCat("no root-key epoch ", n));
  }
  return it->second;
}

absl::StatusOr<std::vector<std::shared_ptr<const Epoch>>> RootKeys::All() {
  absl::MutexLock l(&mu_);
  PML_RETURN_IF_ERROR(Refresh());
  std::vector<std::shared_ptr<const Epoch>> out;
  for (const auto& [n, e] : epochs_)
    out.push_back(e);
  return out;
}

absl::StatusOr<std::shared_ptr<const Epoch>> RootKeys::Rotate(
    std::optional<uint32_t> expected_current, const std::string& reason,
    const std::string& caller) {
  uint32_t current = 0;
  {
    absl::MutexLock l(&mu_);
    PML_RETURN_IF_ERROR(Refresh());
    current = epochs_.rbegin()->first;
  }
  v1::AuditEvent a;
  a.set_action(v1::AUDIT_ACTION_ROOT_KEY_ROTATE);
  a.set_outcome(v1::AUDIT_OUTCOME_ALLOWED);
  a.set_caller(caller);
  a.set_reason(reason.empty() ? std::string("root keys rotated") : reason.substr(0, 512));
  PML_RETURN_IF_ERROR(Create(current + 1, expected_current.value_or(current), std::move(a)));
  return Get(current + 1);
}

absl::StatusOr<std::shared_ptr<const IdentityCa>> RootKeys::Identity() {
  PML_ASSIGN_OR_RETURN(std::shared_ptr<const Epoch> first, Get(1));
  absl::MutexLock l(&mu_);
  if (identity_ == nullptr) {
    PML_ASSIGN_OR_RETURN(IdentityCa id, MakeIdentityCa(*first));
    identity_ = std::make_shared<const IdentityCa>(std::move(id));
  }
  return identity_;
}

absl::StatusOr<v1::RootSecrets> RootKeys::Export() {
  absl::MutexLock l(&mu_);
  PML_RETURN_IF_ERROR(Refresh());
  v1::RootSecrets out;
  absl::Cleanup wipe = [&out] { rpc::WipeMessage(out); };  // a partial export on an error path
  for (const auto& [n, e] : epochs_) {
    v1::EpochRootSecrets* s = out.add_epochs();
    s->set_epoch(n);
    PML_ASSIGN_OR_RETURN(crypto::SecretBytes p8, crypto::PrivateKeyToPkcs8Der(*e->ca_key));
    s->set_ca_key(core::ToString(p8.span()));
    s->set_ca_cert(e->ca_cert_der);
    s->set_k256_key(core::ToString(e->secret.k256_scalar.span()));
    s->mutable_create_time()->set_seconds(absl::ToUnixSeconds(e->created));
  }
  out.set_current_epoch(epochs_.rbegin()->first);
  out.set_cluster_key(core::ToString(cluster_key_.span()));
  std::move(wipe).Cancel();
  return out;
}

}  // namespace pml::kms
