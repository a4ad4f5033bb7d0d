#include "services/guest-agent/kms_provider.h"

#include <algorithm>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/cert_builder.h"
#include "lib/crypto/key.h"
#include "lib/crypto/seal.h"
#include "lib/crypto/x509.h"
#include "lib/ratls/report_data.h"
#include "lib/rpc/client.h"
#include "lib/rpc/status_convert.h"
#include "pml/kms/v1/kms.grpc.pb.h"

namespace pml::guest {

absl::StatusOr<KmsKeys> FetchKeysFromKms(const KmsProviderOptions& o, RuntimeEventLog& log,
                                         GpuSource* gpus, const AgentIdentity& id) {
  // 1. Authenticate the KMS root against the app's pin.
  if (o.pinned_key_provider_id.empty()) {
    return absl::FailedPreconditionError(
        "app-compose.json has no key_provider_id: the KMS cannot be authenticated, so no evidence "
        "is sent to it");
  }
  PML_ASSIGN_OR_RETURN(std::string root_pem, core::ReadFile(o.root_ca_pem_path, 1 << 20));
  PML_ASSIGN_OR_RETURN(std::vector<crypto::X509Ptr> roots, crypto::ParsePemCertificates(root_pem));
  if (roots.size() != 1)
    return absl::InvalidArgumentError(absl::StrCat(o.root_ca_pem_path, ": want one certificate"));
  PML_ASSIGN_OR_RETURN(const EVP_PKEY* root_key, crypto::CertificatePublicKey(*roots[0]));
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> spki, crypto::PublicKeyToDer(*root_key));
  const std::string root_id = core::HexEncode(spki);
  if (root_id != absl::AsciiStrToLower(o.pinned_key_provider_id)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the KMS root CA in ", o.root_ca_pem_path, " is not the one app-compose.json pins "
        "(key_provider_id)"));
  }

  // 2. Evidence committing to a one-time key.
  PML_ASSIGN_OR_RETURN(crypto::X25519KeyPair eph, crypto::GenerateX25519());
  PML_ASSIGN_OR_RETURN(ratls::ReportData rd,
                       ratls::ComputeReportData(ratls::ReportDataPurpose::kKmsKeyRelease,
                                                eph.public_key));
  kms::v1::GetAppKeysRequest req;
  PML_ASSIGN_OR_RETURN(*req.mutable_evidence(), BuildEvidenceBundle(log, gpus, id, rd));
  req.set_ephemeral_public_key(std::string(eph.public_key.begin(), eph.public_key.end()));

  // 3. Ask over TLS to the pinned root.
  rpc::ClientConfig cc;
  cc.target = o.address;
  cc.tls.ca = o.root_ca_pem_path;
  PML_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> ch, rpc::MakeChannel(cc));
  auto stub = kms::v1::KeyRelease::NewStub(ch);
  grpc::ClientContext ctx;
  rpc::SetTimeout(ctx, o.timeout);
  kms::v1::GetAppKeysResponse resp;
  grpc::Status s = stub->GetAppKeys(&ctx, req, &resp);
  if (!s.ok()) {
    absl::Status st = rpc::FromGrpcStatus(s);
    return absl::Status(st.code(), absl::StrCat("KMS ", o.address, ": ", st.message()));
  }
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
