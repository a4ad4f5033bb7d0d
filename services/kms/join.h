#pragma once
// The joining side of KMS replication (DESIGN.md §5): a new node proves what it is and receives
// the cluster's root secrets on one attested channel. It makes a one-time X25519 key, takes a
// quote whose report data commits to it (report_data.h kKmsReplicaJoin), calls JoinCluster on a
// member's key-release listener over TLS (the member's certificate must chain to `ca_file`), and
// opens the sealed answer with the one-time key (associated data = its node name). A replayed or
// intercepted answer is useless without that key.

#include <string>

#include "absl/status/statusor.h"
#include "lib/tee/tee_provider.h"
#include "pml/kms/v1/kms.pb.h"

namespace pml::kms {

struct JoinOptions {
  std::string target;          // member's key-release address host:port
  std::string ca_file;         // CA of the member's TLS certificate
  std::string node_name;       // this node
  std::string advertised_url;  // where this node will serve
  std::string join_token;      // the operator's token (secret)
};

// The cluster's root secrets (secret!). kFailedPrecondition when the member refuses this node's
// attestation (its reason passes through); kUnavailable when it cannot be reached; kDataLoss when
// the answer does not open.
absl::StatusOr<v1::RootSecrets> FetchRootSecrets(const JoinOptions& options,
                                                 tee::TeeProvider& tee);

}  // namespace pml::kms
