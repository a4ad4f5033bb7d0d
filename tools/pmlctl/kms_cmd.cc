#include "tools/pmlctl/kms_cmd.h"

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/cert_builder.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/key.h"
#include "lib/crypto/secp256k1.h"
#include "lib/crypto/x509.h"
#include "lib/rpc/client.h"
#include "pml/kms/v1/kms.grpc.pb.h"
#include "services/attestation/policy.h"
#include "tools/pmlctl/cli_util.h"
#include "tools/pmlctl/client_flags.h"

namespace pml::pmlctl {
namespace {

namespace v1 = ::pml::kms::v1;
using AdminStub = v1::KmsAdmin::Stub;
using ReleaseStub = v1::KeyRelease::Stub;
using OrderedJson = nlohmann::ordered_json;

constexpr size_t kAppIdBytes = 20;
constexpr size_t kEnvPublicKeyBytes = 32;
constexpr size_t kRecoverableSignatureBytes = 65;
constexpr size_t kK256PublicKeyBytes = 33;  // SEC1 compressed
constexpr absl::string_view kEnvPubKeyPrefix = "dstack-env-encrypt-pubkey:";

// Bound on the pages `policy list` and `audit` follow: far above any real store.
constexpr int kMaxListPages = 100000;
// ListAuditEvents' cap on one page (kms.proto).
constexpr int kMaxAuditPageSize = 1000;

struct ActionName {
  v1::AuditAction value;
  absl::string_view name;
};
constexpr ActionName kActionNames[] = {
    {v1::AUDIT_ACTION_KEY_RELEASE, "key-release"},
    {v1::AUDIT_ACTION_CERT_SIGN, "cert-sign"},
    {v1::AUDIT_ACTION_REPLICA_JOIN, "replica-join"},
    {v1::AUDIT_ACTION_POLICY_PUT, "policy-put"},
    {v1::AUDIT_ACTION_POLICY_DELETE, "policy-delete"},
    {v1::AUDIT_ACTION_ROOT_KEY_ROTATE, "root-key-rotate"},
    {v1::AUDIT_ACTION_ROOT_KEY_GENERATE, "root-key-generate"},
};

struct OutcomeName {
  v1::AuditOutcome value;
  absl::string_view name;
};
constexpr OutcomeName kOutcomeNames[] = {
    {v1::AUDIT_OUTCOME_ALLOWED, "allowed"},
    {v1::AUDIT_OUTCOME_REFUSED, "refused"},
    {v1::AUDIT_OUTCOME_ERROR, "error"},
};

template <typename Table>
std::string NameList(const Table& table) {
  std::vector<std::string> names;
  for (const auto& e : table) {
    names.emplace_back(e.name);
  }
  return absl::StrJoin(names, ", ");
}

google::protobuf::Timestamp ToTimestamp(absl::Time t) {
  google::protobuf::Timestamp ts;
  const int64_t seconds = absl::ToUnixSeconds(t);
  ts.set_seconds(seconds);
  ts.set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(t - absl::FromUnixSeconds(seconds))));
  return ts;
}

bool IsUnset(const google::protobuf::Timestamp& ts) { return ts.seconds() == 0 && ts.nanos() == 0; }

OrderedJson JsonTime(const google::protobuf::Timestamp& ts) {
  return IsUnset(ts) ? OrderedJson(nullptr) : OrderedJson(FormatTimestamp(ts));
}

// ---- kms policy put

struct PutOptions {
  ClientFlags client;
  std::string app_id;
  std::string verifier_policy;
  uint32_t verifier_policy_version = 0;
  bool has_verifier_policy_version = false;
  std::string inline_policy;
  std::string description;
  uint32_t expected_version = 0;
};

int RunPut(const PutOptions& o) {
  constexpr absl::string_view kCmd = "kms policy put";
  auto app_id = ParseAppIdFlag("--app-id", o.app_id);
  if (!app_id.ok()) {
    return PrintError(kCmd, kExitUsage, app_id.status());
  }
  if (o.verifier_policy.empty() == o.inline_policy.empty()) {
    return PrintError(kCmd, kExitUsage,
                      absl::InvalidArgumentError(
                          "give exactly one of --verifier-policy ID and --inline-policy FILE"));
  }
  v1::PutAppPolicyRequest req;
  v1::AppPolicy& p = *req.mutable_app_policy();
  p.set_app_id(*app_id);
  p.set_description(o.description);
  req.set_expected_version(o.expected_version);
  if (!o.verifier_policy.empty()) {
    if (!attestation::IsValidPolicyId(o.verifier_policy)) {
      return PrintError(
          kCmd, kExitUsage,
          absl::InvalidArgumentError(absl::StrCat(
              "--verifier-policy \"", absl::string_view(o.verifier_policy).substr(0, 64),
              "\": want 1-63 characters of [a-z0-9._-], starting with a letter or "
              "digit")));
    }
    p.set_verifier_policy_id(o.verifier_policy);
    p.set_verifier_policy_version(o.verifier_policy_version);
  } else {
    if (o.has_verifier_policy_version) {
      return PrintError(kCmd, kExitUsage,
                        absl::InvalidArgumentError(
                            "--verifier-policy-version applies to --verifier-policy only"));
    }
    auto json = ReadFileOrStdin(o.inline_policy, attestation::kMaxPolicyJsonBytes);
    if (!json.ok()) {
      return PrintError(kCmd, kExitUsage, json.status());
    }
    // The verifier's own checks, run here first: the error names the JSON path at once.
    if (auto policy = attestation::ParsePolicyJson(*json); !policy.ok()) {
      const std::string source = o.inline_policy == "-" ? "<stdin>" : o.inline_policy;
      return PrintError(kCmd, kExitRefused, core::Annotate(policy.status(), source));
    }
    p.set_inline_policy_json(*json);
  }

  auto stub = MakeStub<v1::KmsAdmin>(o.client);
  if (!stub.ok()) {
    return PrintError(kCmd, kExitUsage, stub.status());
  }
  v1::PutAppPolicyResponse resp;
  if (absl::Status s = Call(o.client, **stub, &AdminStub::PutAppPolicy, req, &resp); !s.ok()) {
    return PrintError(kCmd, kExitRefused, s);
  }
  std::cout << FormatAppPolicy(resp.app_policy());
  return kExitOk;
}

// ---- kms policy get / rm

struct AppIdOptions {
  ClientFlags client;
  std::string app_id;
};

int RunGet(const AppIdOptions& o) {
  constexpr absl::string_view kCmd = "kms policy get";
  auto app_id = ParseAppIdFlag("--app-id", o.app_id);
  if (!app_id.ok()) {
    return PrintError(kCmd, kExitUsage, app_id.status());
  }
  auto stub = MakeStub<v1::KmsAdmin>(o.client);
  if (!stub.ok()) {
    return PrintError(kCmd, kExitUsage, stub.status());
  }
  v1::GetAppPolicyRequest req;
  req.set_app_id(*app_id);
  v1::GetAppPolicyResponse resp;
  if (absl::Status s = Call(o.client, **stub, &AdminStub::GetAppPolicy, req, &resp); !s.ok()) {
    return PrintError(kCmd, kExitRefused, s);
  }
  std::cout << FormatAppPolicy(resp.app_policy());
  return kExitOk;
}

int RunRm(const AppIdOptions& o) {
  constexpr absl::string_view kCmd = "kms policy rm";
  auto app_id = ParseAppIdFlag("--app-id", o.app_id);
  if (!app_id.ok()) {
    return PrintError(kCmd, kExitUsage, app_id.status());
  }
  auto stub = MakeStub<v1::KmsAdmin>(o.client);
  if (!stub.ok()) {
    return PrintError(kCmd, kExitUsage, stub.status());
  }
  v1::DeleteAppPolicyRequest req;
  req.set_app_id(*app_id);
  v1::DeleteAppPolicyResponse resp;
  if (absl::Status s = Call(o.client, **stub, &AdminStub::DeleteAppPolicy, req, &resp); !s.ok()) {
    return PrintError(kCmd, kExitRefused, s);
  }
  std::cout << "deleted the policy binding of app " << Hex(*app_id)
            << " (it gets no keys until a new one is put)\n";
  return kExitOk;
}

// ---- kms policy list

struct ListOptions {
  ClientFlags client;
  int32_t page_size = 0;
};

int RunList(const ListOptions& o) {
  constexpr absl::string_view kCmd = "kms policy list";
  auto stub = MakeStub<v1::KmsAdmin>(o.client);
  if (!stub.ok()) {
    return PrintError(kCmd, kExitUsage, stub.status());
  }
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"APP ID", "VERSION", "POLICY", "UPDATED BY", "UPDATED"});
  absl::Status listed =
      FollowPages(kMaxListPages, "", [&](const std::string& token) -> absl::StatusOr<std::string> {
        v1::ListAppPoliciesRequest req;
        req.set_page_size(o.page_size);
        req.set_page_token(token);
        v1::ListAppPoliciesResponse resp;
        PML_RETURN_IF_ERROR(Call(o.client, **stub, &AdminStub::ListAppPolicies, req, &resp));
        for (const v1::AppPolicy& p : resp.app_policies()) {
          if (p.unauthenticated()) {
            rows.push_back({Hex(p.app_id()), "-",
                            "UNAUTHENTICATED ROW (not used: put the policy again)", "-", "-"});
            continue;
          }
          rows.push_back({Hex(p.app_id()), absl::StrCat(p.version()), AppPolicyRef(p),
                          OrDash(p.updated_by()), FormatTimestamp(p.update_time())});
        }
        return resp.next_page_token();
      });
  if (!listed.ok()) {
    return PrintError(kCmd, kExitRefused, listed);
  }
  std::cout << FormatTable(rows, "");
  return kExitOk;
}

// ---- kms rotate

struct RotateOptions {
  ClientFlags client;
  std::string reason;
  uint32_t expected_epoch = 0;
};

int RunRotate(const RotateOptions& o) {
  constexpr absl::string_view kCmd = "kms rotate";
  auto stub = MakeStub<v1::KmsAdmin>(o.client);
  if (!stub.ok()) {
    return PrintError(kCmd, kExitUsage, stub.status());
  }
  v1::RotateRootKeysRequest req;
  req.set_reason(o.reason);
  req.set_expected_current_epoch(o.expected_epoch);
  v1::RotateRootKeysResponse resp;
  if (absl::Status s = Call(o.client, **stub, &AdminStub::RotateRootKeys, req, &resp); !s.ok()) {
    return PrintError(kCmd, kExitRefused, s);
  }
  const v1::EpochPublicInfo& e = resp.epoch_info();
  std::cout << "new epoch:       " << resp.new_epoch() << "\n"
            << "previous epoch:  " << resp.previous_epoch()
            << " (stays available to derive keys for old data)\n"
            << "created:         " << FormatTimestamp(e.create_time()) << "\n"
            << "k256 public key: " << HexOrDash(e.k256_public_key()) << "\n"
            << "root CA sha256:  "
            << (e.root_ca_cert().empty() ? std::string("-")
                                         : core::HexEncode(crypto::Sha256(e.root_ca_cert())))
            << "\n";
  return kExitOk;
}

// ---- kms audit

struct AuditOptions {
  ClientFlags client;
  std::string app_id;
  std::string since;
  std::string until;
  std::string action;
  std::string outcome;
  int64_t limit = 0;
  bool json = false;
  bool check = false;
};

int RunAudit(const AuditOptions& o) {
  constexpr absl::string_view kCmd = "kms audit";
  v1::ListAuditEventsRequest base;
  if (!o.app_id.empty()) {
    auto app_id = ParseAppIdFlag("--app-id", o.app_id);
    if (!app_id.ok()) {
      return PrintError(kCmd, kExitUsage, app_id.status());
    }
    base.set_app_id(*app_id);
  }
  std::optional<absl::Time> since, until;
  if (!o.since.empty()) {
    auto t = ParseTimeFlag("--since", o.since);
    if (!t.ok()) {
      return PrintError(kCmd, kExitUsage, t.status());
    }
    since = *t;
    *base.mutable_start_time() = ToTimestamp(*t);
  }
  if (!o.until.empty()) {
    auto t = ParseTimeFlag("--until", o.until);
    if (!t.ok()) {
      return PrintError(kCmd, kExitUsage, t.status());
    }
    until = *t;
    *base.mutable_end_time() = ToTimestamp(*t);
  }
  if (since.has_value() && until.has_value() && *until <= *since) {
    return PrintError(kCmd, kExitUsage,
                      absl::InvalidArgumentError("--until must be later than --since"));
  }
  if (!o.action.empty()) {
    auto a = ParseAuditAction(o.action);
    if (!a.ok()) {
      return PrintError(kCmd, kExitUsage, a.status());
    }
    base.set_action(*a);
  }
  if (!o.outcome.empty()) {
    auto a = ParseAuditOutcome(o.outcome);
    if (!a.ok()) {
      return PrintError(kCmd, kExitUsage, a.status());
    }
    base.set_outcome(*a);
  }

  auto stub = MakeStub<v1::KmsAdmin>(o.client);
  if (!stub.ok()) {
    return PrintError(kCmd, kExitUsage, stub.status());
  }
  // Pages are printed as they arrive, so a long log starts at once; an error after the first
  // page still exits 1.
  int64_t printed = 0, unauthenticated = 0;
  absl::Status listed =
      FollowPages(kMaxListPages, "", [&](const std::string& token) -> absl::StatusOr<std::string> {
        v1::ListAuditEventsRequest req = base;
        int64_t want = kMaxAuditPageSize;
        if (o.limit > 0) {
          want = std::min<int64_t>(want, o.limit - printed);
        }
        req.set_page_size(static_cast<int32_t>(want));
        req.set_page_token(token);
        v1::ListAuditEventsResponse resp;
        PML_RETURN_IF_ERROR(Call(o.client, **stub, &AdminStub::ListAuditEvents, req, &resp));
        for (const v1::AuditEvent& e : resp.events()) {
          if (o.limit > 0 && printed == o.limit) {
            break;
          }
          std::cout << (o.json ? AuditEventJsonLine(e) : FormatAuditEvent(e)) << "\n";
          ++printed;
          if (e.unauthenticated()) {
            ++unauthenticated;
          }
        }
        if (o.limit > 0 && printed >= o.limit) {
          return std::string();  // enough: stop without asking for the next page
        }
        return resp.next_page_token();
      });
  if (!listed.ok()) {
    return PrintError(kCmd, kExitRefused, listed);
  }
  if (o.check) {
    std::cout.flush();
    if (unauthenticated > 0) {
      std::cerr << "pmlctl " << kCmd << ": " << unauthenticated << " of " << printed
                << " listed events are UNAUTHENTICATED (each line says why)\n";
      return kExitRefused;
    }
    std::cerr << "pmlctl " << kCmd << ": all " << printed
              << " listed events verify in their KMS nodes' audit chains";
    if (base.ByteSizeLong() > 0) {
      std::cerr << " (filtered: a deleted row shows on its successor, which the filter may leave "
                   "out; check unfiltered for the whole log)";
    }
    std::cerr << "\n";
  }
  return kExitOk;
}

// ---- kms info

struct InfoOptions {
  ClientFlags client;
  bool json = false;
  std::string root_ca_out;
};

int RunInfo(const InfoOptions& o) {
  constexpr absl::string_view kCmd = "kms info";
  auto stub = MakeStub<v1::KmsAdmin>(o.client);
  if (!stub.ok()) {
    return PrintError(kCmd, kExitUsage, stub.status());
  }
  v1::GetKmsInfoRequest req;
  v1::GetKmsInfoResponse resp;
  if (absl::Status s = Call(o.client, **stub, &AdminStub::GetKmsInfo, req, &resp); !s.ok()) {
    return PrintError(kCmd, kExitRefused, s);
  }
  std::cout << (o.json ? KmsInfoJson(resp) : FormatKmsInfo(resp));
  if (o.root_ca_out.empty()) {
    return kExitOk;
  }
  auto pem = IdentityRootCaPem(resp);
  if (!pem.ok()) {
    return PrintError(kCmd, kExitRefused, core::Annotate(pem.status(), "--root-ca-out"));
  }
  if (absl::Status s = core::WriteFileAtomic(o.root_ca_out, *pem, 0644); !s.ok()) {
    return PrintError(kCmd, kExitUsage, s);
  }
  // Keep stdout pure JSON under --json.
  (o.json ? std::cerr : std::cout) << "wrote the identity CA (key_provider_id "
                                   << resp.key_provider_id() << ") to " << o.root_ca_out << "\n";
  return kExitOk;
}

// ---- kms env-key

struct EnvKeyOptions {
  std::string guest_addr;
  std::string kms_root_ca;
  std::string app_id;
  uint32_t epoch = 0;
  bool has_epoch = false;
  double timeout_seconds = 10;
};

int RunEnvKey(const EnvKeyOptions& o) {
  constexpr absl::string_view kCmd = "kms env-key";
  auto app_id = ParseAppIdFlag("--app-id", o.app_id);
  if (!app_id.ok()) {
    return PrintError(kCmd, kExitUsage, app_id.status());
  }
  // Guest-facing listener: TLS without a client certificate; the server must chain to the
  // cluster's identity root.
  rpc::ClientConfig config;
  config.target = o.guest_addr;
  config.tls.ca = o.kms_root_ca;
  auto channel = rpc::MakeChannel(config);
  if (!channel.ok()) {
    return PrintError(kCmd, kExitUsage, core::Annotate(channel.status(), "--kms-root-ca"));
  }
  std::unique_ptr<ReleaseStub> stub = v1::KeyRelease::NewStub(*channel);

  v1::GetPublicInfoRequest info_req;
  v1::GetPublicInfoResponse info;
  if (absl::Status s = Call(absl::Seconds(o.timeout_seconds), *stub, &ReleaseStub::GetPublicInfo,
                            info_req, &info);
      !s.ok()) {
    return PrintError(kCmd, kExitRefused, core::Annotate(s, "GetPublicInfo"));
  }
  v1::GetAppEnvEncryptPubKeyRequest req;
  req.set_app_id(*app_id);
  if (o.has_epoch) {
    req.set_epoch(o.epoch);
  }
  v1::GetAppEnvEncryptPubKeyResponse resp;
  if (absl::Status s = Call(absl::Seconds(o.timeout_seconds), *stub,
                            &ReleaseStub::GetAppEnvEncryptPubKey, req, &resp);
      !s.ok()) {
    return PrintError(kCmd, kExitRefused, core::Annotate(s, "GetAppEnvEncryptPubKey"));
  }
  if (o.has_epoch && resp.epoch() != o.epoch) {
    return PrintError(
        kCmd, kExitRefused,
        absl::FailedPreconditionError(absl::StrCat("asked for epoch ", o.epoch,
                                                   ", the KMS answered for epoch ", resp.epoch())));
  }
  if (absl::Status s = VerifyEnvEncryptPubKey(*app_id, resp, info); !s.ok()) {
    return PrintError(kCmd, kExitRefused, s);
  }
  std::cout << "public key: " << Hex(resp.public_key()) << "\n"
            << "app id:     " << Hex(*app_id) << "\n"
            << "epoch:      " << resp.epoch() << "\n"
            << "timestamp:  " << resp.timestamp() << " ("
            << absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                                absl::FromUnixSeconds(static_cast<int64_t>(resp.timestamp())),
                                absl::UTCTimeZone())
            << ")\n"
            << "signature: valid (KMS root k256 key of epoch " << resp.epoch() << ")\n";
  return kExitOk;
}

constexpr char kExitCodesFooter[] =
    "Exit codes: 0 done; 1 refused by the service (its gRPC code and message are printed) or a\n"
    "check of the answer failed; 2 usage or local I/O error (bad --app-id/--since/--action,\n"
    "unreadable files or PEM, unwritable output). Errors the argument parser finds (a missing\n"
    "--addr, a non-numeric number) exit with CLI11's codes, 100 and up.";

void AddAppIdFlag(CLI::App& cmd, std::string& app_id, bool required) {
  auto* opt = cmd.add_option("--app-id", app_id, "app id: 40 hex digits (20 bytes)");
  if (required) {
    opt->required();
  }
}

}  // namespace

// ---- flag parsing

absl::StatusOr<absl::Time> ParseTimeFlag(absl::string_view flag, absl::string_view text) {
  int64_t seconds = 0;
  if (absl::SimpleAtoi(text, &seconds)) {
    return absl::FromUnixSeconds(seconds);
  }
  absl::Time t;
  std::string err;
  if (absl::ParseTime(absl::RFC3339_full, text, &t, &err)) {
    return t;
  }
  return absl::InvalidArgumentError(absl::StrCat(flag, " \"", text.substr(0, 64),
                                                 "\": want RFC 3339 (2025-07-01T00:00:00Z) or "
                                                 "unix seconds (",
                                                 err, ")"));
}

absl::StatusOr<v1::AuditAction> ParseAuditAction(absl::string_view name) {
  for (const ActionName& a : kActionNames) {
    if (a.name == name) {
      return a.value;
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--action \"", name.substr(0, 64), "\": want one of ", NameList(kActionNames)));
}

absl::StatusOr<v1::AuditOutcome> ParseAuditOutcome(absl::string_view name) {
  for (const OutcomeName& a : kOutcomeNames) {
    if (a.name == name) {
      return a.value;
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("--outcome \"", name.substr(0, 64),
                                                 "\": want one of ", NameList(kOutcomeNames)));
}

std::string AuditActionName(v1::AuditAction action) {
  if (action == v1::AUDIT_ACTION_UNSPECIFIED) {
    return "unspecified";
  }
  for (const ActionName& a : kActionNames) {
    if (a.value == action) {
      return {a.name.begin(), a.name.end()};
    }
  }
  return absl::StrCat("unknown(", static_cast<int>(action), ")");
}

std::string AuditOutcomeName(v1::AuditOutcome outcome) {
  if (outcome == v1::AUDIT_OUTCOME_UNSPECIFIED) {
    return "unspecified";
  }
  for (const OutcomeName& a : kOutcomeNames) {
    if (a.value == outcome) {
      return {a.name.begin(), a.name.end()};
    }
  }
  return absl::StrCat("unknown(", static_cast<int>(outcome), ")");
}

// ---- output

std::string AppPolicyRef(const v1::AppPolicy& p) {
  switch (p.policy_case()) {
    case v1::AppPolicy::kVerifierPolicyId:
      return absl::StrCat("verifier:", p.verifier_policy_id(), "@",
                          p.verifier_policy_version() == 0
                              ? std::string("latest")
                              : absl::StrCat("v", p.verifier_policy_version()));
    case v1::AppPolicy::kInlinePolicyJson:
      return absl::StrCat("inline:",
                          core::HexEncode(crypto::Sha256(p.inline_policy_json())).substr(0, 12));
    case v1::AppPolicy::POLICY_NOT_SET:
      break;
  }
  return "-";
}

std::string FormatAppPolicy(const v1::AppPolicy& p) {
  std::string policy;
  switch (p.policy_case()) {
    case v1::AppPolicy::kVerifierPolicyId:
      policy = absl::StrCat("verifier policy \"", p.verifier_policy_id(), "\", ",
                            p.verifier_policy_version() == 0
                                ? std::string("its latest version")
                                : absl::StrCat("version ", p.verifier_policy_version()));
      break;
    case v1::AppPolicy::kInlinePolicyJson:
      policy =
          absl::StrCat("inline, sha256 ", core::HexEncode(crypto::Sha256(p.inline_policy_json())),
                       " (", p.inline_policy_json().size(), " bytes)");
      break;
    case v1::AppPolicy::POLICY_NOT_SET:
      policy = "-";
      break;
  }
  return absl::StrCat("app id:      ", HexOrDash(p.app_id()), "\n",    //
                      "version:     ", p.version(), "\n",              //
                      "policy:      ", policy, "\n",                   //
                      "description: ", OrDash(p.description()), "\n",  //
                      "updated by:  ", OrDash(p.updated_by()), "\n",   //
                      "updated:     ", FormatTimestamp(p.update_time()), "\n");
}

std::string FormatAuditEvent(const v1::AuditEvent& e) {
  // Every string is escaped (a stored event is not trusted until its MAC is: a newline in a forged
  // field must not start a clean-looking line), and an unauthenticated event says so first.
  auto esc = [](const std::string& s) { return s.empty() ? std::string("-") : absl::CHexEscape(s); };
  std::string policy = "-";
  if (!e.policy_id().empty()) {
    policy = e.policy_version() == 0 ? esc(e.policy_id())
                                     : absl::StrCat(esc(e.policy_id()), "@v", e.policy_version());
  }
  std::vector<std::string> failed;
  for (const std::string& f : e.failed_checks())
    failed.push_back(absl::CHexEscape(f));
  return absl::StrCat(e.sequence(), " ",
                      e.unauthenticated()
                          ? absl::StrCat("UNAUTHENTICATED=\"",
                                         absl::CHexEscape(e.unauthenticated_reason()), "\" ")
                          : "",
                      FormatTimestamp(e.time()), " ", AuditActionName(e.action()), " ",
                      AuditOutcomeName(e.outcome()), " caller=", esc(e.caller()),
                      " app=", HexOrDash(e.app_id()),
                      " epoch=", e.epoch() == 0 ? "-" : absl::StrCat(e.epoch()),
                      " verifier=", esc(e.verifier_status()), " policy=", policy, " failed=[",
                      absl::StrJoin(failed, ","), "] reason=\"", absl::CHexEscape(e.reason()),
                      "\"",
                      e.node().empty()
                          ? ""
                          : absl::StrCat(" node=", absl::CHexEscape(e.node()), "#",
                                         e.node_sequence()),
                      e.simulated() ? " SIMULATED" : "");
}

std::string AuditEventJsonLine(const v1::AuditEvent& e) {
  OrderedJson j;
  j["sequence"] = e.sequence();
  j["time"] = JsonTime(e.time());
  j["action"] = AuditActionName(e.action());
  j["outcome"] = AuditOutcomeName(e.outcome());
  j["caller"] = e.caller();
  j["app_id"] = Hex(e.app_id());
  j["instance_id"] = Hex(e.instance_id());
  j["compose_hash"] = Hex(e.compose_hash());
  j["device_id"] = Hex(e.device_id());
  j["os_image_hash"] = Hex(e.os_image_hash());
  if (e.has_measurements()) {
    const auto& m = e.measurements();
    j["measurements"] = OrderedJson{{"mrtd", Hex(m.mrtd())},   {"rtmr0", Hex(m.rtmr0())},
                                    {"rtmr1", Hex(m.rtmr1())}, {"rtmr2", Hex(m.rtmr2())},
                                    {"rtmr3", Hex(m.rtmr3())}, {"mrconfigid", Hex(m.mrconfigid())}};
  } else {
    j["measurements"] = nullptr;
  }
  j["tcb_status"] = e.tcb_status();
  j["verifier_status"] = e.verifier_status();
  j["failed_checks"] = std::vector<std::string>(e.failed_checks().begin(), e.failed_checks().end());
  j["reason"] = e.reason();
  j["policy_id"] = e.policy_id();
  j["policy_version"] = e.policy_version();
  j["epoch"] = e.epoch();
  j["simulated"] = e.simulated();
  j["node"] = e.node();
  j["node_sequence"] = e.node_sequence();
  j["unauthenticated"] = e.unauthenticated();
  j["unauthenticated_reason"] = e.unauthenticated_reason();
  return j.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
}

namespace {
std::vector<std::string> EpochTags(const v1::EpochPublicInfo& e) {
  std::vector<std::string> tags;
  if (e.current()) {
    tags.emplace_back("current");
  }
  if (e.epoch() == 1) {
    tags.emplace_back("identity-root");
  }
  return tags;
}
}  // namespace

std::string FormatKmsInfo(const v1::GetKmsInfoResponse& info) {
  std::string out = absl::StrCat(
      "version:         ", OrDash(info.version()), "\n",  //
      "attested:        ",
      info.attested() ? "yes (runs in a CVM)" : "NO (development: not in a CVM)", "\n",  //
      "current epoch:   ", info.current_epoch(), "\n",                                   //
      "key_provider_id: ", OrDash(info.key_provider_id()), "\n",                         //
      "store:           ", OrDash(info.store_kind()), "\n",                              //
      "verifier:        ", OrDash(info.verifier_address()), "\n",                        //
      "replica policy:  ",
      info.replica_policy_id().empty() ? std::string("(none: replicas cannot join)")
                                       : info.replica_policy_id(),
      "\n");
  std::vector<std::vector<std::string>> epochs;
  epochs.push_back({"EPOCH", "CREATED", "K256 PUBLIC KEY", "ROOT CA SHA256", ""});
  for (const v1::EpochPublicInfo& e : info.epochs()) {
    epochs.push_back(
        {absl::StrCat(e.epoch()), FormatTimestamp(e.create_time()), HexOrDash(e.k256_public_key()),
         e.root_ca_cert().empty() ? "-" : core::HexEncode(crypto::Sha256(e.root_ca_cert())),
         absl::StrJoin(EpochTags(e), " ")});
  }
  absl::StrAppend(&out, "epochs:\n", FormatTable(epochs, "  "));
  if (info.replicas().empty()) {
    absl::StrAppend(&out, "replicas: (none)\n");
    return out;
  }
  std::vector<std::vector<std::string>> replicas;
  replicas.push_back({"NODE", "URL", "JOINED", "LAST SEEN", ""});
  for (const v1::ReplicaInfo& r : info.replicas()) {
    replicas.push_back({OrDash(r.node_name()), OrDash(r.url()), FormatTimestamp(r.join_time()),
                        FormatTimestamp(r.last_seen_time()), r.self() ? "(this node)" : ""});
  }
  absl::StrAppend(&out, "replicas:\n", FormatTable(replicas, "  "));
  return out;
}

std::string KmsInfoJson(const v1::GetKmsInfoResponse& info) {
  OrderedJson j;
  j["version"] = info.version();
  j["attested"] = info.attested();
  j["current_epoch"] = info.current_epoch();
  j["key_provider_id"] = info.key_provider_id();
  j["store_kind"] = info.store_kind();
  j["verifier_address"] = info.verifier_address();
  j["replica_policy_id"] = info.replica_policy_id();
  j["epochs"] = OrderedJson::array();
  for (const v1::EpochPublicInfo& e : info.epochs()) {
    OrderedJson je;
    je["epoch"] = e.epoch();
    je["current"] = e.current();
    je["create_time"] = JsonTime(e.create_time());
    je["k256_public_key"] = Hex(e.k256_public_key());
    je["root_ca_cert"] = Hex(e.root_ca_cert());
    je["root_ca_cert_sha256"] = core::HexEncode(crypto::Sha256(e.root_ca_cert()));
    j["epochs"].push_back(std::move(je));
  }
  j["replicas"] = OrderedJson::array();
  for (const v1::ReplicaInfo& r : info.replicas()) {
    OrderedJson jr;
    jr["node_name"] = r.node_name();
    jr["url"] = r.url();
    jr["join_time"] = JsonTime(r.join_time());
    jr["last_seen_time"] = JsonTime(r.last_seen_time());
    jr["self"] = r.self();
    j["replicas"].push_back(std::move(jr));
  }
  return j.dump(2, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace) + "\n";
}

absl::StatusOr<std::string> IdentityRootCaPem(const v1::GetKmsInfoResponse& info) {
  if (info.identity_ca_cert().empty())
    return absl::NotFoundError("the KMS reported no identity CA certificate");
  auto cert = crypto::ParseDerCertificate(core::AsBytes(info.identity_ca_cert()));
  if (!cert.ok()) {
    return core::Annotate(cert.status(), "identity_ca_cert");
  }
  PML_ASSIGN_OR_RETURN(const EVP_PKEY* key, crypto::CertificatePublicKey(**cert));
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> spki, crypto::PublicKeyToDer(*key));
  const std::string spki_hex = core::HexEncode(spki);
  if (spki_hex != absl::AsciiStrToLower(info.key_provider_id())) {
    return absl::FailedPreconditionError(
        absl::StrCat("key_provider_id ", absl::string_view(info.key_provider_id()).substr(0, 64),
                     " is not the SPKI of the identity CA certificate (",
                     absl::string_view(spki_hex).substr(0, 64), "...)"));
  }
  return crypto::CertificateToPem(**cert);
}

// ---- env-encryption public key

std::vector<uint8_t> EnvEncryptPubKeyMessage(absl::Span<const uint8_t> app_id,
                                             std::optional<uint64_t> timestamp,
                                             absl::Span<const uint8_t> public_key) {
  std::vector<uint8_t> m(kEnvPubKeyPrefix.begin(), kEnvPubKeyPrefix.end());
  m.insert(m.end(), app_id.begin(), app_id.end());
  if (timestamp.has_value()) {
    for (int shift = 56; shift >= 0; shift -= 8) {
      m.push_back(static_cast<uint8_t>((*timestamp >> shift) & 0xff));
    }
  }
  m.insert(m.end(), public_key.begin(), public_key.end());
  return m;
}

absl::Status VerifyEnvEncryptPubKey(absl::string_view app_id,
                                    const v1::GetAppEnvEncryptPubKeyResponse& resp,
                                    const v1::GetPublicInfoResponse& info) {
  if (app_id.size() != kAppIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("app id: want ", kAppIdBytes, " bytes, got ", app_id.size()));
  }
  if (resp.public_key().size() != kEnvPublicKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("public_key: want ", kEnvPublicKeyBytes,
                                                   " bytes, got ", resp.public_key().size()));
  }
  const v1::EpochPublicInfo* epoch = nullptr;
  for (const v1::EpochPublicInfo& e : info.epochs()) {
    if (e.epoch() == resp.epoch()) {
      epoch = &e;
      break;
    }
  }
  if (epoch == nullptr) {
    return absl::NotFoundError(absl::StrCat("epoch ", resp.epoch(),
                                            " of the answer is not among the KMS's epochs "
                                            "(GetPublicInfo)"));
  }
  const std::string& root = epoch->k256_public_key();
  if (root.size() != kK256PublicKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("k256_public_key of epoch ", resp.epoch(),
                                                   ": want ", kK256PublicKeyBytes, " bytes, got ",
                                                   root.size()));
  }
  auto check = [&](absl::string_view field, const std::string& signature,
                   std::optional<uint64_t> timestamp) -> absl::Status {
    if (signature.size() != kRecoverableSignatureBytes) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": want ", kRecoverableSignatureBytes,
                                                     " bytes, got ", signature.size()));
    }
    const auto digest = crypto::Keccak256(EnvEncryptPubKeyMessage(
        core::AsBytes(app_id), timestamp, core::AsBytes(resp.public_key())));
    auto recovered = crypto::RecoverSecp256k1PublicKey(digest, core::AsBytes(signature));
    if (!recovered.ok()) {
      return core::Annotate(recovered.status(), field);
    }
    if (core::ToString(*recovered) != root) {
      return absl::UnauthenticatedError(absl::StrCat(
          field, ": signed by secp256k1 key ", core::HexEncode(*recovered),
          ", not the KMS root k256 key of epoch ", resp.epoch(), " (", Hex(root), ")"));
    }
    return absl::OkStatus();
  };
  PML_RETURN_IF_ERROR(check("signature", resp.signature(), resp.timestamp()));
  if (!resp.signature_v0().empty()) {
    PML_RETURN_IF_ERROR(check("signature_v0", resp.signature_v0(), std::nullopt));
  }
  return absl::OkStatus();
}

// ---- registration

void AddKmsCommands(CLI::App& app) {
  auto* kms = app.add_subcommand(
      "kms",
      "administer pml-kms (app policy bindings, root-key rotation, audit, info) over its operator\n"
      "listener (KmsAdmin, mTLS), and check an app's env-encryption key on its key-release\n"
      "listener (env-key)");
  kms->require_subcommand(1);

  auto* policy = kms->add_subcommand(
      "policy",
      "which verifier policy each app's key release is appraised under (put, get, list, rm)");
  policy->require_subcommand(1);

  auto put = std::make_shared<PutOptions>();
  auto* put_cmd = policy->add_subcommand(
      "put",
      "bind app --app-id to a pml-verifier policy (--verifier-policy ID) or to an inline policy\n"
      "(--inline-policy FILE, JSON in the verifier's schema, checked locally first; '-' reads\n"
      "standard input) (PutAppPolicy; a new version of the binding). Prints the stored binding.\n"
      "Needs the operator role");
  AddClientFlags(*put_cmd, put->client);
  AddAppIdFlag(*put_cmd, put->app_id, /*required=*/true);
  put_cmd->add_option("--verifier-policy", put->verifier_policy,
                      "id of a policy stored in pml-verifier (`pmlctl policy put`)");
  put_cmd->add_option("--inline-policy", put->inline_policy,
                      "a policy JSON file sent with every appraisal, or - for "
                      "standard input");
  auto* vpv = put_cmd
                  ->add_option("--verifier-policy-version", put->verifier_policy_version,
                               "version of --verifier-policy to use (0: always its latest)")
                  ->capture_default_str();
  put_cmd->add_option("--description", put->description, "free text stored with the binding");
  put_cmd
      ->add_option("--expected-version", put->expected_version,
                   "store only if the binding's current version is N, else ABORTED (optimistic "
                   "concurrency; 0: unconditionally)")
      ->capture_default_str();
  OnParsed(put_cmd, kExitCodesFooter, [put, vpv] {
    put->has_verifier_policy_version = vpv->count() > 0;
    return RunPut(*put);
  });

  auto get = std::make_shared<AppIdOptions>();
  auto* get_cmd = policy->add_subcommand(
      "get",
      "print app --app-id's policy binding (GetAppPolicy): version, policy, description,\n"
      "who stored it and when");
  AddClientFlags(*get_cmd, get->client);
  AddAppIdFlag(*get_cmd, get->app_id, /*required=*/true);
  OnParsed(get_cmd, kExitCodesFooter, [get] { return RunGet(*get); });

  auto list = std::make_shared<ListOptions>();
  auto* list_cmd = policy->add_subcommand(
      "list",
      "list every app's policy binding (ListAppPolicies, following every page): app id,\n"
      "version, policy (verifier:ID@vN, verifier:ID@latest or inline:<sha256 prefix>), who and\n"
      "when");
  AddClientFlags(*list_cmd, list->client);
  list_cmd
      ->add_option("--page-size", list->page_size,
                   "bindings per call (0: the service's default of 100; at most 1000)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  OnParsed(list_cmd, kExitCodesFooter, [list] { return RunList(*list); });

  auto rm = std::make_shared<AppIdOptions>();
  auto* rm_cmd = policy->add_subcommand(
      "rm",
      "remove app --app-id's policy binding (DeleteAppPolicy): the app gets no keys until a new\n"
      "one is put. Audited. Needs the operator role");
  AddClientFlags(*rm_cmd, rm->client);
  AddAppIdFlag(*rm_cmd, rm->app_id, /*required=*/true);
  OnParsed(rm_cmd, kExitCodesFooter, [rm] { return RunRm(*rm); });

  auto rotate = std::make_shared<RotateOptions>();
  auto* rotate_cmd = kms->add_subcommand(
      "rotate",
      "start a new root-key epoch (RotateRootKeys): new keys are derived in it; old epochs stay\n"
      "available for old data. Prints the new and previous epoch and the new epoch's public\n"
      "material. Audited. Needs the operator role");
  AddClientFlags(*rotate_cmd, rotate->client);
  rotate_cmd->add_option("--reason", rotate->reason, "why (recorded in the audit log)");
  rotate_cmd
      ->add_option("--expected-epoch", rotate->expected_epoch,
                   "rotate only if the current epoch is N, else ABORTED (so two operators cannot "
                   "rotate twice by accident; 0: unconditionally)")
      ->capture_default_str();
  OnParsed(rotate_cmd, kExitCodesFooter, [rotate] { return RunRotate(*rotate); });

  auto audit = std::make_shared<AuditOptions>();
  auto* audit_cmd = kms->add_subcommand(
      "audit",
      "print the KMS audit log (ListAuditEvents, oldest first, every page): one line per event\n"
      "(sequence, time, action, outcome, caller, app id, epoch, verifier status, policy, failed\n"
      "checks, reason, the writing node and its chain number), or one JSON object per line with\n"
      "--json (bytes as hex). Every row carries a MAC chained per KMS node; a row that fails the\n"
      "check (changed, forged, renumbered or written outside the cluster, its predecessor\n"
      "deleted, or from before rows were chained) shows UNAUTHENTICATED=\"<why>\" after its\n"
      "sequence number: nothing in it is vouched for. A deleted row is flagged on its successor,\n"
      "which a filter (--app-id, --since, ...) may leave out: check the whole log unfiltered.");
  AddClientFlags(*audit_cmd, audit->client);
  AddAppIdFlag(*audit_cmd, audit->app_id, /*required=*/false);
  audit_cmd->add_option("--since", audit->since,
                        "only events at or after this time: RFC 3339 (2025-07-01T00:00:00Z) or "
                        "unix seconds");
  audit_cmd->add_option("--until", audit->until, "only events before this time (same forms)");
  audit_cmd->add_option("--action", audit->action,
                        absl::StrCat("only this action: ", NameList(kActionNames)));
  audit_cmd->add_option("--outcome", audit->outcome,
                        absl::StrCat("only this outcome: ", NameList(kOutcomeNames)));
  audit_cmd
      ->add_option("--limit", audit->limit,
                   "print at most N events, the oldest matching first (0: all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  audit_cmd->add_flag("--json", audit->json, "print JSON lines (bytes as lower-case hex)");
  audit_cmd->add_flag("--check", audit->check,
                      "after listing, say on stderr how many listed events are UNAUTHENTICATED and "
                      "exit 1 if any is (for monitoring)");
  OnParsed(audit_cmd, kExitCodesFooter, [audit] { return RunAudit(*audit); });

  auto info = std::make_shared<InfoOptions>();
  auto* info_cmd = kms->add_subcommand(
      "info",
      "print the KMS's state (GetKmsInfo): current epoch, key_provider_id, store kind, verifier,\n"
      "replica policy, replicas and every epoch's public material");
  AddClientFlags(*info_cmd, info->client);
  info_cmd->add_flag("--json", info->json, "print one JSON object (bytes as lower-case hex)");
  info_cmd->add_option(
      "--root-ca-out", info->root_ca_out,
      "also write epoch 1's root CA certificate (the cluster's identity root, whose SPKI is "
      "key_provider_id: what guests pin and `kms env-key --kms-root-ca` takes) to FILE as PEM "
      "(atomically, mode 0644), after checking it matches key_provider_id");
  OnParsed(info_cmd, kExitCodesFooter, [info] { return RunInfo(*info); });

  auto env = std::make_shared<EnvKeyOptions>();
  auto* env_cmd = kms->add_subcommand(
      "env-key",
      "fetch an app's env-encryption X25519 public key from the KMS's guest-facing key-release\n"
      "listener (KeyRelease.GetAppEnvEncryptPubKey, TLS without a client certificate; the\n"
      "server must chain to --kms-root-ca) and check its signature against that epoch's KMS\n"
      "root k256 key (GetPublicInfo). Exit 1 when the signature is not valid");
  env_cmd->add_option("--guest-addr", env->guest_addr, "key-release address host:port")->required();
  env_cmd
      ->add_option("--kms-root-ca", env->kms_root_ca,
                   "the cluster's identity root CA (PEM), e.g. from `pmlctl kms info "
                   "--root-ca-out` or <state-dir>/kms-root-ca.pem")
      ->required();
  AddAppIdFlag(*env_cmd, env->app_id, /*required=*/true);
  auto* epoch_opt =
      env_cmd->add_option("--epoch", env->epoch, "root-key epoch (default: the current one)");
  env_cmd
      ->add_option("--timeout-seconds", env->timeout_seconds, "deadline for each call, in seconds")
      ->capture_default_str();
  OnParsed(env_cmd, kExitCodesFooter, [env, epoch_opt] {
    env->has_epoch = epoch_opt->count() > 0;
    return RunEnvKey(*env);
  });
}

}  // namespace pml::pmlctl
