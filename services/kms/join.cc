#include "services/kms/join.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/seal.h"
#include "lib/ratls/report_data.h"
#include "lib/rpc/client.h"
#include "lib/rpc/status_convert.h"
#include "lib/rpc/wipe.h"
#include "pml/kms/v1/kms.grpc.pb.h"
#include "services/kms/key_release.h"

namespace pml::kms {

absl::StatusOr<v1::RootSecrets> FetchRootSecrets(const JoinOptions& o, tee::TeeProvider& tee) {
  PML_ASSIGN_OR_RETURN(crypto::X25519KeyPair eph, crypto::GenerateX25519());
  PML_ASSIGN_OR_RETURN(ratls::ReportData rd,
                       ratls::ComputeReportData(ratls::ReportDataPurpose::kKmsReplicaJoin,
                                                eph.public_key));
  v1::JoinClusterRequest req;
  PML_ASSIGN_OR_RETURN(*req.mutable_evidence(), NodeEvidence(tee, rd));
  req.set_ephemeral_public_key(std::string(eph.public_key.begin(), eph.public_key.end()));
  req.set_node_name(o.node_name);
  req.set_advertised_url(o.advertised_url);
  req.set_join_token(o.join_token);

  rpc::ClientConfig cc;
  cc.target = o.target;
  cc.tls.ca = o.ca_file;
  PML_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> ch, rpc::MakeChannel(cc));
  auto stub = v1::KeyRelease::NewStub(ch);
  grpc::ClientContext ctx;
  rpc::SetTimeout(ctx, absl::Seconds(60));
  v1::JoinClusterResponse resp;
  grpc::Status s = stub->JoinCluster(&ctx, req, &resp);
  if (!s.ok()) {
    absl::Status st = rpc::FromGrpcStatus(s);
    return absl::Status(st.code(), absl::StrCat("joining ", o.target, ": ", st.message()));
  }
  const v1::SealedPayload& sp = resp.sealed_root_secrets();
  crypto::SealedBox box;
  if (sp.kms_ephemeral_public_key().size() != box.ephemeral_public_key.size() ||
      sp.nonce().size() != box.nonce.size()) {
    return absl::DataLossError("JoinCluster answer: malformed sealed payload");
  }
  std::copy(sp.kms_ephemeral_public_key().begin(), sp.kms_ephemeral_public_key().end(),
            box.ephemeral_public_key.begin());
  std::copy(sp.nonce().begin(), sp.nonce().end(), box.nonce.begin());
  box.ciphertext.assign(sp.ciphertext().begin(), sp.ciphertext().end());
  auto plain = crypto::Open(eph.private_key.span(), box, core::AsBytes(o.node_name),
                            kRootSecretsSealLabel);
  if (!plain.ok())
    return absl::DataLossError(absl::StrCat("JoinCluster answer: ", plain.status().message()));
  v1::RootSecrets secrets;
  if (!secrets.ParseFromArray(plain->span().data(), static_cast<int>(plain->size()))) {
    rpc::WipeMessage(secrets);  // whatever parsed before the error
    return absl::DataLossError("JoinCluster answer: root secrets do not parse");
  }
  return secrets;
}

}  // namespace pml::kms
