#include "services/kms/key_release.h"

#include <openssl/x509.h>

#include <algorithm>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/cert_builder.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/key.h"
#include "lib/crypto/seal.h"
#include "lib/crypto/x509.h"
#include "lib/ratls/cert.h"
#include "lib/rpc/wipe.h"
#include "lib/tdx/quote.h"
#include "services/kms/derive.h"

namespace pml::kms {
namespace {

namespace av1 = attestation::v1;

std::string Hex(const std::string& b) { return core::HexEncode(core::AsBytes(b)); }

// The caller's claimed app id goes into the audit record only when it is one (20 bytes): a
// refusal of a malformed request must not let an unauthenticated caller write megabytes into
// the append-only log.
void SetAuditApp(v1::AuditEvent& audit, const std::string& app_id) {
  if (app_id.size() == kAppIdBytes) {
    audit.set_app_id(app_id);
    audit.set_caller(absl::StrCat("attested:", Hex(app_id)));
  } else {
    audit.set_caller(absl::StrCat("unattested (app id of ", app_id.size(), " bytes)"));
  }
}

const char* EarName(av1::EarStatus s) {
  switch (s) {
    case av1::EAR_STATUS_AFFIRMING:
      return "affirming";
    case av1::EAR_STATUS_WARNING:
      return "warning";
    case av1::EAR_STATUS_CONTRAINDICATED:
      return "contraindicated";
    case av1::EAR_STATUS_NONE:
      return "none";
    default:
      return "";
  }
}

// The measurements the audit records, from the quote (structure only: the verifier verified it).
void RecordMeasurements(const common::v1::EvidenceBundle& evidence, v1::AuditEvent& audit) {
  auto q = tdx::ParseQuote(core::AsBytes(evidence.tdx_quote()));
  if (!q.ok() || !q->td_report.has_value())
    return;
  const tdx::TdReport& td = *q->td_report;
  common::v1::TdMeasurements* m = audit.mutable_measurements();
  auto s = [](const tdx::Bytes48& b) { return std::string(b.begin(), b.end()); };
  m->set_mrtd(s(td.mr_td));
  m->set_rtmr0(s(td.rtmr[0]));
  m->set_rtmr1(s(td.rtmr[1]));
  m->set_rtmr2(s(td.rtmr[2]));
  m->set_rtmr3(s(td.rtmr[3]));
  m->set_mrconfigid(s(td.mr_config_id));
}

// What a guest-facing caller is told when the app's policy row cannot be used (it fails its MAC:
// KmsStore::SetPolicyMacKey): the details go to the operator's audit log, not to whoever asks.
absl::Status PublicPolicyError(const absl::Status& s) {
  if (!absl::IsDataLoss(s))
    return s;
  return absl::FailedPreconditionError(
      "the app's key-release policy cannot be used; the KMS operator's audit log says why");
}

}  // namespace

struct KeyReleaseCore::Appraisal {
  av1::AppraiseResponse response;
};

absl::StatusOr<crypto::X509Ptr> IssueAppCaCert(const Epoch& epoch, const EVP_PKEY& app_ca_key,
                                               absl::Span<const uint8_t> app_id,
                                               absl::Duration validity) {
  PML_ASSIGN_OR_RETURN(crypto::Validity root, crypto::CertificateValidity(*epoch.ca_cert));
  crypto::CertSpec spec;
  spec.common_name = absl::StrCat("App CA ", core::HexEncode(app_id));
  spec.organization = "PML KMS";
  spec.is_ca = true;
  spec.path_len = 0;
  const absl::Time now = absl::Now();
  spec.not_before = std::max(now - absl::Hours(1), root.not_before);
  spec.not_after = std::min(now + validity, root.not_after);
  ratls::RaTlsClaims claims;
  claims.app_id.assign(app_id.begin(), app_id.end());
  claims.usage = std::string(ratls::kUsageAppCa);
  spec.extensions = ratls::RaTlsExtensions(claims);
  return crypto::IssueCertificate(spec, app_ca_key, *epoch.ca_key, epoch.ca_cert.get());
}

absl::Status KeyReleaseCore::Refuse(v1::AuditEvent audit, absl::Status status) {
  audit.set_outcome(absl::IsFailedPrecondition(status) ? v1::AUDIT_OUTCOME_REFUSED
                                                       : v1::AUDIT_OUTCOME_ERROR);
  audit.set_reason(std::string(status.message()).substr(0, 1024));
  absl::StatusOr<uint64_t> logged = store_.AppendAudit(std::move(audit));
  if (!logged.ok()) {
    // A refusal that cannot be audited is still a refusal; the audit failure is the louder one.
    return absl::UnavailableError(absl::StrCat("audit log unavailable (",
                                               logged.status().message(), "); ",
                                               status.message()));
  }
  return status;
}

absl::StatusOr<std::shared_ptr<const Epoch>> KeyReleaseCore::EpochFor(bool has_epoch,
                                                                      uint32_t epoch) {
  if (has_epoch)
    return keys_.Get(epoch);
  return keys_.Current();
}

absl::StatusOr<KeyReleaseCore::Appraisal> KeyReleaseCore::AppraiseFor(
    const common::v1::EvidenceBundle& evidence, av1::ReportDataPurpose purpose,
    const std::string& bound_value, const v1::AppPolicy* app_policy,
    const std::string& replica_policy_id, v1::AuditEvent& audit) {
  av1::AppraiseRequest req;
  *req.mutable_evidence() = evidence;
  req.mutable_binding()->set_purpose(purpose);
  req.mutable_binding()->set_value(bound_value);
  if (app_policy != nullptr) {
    if (app_policy->has_inline_policy_json()) {
      req.set_inline_policy_json(app_policy->inline_policy_json());
    } else {
      req.set_policy_id(app_policy->verifier_policy_id());
      req.set_policy_version(app_policy->verifier_policy_version());
    }
  } else {
    req.set_policy_id(replica_policy_id);
  }
  RecordMeasurements(evidence, audit);
  absl::StatusOr<av1::AppraiseResponse> r = verifier_.Appraise(req);
  if (!r.ok()) {
    if (absl::IsInvalidArgument(r.status())) {
      return absl::FailedPreconditionError(
          absl::StrCat("the verifier refused the evidence: ", r.status().message()));
    }
    if (absl::IsNotFound(r.status())) {
      return absl::FailedPreconditionError(
          absl::StrCat("the verifier has no such policy: ", r.status().message()));
    }
    return absl::UnavailableError(
        absl::StrCat("the verifier could not appraise: ", r.status().message()));
  }
  audit.set_verifier_status(EarName(r->status()));
  audit.set_policy_id(r->policy_id());
  audit.set_policy_version(r->policy_version());
  audit.set_simulated(r->simulated());
  audit.set_instance_id(r->app_info().instance_id());
  audit.set_compose_hash(r->app_info().compose_hash());
  audit.set_device_id(r->app_info().device_id());
  audit.set_os_image_hash(r->app_info().os_image_hash());
  std::vector<std::string> names;
  for (const av1::FailedCheck& f : r->failed_checks()) {
    const std::string name = av1::AppraisalCheck_Name(f.check());
    audit.add_failed_checks(name);
    names.push_back(absl::StrCat(name, " (", f.detail().substr(0, 200), ")"));
  }
  if (!r->allowed()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "attestation refused under policy ", r->policy_id(), ": ",
        names.empty() ? std::string("not allowed") : absl::StrJoin(names, "; ")));
  }
  return Appraisal{*std::move(r)};
}

absl::StatusOr<std::shared_ptr<const crypto::SealSender>> KeyReleaseCore::SenderKey() {
  const absl::Time now = absl::Now();
  absl::MutexLock l(&sender_mu_);
  if (sender_ == nullptr || now - sender_since_ >= kSenderKeyLifetime || now < sender_since_) {
    PML_ASSIGN_OR_RETURN(sender_, crypto::SealSender::Generate());
    sender_since_ = now;
  }
  return sender_;
}

absl::StatusOr<std::shared_ptr<const KeyReleaseCore::AppMaterial>> KeyReleaseCore::Material(
    const Epoch& e, const std::string& app_id) {
  const std::string key = absl::StrCat(e.secret.epoch, "/", app_id);
  {
    absl::MutexLock l(&cache_mu_);
    auto it = cache_.find(key);
    if (it != cache_.end())
      return it->second;
  }
  PML_ASSIGN_OR_RETURN(DerivedAppSecrets d,
                       DeriveAppSecrets(e.secret, core::AsBytes(app_id), {}));
  auto m = std::make_shared<AppMaterial>();
  PML_ASSIGN_OR_RETURN(m->app_ca_key,
                       crypto::PrivateKeyFromScalar(crypto::Curve::kP256, d.app_ca_scalar.span()));
  PML_ASSIGN_OR_RETURN(m->app_ca_cert, IssueAppCaCert(e, *m->app_ca_key, core::AsBytes(app_id),
                                                     options_.app_ca_validity));
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> ca_der, crypto::CertificateToDer(*m->app_ca_cert));
  m->app_ca_cert_der = core::ToString(ca_der);
  PML_ASSIGN_OR_RETURN(crypto::SecretBytes p8, crypto::PrivateKeyToPkcs8Der(*m->app_ca_key));
  m->app_ca_key_pkcs8 = core::ToString(p8.span());
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> spki, crypto::PublicKeyToDer(*m->app_ca_key));
  m->app_ca_spki = core::ToString(spki);
  m->env_key = core::ToString(d.env_key.span());
  m->env_public_key = std::string(d.env_public_key.begin(), d.env_public_key.end());
  m->k256_key = core::ToString(d.k256_scalar.span());
  m->k256_public_key = core::ToString(d.k256_public_key);
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> sig,
                       SignWithRootK256(e.secret, KmsIssuedMessage(core::AsBytes(app_id),
                                                                   d.k256_public_key)));
  m->k256_signature = core::ToString(sig);
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> sig0,
                       SignWithRootK256(e.secret, EnvPubKeyMessage(core::AsBytes(app_id),
                                                                   std::nullopt,
                                                                   d.env_public_key)));
  m->env_signature_v0 = core::ToString(sig0);
  absl::MutexLock l(&cache_mu_);
  if (cache_.size() >= kMaterialCacheEntries)
    cache_.clear();  // bounded; entries are recomputed on demand
  auto [it, inserted] = cache_.emplace(key, std::move(m));
  return it->second;
}

absl::StatusOr<v1::GetAppKeysResponse> KeyReleaseCore::GetAppKeys(
    const v1::GetAppKeysRequest& request) {
  v1::AuditEvent audit;
  audit.set_action(v1::AUDIT_ACTION_KEY_RELEASE);
  const std::string& app_id = request.evidence().app_info().app_id();
  SetAuditApp(audit, app_id);
  if (!request.has_evidence() || request.evidence().tdx_quote().empty())
    return Refuse(audit, absl::InvalidArgumentError("evidence: no TDX quote"));
  if (app_id.size() != kAppIdBytes)
    return Refuse(audit, absl::InvalidArgumentError("evidence.app_info.app_id: want 20 bytes"));
  if (request.ephemeral_public_key().size() != crypto::kX25519KeyBytes)
    return Refuse(audit, absl::InvalidArgumentError("ephemeral_public_key: want 32 bytes"));
  absl::StatusOr<std::shared_ptr<const Epoch>> epoch =
      EpochFor(request.has_epoch(), request.epoch());
  if (!epoch.ok())
    return Refuse(audit, epoch.status());
  audit.set_epoch((*epoch)->secret.epoch);
  absl::StatusOr<v1::AppPolicy> policy = store_.GetAppPolicy(app_id);
  if (!policy.ok()) {
    if (absl::IsNotFound(policy.status())) {
      return Refuse(audit, absl::FailedPreconditionError(absl::StrCat(
                               "unknown app ", Hex(app_id), ": no key-release policy")));
    }
    return PublicPolicyError(Refuse(audit, policy.status()));
  }
  absl::StatusOr<Appraisal> a =
      AppraiseFor(request.evidence(), av1::REPORT_DATA_PURPOSE_KMS_KEY_RELEASE,
                  request.ephemeral_public_key(), &*policy, "", audit);
  if (!a.ok())
    return Refuse(audit, a.status());
  const common::v1::AppInfo& verified = a->response.app_info();
  if (verified.app_id() != app_id) {
    return Refuse(audit, absl::FailedPreconditionError(absl::StrCat(
                             "the evidence's event log states app id ", Hex(verified.app_id()),
                             ", not the claimed ", Hex(app_id))));
  }

  const Epoch& e = **epoch;
  absl::StatusOr<std::shared_ptr<const AppMaterial>> m = Material(e, app_id);
  if (!m.ok())
    return Refuse(audit, m.status());
  absl::StatusOr<crypto::SecretBytes> disk =
      verified.instance_id().empty()
          ? absl::StatusOr<crypto::SecretBytes>(crypto::SecretBytes())
          : DeriveDiskKey(e.secret, core::AsBytes(app_id), core::AsBytes(verified.instance_id()));
  if (!disk.ok())
    return Refuse(audit, disk.status());
  v1::AppKeys keys;
  absl::Cleanup wipe_keys = [&keys] { rpc::WipeMessage(keys); };  // every path out
  keys.set_app_ca_key((*m)->app_ca_key_pkcs8);
  keys.set_app_ca_cert((*m)->app_ca_cert_der);
  keys.set_disk_crypt_key(core::ToString(disk->span()));
  keys.set_env_crypt_key((*m)->env_key);
  keys.set_k256_key((*m)->k256_key);
  keys.set_k256_signature((*m)->k256_signature);
  keys.set_epoch(e.secret.epoch);
  keys.set_kms_root_ca_cert(e.ca_cert_der);
  keys.set_kms_k256_public_key(core::ToString(e.k256_public_key));
  absl::StatusOr<std::shared_ptr<const crypto::SealSender>> sender = SenderKey();
  if (!sender.ok())
    return Refuse(audit, sender.status());
  std::string plain = keys.SerializeAsString();
  absl::StatusOr<crypto::SealedBox> box =
      crypto::Seal(**sender, core::AsBytes(request.ephemeral_public_key()), core::AsBytes(plain),
                   core::AsBytes(app_id), kAppKeysSealLabel);
  OPENSSL_cleanse(plain.data(), plain.size());
  rpc::WipeMessage(keys);
  if (!box.ok()) {
    return Refuse(audit, absl::InvalidArgumentError(
                             absl::StrCat("ephemeral_public_key: ", box.status().message())));
  }
  audit.set_outcome(v1::AUDIT_OUTCOME_ALLOWED);
  audit.set_reason(absl::StrCat("keys released in epoch ", e.secret.epoch));
  PML_RETURN_IF_ERROR(store_.AppendAudit(audit).status());  // no audit, no release

  v1::GetAppKeysResponse resp;
  v1::SealedPayload* s = resp.mutable_sealed_keys();
  s->set_kms_ephemeral_public_key(std::string(box->ephemeral_public_key.begin(),
                                              box->ephemeral_public_key.end()));
  s->set_nonce(std::string(box->nonce.begin(), box->nonce.end()));
  s->set_ciphertext(core::ToString(box->ciphertext));
  resp.set_epoch(e.secret.epoch);
  resp.set_app_id(app_id);
  resp.set_attestation_token(a->response.token());
  const std::string hex_app = Hex(app_id);
  auto info = [&](v1::KeyPurpose p, const char* name, std::string pub) {
    v1::KeyInfo* k = resp.add_keys();
    k->set_purpose(p);
    k->set_key_id(absl::StrCat(name, "/", hex_app, "/e", e.secret.epoch));
    k->set_epoch(e.secret.epoch);
    k->set_public_key(std::move(pub));
  };
  info(v1::KEY_PURPOSE_APP_CA, "app-ca", (*m)->app_ca_spki);
  if (!disk->span().empty()) {
    v1::KeyInfo* k = resp.add_keys();
    k->set_purpose(v1::KEY_PURPOSE_DISK_CRYPT);
    k->set_key_id(absl::StrCat("disk/", hex_app, "/", Hex(verified.instance_id()), "/e",
                               e.secret.epoch));
    k->set_epoch(e.secret.epoch);
  }
  info(v1::KEY_PURPOSE_ENV_CRYPT, "env", (*m)->env_public_key);
  info(v1::KEY_PURPOSE_APP_K256, "app-key", (*m)->k256_public_key);
  return resp;
}

absl::StatusOr<v1::SignCertResponse> KeyReleaseCore::SignCert(const v1::SignCertRequest& request) {
  v1::AuditEvent audit;
  audit.set_action(v1::AUDIT_ACTION_CERT_SIGN);
  const std::string& app_id = request.evidence().app_info().app_id();
  SetAuditApp(audit, app_id);
  if (app_id.size() != kAppIdBytes)
    return Refuse(audit, absl::InvalidArgumentError("evidence.app_info.app_id: want 20 bytes"));
  const unsigned char* p = reinterpret_cast<const unsigned char*>(request.csr().data());
  crypto::X509ReqPtr csr(d2i_X509_REQ(nullptr, &p, static_cast<long>(request.csr().size())));
  if (csr == nullptr ||
      p != reinterpret_cast<const unsigned char*>(request.csr().data()) + request.csr().size()) {
    return Refuse(audit, absl::InvalidArgumentError("csr: not a DER PKCS#10 request"));
  }
  EVP_PKEY* csr_key = X509_REQ_get0_pubkey(csr.get());
  if (csr_key == nullptr || X509_REQ_verify(csr.get(), csr_key) != 1) {
    return Refuse(audit, absl::InvalidArgumentError("csr: its signature does not verify"));
  }
  const std::string usage = request.usage().empty() ? std::string(ratls::kUsageAppCustom)
                                                    : request.usage();
  if (usage == ratls::kUsageAppCa || usage == ratls::kUsageKmsRpc || usage.size() > 64) {
    return Refuse(audit, absl::InvalidArgumentError(
                             absl::StrCat("usage: \"", usage.substr(0, 64), "\" is not allowed")));
  }
  absl::StatusOr<std::shared_ptr<const Epoch>> epoch =
      EpochFor(request.has_epoch(), request.epoch());
  if (!epoch.ok())
    return Refuse(audit, epoch.status());
  audit.set_epoch((*epoch)->secret.epoch);
  absl::StatusOr<v1::AppPolicy> policy = store_.GetAppPolicy(app_id);
  if (!policy.ok()) {
    return PublicPolicyError(
        Refuse(audit, absl::IsNotFound(policy.status())
                          ? absl::FailedPreconditionError(absl::StrCat(
                                "unknown app ", Hex(app_id), ": no key-release policy"))
                          : policy.status()));
  }
  absl::StatusOr<std::vector<uint8_t>> spki = crypto::PublicKeyToDer(*csr_key);
  if (!spki.ok())
    return Refuse(audit, spki.status());
  absl::StatusOr<Appraisal> a =
      AppraiseFor(request.evidence(), av1::REPORT_DATA_PURPOSE_RA_TLS_CERT, core::ToString(*spki),
                  &*policy, "", audit);
  if (!a.ok())
    return Refuse(audit, a.status());
  if (a->response.app_info().app_id() != app_id) {
    return Refuse(audit, absl::FailedPreconditionError(
                             "the evidence's event log states another app id than claimed"));
  }
  const Epoch& e = **epoch;
  v1::SignCertResponse resp;
  absl::Status built = [&]() -> absl::Status {
    PML_ASSIGN_OR_RETURN(std::shared_ptr<const AppMaterial> m, Material(e, app_id));
    const EVP_PKEY* ca_key = m->app_ca_key.get();
    const X509* ca_cert = m->app_ca_cert.get();
    crypto::CertSpec spec;
    X509_NAME* subject = X509_REQ_get_subject_name(csr.get());
    spec.common_name = subject == nullptr ? "" : crypto::CommonName(*subject);
    if (spec.common_name.empty())
      spec.common_name = "RA-TLS";
    spec.common_name = spec.common_name.substr(0, 64);
    spec.server_auth = true;
    spec.client_auth = true;
    PML_ASSIGN_OR_RETURN(crypto::Validity cv, crypto::CertificateValidity(*ca_cert));
    spec.not_before = cv.not_before;
    spec.not_after = std::min(absl::Now() + absl::Hours(24 * 365), cv.not_after);
    ratls::RaTlsClaims claims;
    claims.quote.assign(request.evidence().tdx_quote().begin(),
                        request.evidence().tdx_quote().end());
    claims.event_log = request.evidence().event_log();
    claims.app_id.assign(app_id.begin(), app_id.end());
    claims.usage = usage;
    spec.extensions = ratls::RaTlsExtensions(claims);
    PML_ASSIGN_OR_RETURN(crypto::X509Ptr leaf,
                         crypto::IssueCertificate(spec, *csr_key, *ca_key, ca_cert));
    PML_ASSIGN_OR_RETURN(std::vector<uint8_t> leaf_der, crypto::CertificateToDer(*leaf));
    resp.add_certificate_chain(core::ToString(leaf_der));
    resp.add_certificate_chain(m->app_ca_cert_der);
    resp.add_certificate_chain(e.ca_cert_der);
    resp.set_epoch(e.secret.epoch);
    return absl::OkStatus();
  }();
  if (!built.ok())
    return Refuse(audit, built);
  audit.set_outcome(v1::AUDIT_OUTCOME_ALLOWED);
  audit.set_reason(absl::StrCat("RA-TLS certificate issued (", usage, ")"));
  PML_RETURN_IF_ERROR(store_.AppendAudit(audit).status());
  return resp;
}

absl::StatusOr<v1::GetAppEnvEncryptPubKeyResponse> KeyReleaseCore::GetAppEnvEncryptPubKey(
    const v1::GetAppEnvEncryptPubKeyRequest& request) {
  if (request.app_id().size() != kAppIdBytes)
    return absl::InvalidArgumentError("app_id: want 20 bytes");
  PML_ASSIGN_OR_RETURN(std::shared_ptr<const Epoch> e,
                       EpochFor(request.has_epoch(), request.epoch()));
  // Only apps the operator bound to a policy have env keys here: this endpoint is public, and
  // deriving for any 20 bytes would let anyone fill the key cache.
  PML_RETURN_IF_ERROR(PublicPolicyError(store_.GetAppPolicy(request.app_id()).status()));
  PML_ASSIGN_OR_RETURN(std::shared_ptr<const AppMaterial> m, Material(*e, request.app_id()));
  // The timestamped signature is renewed at most once a minute per app (this endpoint is public:
  // a secp256k1 signature per unauthenticated call would be a cheap way to load the KMS).
  uint64_t ts = 0;
  std::string sig;
  {
    absl::MutexLock l(&m->env_mu);
    const uint64_t now = static_cast<uint64_t>(absl::ToUnixSeconds(absl::Now()));
    if (m->env_sig_time == 0 || now - m->env_sig_time >= 60 || now < m->env_sig_time) {
      PML_ASSIGN_OR_RETURN(
          std::vector<uint8_t> fresh,
          SignWithRootK256(e->secret, EnvPubKeyMessage(core::AsBytes(request.app_id()), now,
                                                       core::AsBytes(m->env_public_key))));
      m->env_sig = core::ToString(fresh);
      m->env_sig_time = now;
    }
    ts = m->env_sig_time;
    sig = m->env_sig;
  }
  v1::GetAppEnvEncryptPubKeyResponse r;
  r.set_public_key(m->env_public_key);
  r.set_signature(sig);
  r.set_timestamp(ts);
  r.set_signature_v0(m->env_signature_v0);
  r.set_epoch(e->secret.epoch);
  return r;
}

absl::StatusOr<std::vector<v1::EpochPublicInfo>> KeyReleaseCore::EpochInfos() {
  PML_ASSIGN_OR_RETURN(auto all, keys_.All());
  std::vector<v1::EpochPublicInfo> out;
  for (size_t i = 0; i < all.size(); ++i) {
    v1::EpochPublicInfo info;
    info.set_epoch(all[i]->secret.epoch);
    info.set_root_ca_cert(all[i]->ca_cert_der);
    info.set_k256_public_key(core::ToString(all[i]->k256_public_key));
    info.mutable_create_time()->set_seconds(absl::ToUnixSeconds(all[i]->created));
    info.set_current(i + 1 == all.size());
    out.push_back(std::move(info));
  }
  return out;
}

absl::StatusOr<v1::GetPublicInfoResponse> KeyReleaseCore::GetPublicInfo() {
  v1::GetPublicInfoResponse r;
  PML_ASSIGN_OR_RETURN(std::vector<v1::EpochPublicInfo> infos, EpochInfos());
  for (auto& i : infos)
    *r.add_epochs() = std::move(i);
  PML_ASSIGN_OR_RETURN(std::shared_ptr<const Epoch> cur, keys_.Current());
  PML_ASSIGN_OR_RETURN(std::shared_ptr<const IdentityCa> identity, keys_.Identity());
  r.set_current_epoch(cur->secret.epoch);
  r.set_key_provider_id(identity->key_provider_id);
  r.set_identity_ca_cert(identity->cert_der);
  r.set_version(options_.version);
  if (!options_.kms_evidence.tdx_quote().empty())
    *r.mutable_kms_evidence() = options_.kms_evidence;
  return r;
}

absl::StatusOr<v1::JoinClusterResponse> KeyReleaseCore::JoinCluster(
    const v1::JoinClusterRequest& request) {
  v1::AuditEvent audit;
  audit.set_action(v1::AUDIT_ACTION_REPLICA_JOIN);
  const std::string& name = request.node_name();
  audit.set_caller(absl::StrCat("kms-replica:", name.substr(0, 64)));
  const bool name_ok = !name.empty() && name.size() <= 64 &&
                       std::all_of(name.begin(), name.end(), [](char c) {
                         return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                                c == '_' || c == '-';
                       });
  if (!name_ok)
    return Refuse(audit, absl::InvalidArgumentError("node_name: 1-64 characters of [a-z0-9._-]"));
  if (request.ephemeral_public_key().size() != crypto::kX25519KeyBytes)
    return Refuse(audit, absl::InvalidArgumentError("ephemeral_public_key: want 32 bytes"));
  if (!request.has_evidence() || request.evidence().tdx_quote().empty())
    return Refuse(audit, absl::InvalidArgumentError("evidence: no TDX quote"));
  if (options_.replica_policy_id.empty() || options_.replica_join_token_sha256.size() != 32) {
    return Refuse(audit, absl::FailedPreconditionError(
                             "replication is off: this KMS has no --replica-policy-id and "
                             "--replica-join-token-file"));
  }
  const auto token = crypto::Sha256(request.join_token());
  if (request.join_token().empty() ||
      CRYPTO_memcmp(token.data(), options_.replica_join_token_sha256.data(), token.size()) != 0) {
    return Refuse(audit, absl::FailedPreconditionError("the join token does not match"));
  }
  absl::StatusOr<Appraisal> a =
      AppraiseFor(request.evidence(), av1::REPORT_DATA_PURPOSE_KMS_REPLICA_JOIN,
                  request.ephemeral_public_key(), nullptr, options_.replica_policy_id, audit);
  if (!a.ok())
    return Refuse(audit, a.status());
  absl::StatusOr<v1::RootSecrets> secrets = keys_.Export();
  if (!secrets.ok())
    return Refuse(audit, secrets.status());
  std::string plain = secrets->SerializeAsString();
  rpc::WipeMessage(*secrets);
  absl::StatusOr<crypto::SealedBox> box =
      crypto::Seal(core::AsBytes(request.ephemeral_public_key()), core::AsBytes(plain),
                   core::AsBytes(name), kRootSecretsSealLabel);
  OPENSSL_cleanse(plain.data(), plain.size());
  if (!box.ok()) {
    return Refuse(audit, absl::InvalidArgumentError(
                             absl::StrCat("ephemeral_public_key: ", box.status().message())));
  }
  PML_ASSIGN_OR_RETURN(std::shared_ptr<const Epoch> cur, keys_.Current());
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  PML_RETURN_IF_ERROR(store_.UpsertReplica(name, request.advertised_url().substr(0, 256), now, now));
  audit.set_outcome(v1::AUDIT_OUTCOME_ALLOWED);
  audit.set_epoch(cur->secret.epoch);
  audit.set_reason("root secrets sealed to the joining node");
  PML_RETURN_IF_ERROR(store_.AppendAudit(audit).status());
  v1::JoinClusterResponse resp;
  v1::SealedPayload* s = resp.mutable_sealed_root_secrets();
  s->set_kms_ephemeral_public_key(
      std::string(box->ephemeral_public_key.begin(), box->ephemeral_public_key.end()));
  s->set_nonce(std::string(box->nonce.begin(), box->nonce.end()));
  s->set_ciphertext(core::ToString(box->ciphertext));
  resp.set_current_epoch(cur->secret.epoch);
  resp.set_attestation_token(a->response.token());
  return resp;
}

}  // namespace pml::kms
