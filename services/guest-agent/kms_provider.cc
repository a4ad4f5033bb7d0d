#include "services/guest-agent/kms_provider.h"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <nlohmann/json.hpp>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/cert_builder.h"
#include "lib/crypto/key.h"
#include "lib/crypto/seal.h"
#include "lib/crypto/x509.h"
#include "lib/ratls/cert.h"
#include "lib/ratls/report_data.h"
#include "lib/rpc/client.h"
#include "lib/rpc/status_convert.h"
#include "lib/rpc/wipe.h"
#include "pml/kms/v1/kms.grpc.pb.h"

namespace pml::guest {
namespace {

constexpr int kMaxMessageBytes = 16 << 20;  // as rpc::ClientConfig's default

// The last 64 characters of `s`, marked when cut (STYLE.md §3: bounded values in messages).
std::string Bounded(absl::string_view s) {
  if (s.size() <= 64)
    return std::string(s);
  return absl::StrCat("...", s.substr(s.size() - 64));
}

grpc::ChannelArguments ChannelArgs() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  return args;
}

// TLS to the KMS anchored at `root_pem`. Not rpc::MakeChannel, which reads its anchor from a file:
// a fetched anchor exists only in memory.
std::shared_ptr<grpc::Channel> PinnedChannel(const std::string& address,
                                             const std::string& root_pem) {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = root_pem;
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(ssl), ChannelArgs());
}

// gRPC's TLS client loads root certificates even when it verifies nothing with them, and fails to
// handshake where the guest image has no root store (no /usr/share/grpc/roots.pem). A throwaway
// self-signed root, made here and trusted for nothing, keeps the unverified fetch independent of
// what the image ships.
absl::StatusOr<std::string> UnusedRootPem() {
  PML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr key, crypto::GenerateEcKey(crypto::Curve::kP256));
  crypto::CertSpec spec;
  spec.common_name = "pml-guest-agent unused root";
  spec.is_ca = true;
  PML_ASSIGN_OR_RETURN(crypto::X509Ptr cert, crypto::IssueCertificate(spec, *key, *key, nullptr));
  return crypto::CertificateToPem(*cert);
}

// kNotFound when the call never reached a TLS peer; kFailedPrecondition when the peer's leaf
// certificate is not a kms:rpc certificate.
absl::Status CheckKmsRpcLeaf(const grpc::ClientContext& ctx) {
  std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  std::vector<grpc::string_ref> pems;
  if (auth != nullptr)
    pems = auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
  if (pems.empty())
    return absl::NotFoundError("no TLS peer certificate");
  auto certs = crypto::ParsePemCertificates(absl::string_view(pems[0].data(), pems[0].size()), 1);
  if (!certs.ok())
    return absl::FailedPreconditionError("its TLS certificate does not parse");
  absl::StatusOr<ratls::RaTlsClaims> claims = ratls::ParseRaTlsClaims(*(*certs)[0]);
  const std::string usage = claims.ok() ? claims->usage : std::string();
  if (usage != ratls::kUsageKmsRpc) {
    return absl::FailedPreconditionError(absl::StrCat(
        "its TLS certificate is not a KMS RPC certificate (usage \"",
        absl::CEscape(usage.substr(0, 64)), "\", want \"", ratls::kUsageKmsRpc, "\")"));
  }
  return absl::OkStatus();
}

// TLS to the KMS that authenticates nothing: only for GetPublicInfo, whose answer is checked
// against the app's pin before anything is trusted or sent.
absl::StatusOr<std::shared_ptr<grpc::Channel>> UnverifiedChannel(const std::string& address) {
  PML_ASSIGN_OR_RETURN(std::string unused_root, UnusedRootPem());
  grpc::experimental::TlsChannelCredentialsOptions opts;
  opts.set_certificate_provider(
      std::make_shared<grpc::experimental::StaticDataCertificateProvider>(unused_root));
  opts.watch_root_certs();
  opts.set_verify_server_certs(false);
  opts.set_check_call_host(false);
  opts.set_certificate_verifier(std::make_shared<grpc::experimental::NoOpCertificateVerifier>());
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::experimental::TlsCredentials(opts);
  if (creds == nullptr)
    return absl::InternalError("gRPC refused the TLS options for fetching the KMS identity CA");
  return grpc::CreateCustomChannel(address, creds, ChannelArgs());
}

}  // namespace

absl::StatusOr<std::string> KmsTargetFromUrl(absl::string_view url) {
  absl::string_view u = url;
  const std::string shown = std::string(url.substr(0, 200));
  if (!absl::StrContains(u, "://")) {
    if (u.empty())
      return absl::InvalidArgumentError("KMS URL: empty");
    return std::string(u);
  }
  if (!absl::ConsumePrefix(&u, "https://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("KMS URL \"", shown,
                     "\": want https://host[:port] or host:port (key release is TLS only)"));
  }
  absl::ConsumeSuffix(&u, "/");
  if (u.empty() || absl::StrContains(u, '/') || absl::StartsWith(u, ":")) {
    return absl::InvalidArgumentError(
        absl::StrCat("KMS URL \"", shown, "\": want https://host[:port], without a path"));
  }
  const size_t bracket = u.rfind(']');
  const size_t colon = u.rfind(':');
  const bool has_port =
      colon != absl::string_view::npos && (bracket == absl::string_view::npos || colon > bracket);
  return has_port ? std::string(u) : absl::StrCat(u, ":443");
}

absl::StatusOr<std::string> FetchKmsIdentityCa(const std::string& address,
                                               absl::string_view pinned_key_provider_id,
                                               absl::Duration timeout) {
  if (pinned_key_provider_id.empty()) {
    return absl::FailedPreconditionError(
        "app-compose.json has no key_provider_id: the KMS identity CA cannot be checked");
  }
  PML_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> ch, UnverifiedChannel(address));
  auto stub = kms::v1::KeyRelease::NewStub(ch);
  grpc::ClientContext ctx;
  rpc::SetTimeout(ctx, timeout);
  kms::v1::GetPublicInfoResponse info;
  grpc::Status s = stub->GetPublicInfo(&ctx, kms::v1::GetPublicInfoRequest(), &info);
  if (!s.ok()) {
    absl::Status st = rpc::FromGrpcStatus(s);
    return absl::Status(st.code(),
                        absl::StrCat("KMS ", address, ": GetPublicInfo: ", st.message()));
  }
  if (info.identity_ca_cert().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("KMS ", address, ": GetPublicInfo has no identity_ca_cert"));
  }
  auto cert = crypto::ParseDerCertificate(core::AsBytes(info.identity_ca_cert()));
  if (!cert.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KMS ", address, ": GetPublicInfo identity_ca_cert: ", cert.status().message()));
  }
  PML_ASSIGN_OR_RETURN(const EVP_PKEY* key, crypto::CertificatePublicKey(**cert));
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> spki, crypto::PublicKeyToDer(*key));
  const std::string have = core::HexEncode(spki);
  const std::string want = absl::AsciiStrToLower(pinned_key_provider_id);
  if (have != want) {
    return absl::FailedPreconditionError(
        absl::StrCat("the KMS at ", address, " presents identity CA ", Bounded(have),
                     " but app-compose.json key_provider_id pins ", Bounded(want),
                     ": not the app's KMS, nothing is sent to it"));
  }
  // Only the pinned key matters to the chain check; a self-signature also rules out a
  // certificate someone re-wrapped around that key.
  if (absl::Status self = crypto::VerifyCertificateSignature(**cert, *key); !self.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KMS ", address, ": GetPublicInfo identity_ca_cert is not self-signed: ", self.message()));
  }
  return crypto::CertificateToPem(**cert);
}

absl::StatusOr<KmsKeys> FetchKeysFromKms(const KmsProviderOptions& o, RuntimeEventLog& log,
                                         GpuSource* gpus, const AgentIdentity& id) {
  // 1. Authenticate the KMS root against the app's pin.
  if (o.pinned_key_provider_id.empty()) {
    return absl::FailedPreconditionError(
        "app-compose.json has no key_provider_id: the KMS cannot be authenticated, so no evidence "
        "is sent to it");
  }
  std::string root_pem;
  if (o.root_ca_pem_path.empty()) {
    PML_ASSIGN_OR_RETURN(root_pem,
                         FetchKmsIdentityCa(o.address, o.pinned_key_provider_id, o.timeout));
  } else {
    PML_ASSIGN_OR_RETURN(root_pem, core::ReadFile(o.root_ca_pem_path, 1 << 20));
  }
  const std::string root_source =
      o.root_ca_pem_path.empty() ? absl::StrCat("fetched from ", o.address) : o.root_ca_pem_path;
  PML_ASSIGN_OR_RETURN(std::vector<crypto::X509Ptr> roots, crypto::ParsePemCertificates(root_pem));
  if (roots.size() != 1)
    return absl::InvalidArgumentError(absl::StrCat(root_source, ": want one certificate"));
  PML_ASSIGN_OR_RETURN(const EVP_PKEY* root_key, crypto::CertificatePublicKey(*roots[0]));
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> spki, crypto::PublicKeyToDer(*root_key));
  const std::string root_id = core::HexEncode(spki);
  if (root_id != absl::AsciiStrToLower(o.pinned_key_provider_id)) {
    return absl::FailedPreconditionError(absl::StrCat("the KMS root CA in ", root_source,
                                                      " is not the one app-compose.json pins "
                                                      "(key_provider_id)"));
  }

  // 2. Evidence committing to a one-time key.
  PML_ASSIGN_OR_RETURN(crypto::X25519KeyPair eph, crypto::GenerateX25519());
  PML_ASSIGN_OR_RETURN(ratls::ReportData rd,
                       ratls::ComputeReportData(ratls::ReportDataPurpose::kKmsKeyRelease,
                                                eph.public_key));
  kms::v1::GetAppKeysRequest req;
  PML_ASSIGN_OR_RETURN(*req.mutable_evidence(), BuildEvidenceBundle(log, gpus, id, rd));
  // At key release RTMR3 ends at boot-mr-done: os-image-hash and key-provider are measured only
  // after the KMS answers (dstack's order), so claiming them now would be unverifiable (the
  // verifier refuses app info the event log does not back).
  req.mutable_evidence()->mutable_app_info()->clear_os_image_hash();
  req.mutable_evidence()->mutable_app_info()->clear_key_provider_info();
  req.set_ephemeral_public_key(std::string(eph.public_key.begin(), eph.public_key.end()));

  // 3. Ask over TLS to the pinned root.
  std::shared_ptr<grpc::Channel> ch = PinnedChannel(o.address, root_pem);
  auto stub = kms::v1::KeyRelease::NewStub(ch);
  grpc::ClientContext ctx;
  rpc::SetTimeout(ctx, o.timeout);
  kms::v1::GetAppKeysResponse resp;
  grpc::Status s = stub->GetAppKeys(&ctx, req, &resp);
  // Whatever it answered, the peer must have been a KMS RPC endpoint: its leaf carries usage
  // kms:rpc (the identity CA signs nothing else today; this keeps it so if it ever does).
  absl::Status leaf = CheckKmsRpcLeaf(ctx);
  if (!leaf.ok() && !absl::IsNotFound(leaf))
    return absl::Status(leaf.code(), absl::StrCat("KMS ", o.address, ": ", leaf.message()));
  if (!s.ok()) {
    absl::Status st = rpc::FromGrpcStatus(s);
    return absl::Status(st.code(), absl::StrCat("KMS ", o.address, ": ", st.message()));
  }
  if (!leaf.ok())
    return absl::DataLossError(absl::StrCat("KMS ", o.address, ": ", leaf.message()));
  if (resp.app_id() != core::ToString(id.app_id))
    return absl::DataLossError("the KMS answered for another app");
  const kms::v1::SealedPayload& sp = resp.sealed_keys();
  crypto::SealedBox box;
  if (sp.kms_ephemeral_public_key().size() != box.ephemeral_public_key.size() ||
      sp.nonce().size() != box.nonce.size()) {
    return absl::DataLossError("the KMS answer is malformed");
  }
  std::copy(sp.kms_ephemeral_public_key().begin(), sp.kms_ephemeral_public_key().end(),
            box.ephemeral_public_key.begin());
  std::copy(sp.nonce().begin(), sp.nonce().end(), box.nonce.begin());
  box.ciphertext.assign(sp.ciphertext().begin(), sp.ciphertext().end());
  auto plain = crypto::Open(eph.private_key.span(), box, id.app_id, crypto::kKmsAppKeysSealLabel);
  if (!plain.ok())
    return absl::DataLossError(absl::StrCat("the KMS answer: ", plain.status().message()));
  kms::v1::AppKeys keys;
  absl::Cleanup wipe = [&keys] { rpc::WipeMessage(keys); };  // on every path out
  if (!keys.ParseFromArray(plain->span().data(), static_cast<int>(plain->size())))
    return absl::DataLossError("the KMS answer: app keys do not parse");

  KmsKeys out;
  out.app_key = crypto::SecretBytes(core::AsBytes(keys.k256_key()));
  out.kms_signature.assign(keys.k256_signature().begin(), keys.k256_signature().end());
  out.disk_key = crypto::SecretBytes(core::AsBytes(keys.disk_crypt_key()));
  out.env_key = crypto::SecretBytes(core::AsBytes(keys.env_crypt_key()));
  out.epoch = keys.epoch();
  out.attestation_token = resp.attestation_token();
  PML_ASSIGN_OR_RETURN(out.ca.key, crypto::PrivateKeyFromPkcs8Der(core::AsBytes(keys.app_ca_key())));
  PML_ASSIGN_OR_RETURN(out.ca.cert, crypto::ParseDerCertificate(core::AsBytes(keys.app_ca_cert())));
  PML_ASSIGN_OR_RETURN(crypto::X509Ptr epoch_root,
                       crypto::ParseDerCertificate(core::AsBytes(keys.kms_root_ca_cert())));
  // The app CA must chain to the epoch's root, and must carry the key we were given.
  PML_ASSIGN_OR_RETURN(const EVP_PKEY* epoch_root_key, crypto::CertificatePublicKey(*epoch_root));
  PML_RETURN_IF_ERROR(crypto::VerifyCertificateSignature(*out.ca.cert, *epoch_root_key));
  PML_ASSIGN_OR_RETURN(const EVP_PKEY* ca_pub, crypto::CertificatePublicKey(*out.ca.cert));
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> a, crypto::PublicKeyToDer(*ca_pub));
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> b, crypto::PublicKeyToDer(*out.ca.key));
  if (a != b)
    return absl::DataLossError("the KMS answer: app CA certificate is not its key's");
  PML_ASSIGN_OR_RETURN(std::string ca_pem, crypto::CertificateToPem(*out.ca.cert));
  PML_ASSIGN_OR_RETURN(std::string epoch_root_pem, crypto::CertificateToPem(*epoch_root));
  out.ca.chain_pem = {ca_pem, epoch_root_pem};
  out.key_provider_info = nlohmann::json{{"name", "kms"}, {"id", root_id}}.dump();
  return out;
}

}  // namespace pml::guest
