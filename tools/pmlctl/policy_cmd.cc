#include "tools/pmlctl/policy_cmd.h"

#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/jwt.h"
#include "pml/attestation/v1/attestation.grpc.pb.h"
#include "services/attestation/policy.h"
#include "tools/pmlctl/cli_util.h"
#include "tools/pmlctl/client_flags.h"

namespace pml::pmlctl {
namespace {

namespace v1 = ::pml::attestation::v1;
using Stub = v1::Attestation::Stub;

// Bound on the pages `policy list` follows: far above any real store (1000 per page at most).
constexpr int kMaxListPages = 100000;

std::string Time(const google::protobuf::Timestamp& ts) {
  if (ts.seconds() == 0 && ts.nanos() == 0) {
    return "-";
  }
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(ts.seconds()),
                          absl::UTCTimeZone());
}

// JSON text pretty-printed, or as it is when it does not parse.
std::string Pretty(const std::string& json) {
  const nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return json;
  }
  return j.dump(2, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
}

// ---- policy put

struct PutOptions {
  ClientFlags client;
  std::string id;
  std::string file;
  std::string description;
  uint32_t expected_version = 0;
  bool validate_only = false;
};

int RunPut(const PutOptions& o) {
  constexpr absl::string_view kCmd = "policy put";
  if (!attestation::IsValidPolicyId(o.id)) {
    return PrintError(
        kCmd, kExitUsage,
        absl::InvalidArgumentError(absl::StrCat(
            "ID \"", absl::string_view(o.id).substr(0, 64),
            "\": want 1-63 characters of [a-z0-9._-], starting with a letter or digit")));
  }
  auto json = ReadFileOrStdin(o.file, attestation::kMaxPolicyJsonBytes);
  if (!json.ok()) {
    return PrintError(kCmd, kExitUsage, json.status());
  }
  // The service's own checks, run here first: the error names the JSON path at once.
  const std::string source = o.file == "-" ? "<stdin>" : o.file;
  auto policy = attestation::ParsePolicyJson(*json);
  if (!policy.ok()) {
    return PrintError(kCmd, kExitRefused, core::Annotate(policy.status(), source));
  }
  if (!o.description.empty()) {
    policy->description = o.description;
    if (absl::Status s = attestation::ValidatePolicy(*policy); !s.ok()) {
      return PrintError(kCmd, kExitRefused, core::Annotate(s, "--description"));
    }
  }

  auto stub = MakeStub<v1::Attestation>(o.client);
  if (!stub.ok()) {
    return PrintError(kCmd, kExitUsage, stub.status());
  }
  v1::PutPolicyRequest req;
  req.set_id(o.id);
  req.set_policy_json(*json);
  req.set_description(o.description);
  req.set_expected_version(o.expected_version);
  req.set_validate_only(o.validate_only);
  v1::PutPolicyResponse resp;
  if (absl::Status s = Call(o.client, **stub, &Stub::PutPolicy, req, &resp); !s.ok()) {
    return PrintError(kCmd, kExitRefused, s);
  }
  const v1::Policy& p = resp.policy();
  if (o.validate_only) {
    std::cout << p.id() << " valid sha256 " << Hex(p.sha256()) << " (validate only: not stored)\n";
  } else {
    std::cout << p.id() << " v" << p.version() << " sha256 " << Hex(p.sha256()) << "\n";
  }
  return kExitOk;
}

// ---- policy get

struct GetOptions {
  ClientFlags client;
  std::string id;
  uint32_t version = 0;
  bool json = false;
};

int RunGet(const GetOptions& o) {
  constexpr absl::string_view kCmd = "policy get";
  auto stub = MakeStub<v1::Attestation>(o.client);
  if (!stub.ok()) {
    return PrintError(kCmd, kExitUsage, stub.status());
  }
  v1::GetPolicyRequest req;
  req.set_id(o.id);
  req.set_version(o.version);
  v1::GetPolicyResponse resp;
  if (absl::Status s = Call(o.client, **stub, &Stub::GetPolicy, req, &resp); !s.ok()) {
    return PrintError(kCmd, kExitRefused, s);
  }
  const v1::Policy& p = resp.policy();
  // sha256 is over policy_json's bytes (the proto's contract): a mismatch means the text was
  // damaged on the way, so nothing is printed as if it were the stored policy.
  if (Hex(p.sha256()) != core::HexEncode(crypto::Sha256(p.policy_json()))) {
    return PrintError(
        kCmd, kExitRefused,
        absl::DataLossError(absl::StrCat("policy ", p.id(), " v", p.version(), ": sha256 ",
                                         Hex(p.sha256()), " does not match its policy_json")));
  }
  if (!o.json) {
    std::cout << "# " << p.id() << " v" << p.version() << "  sha256 " << Hex(p.sha256())
              << "  created_by " << p.created_by() << "  at " << Time(p.create_time()) << "\n";
  }
  std::cout << Pretty(p.policy_json()) << "\n";
  return kExitOk;
}

// ---- policy list

struct ListOptions {
  ClientFlags client;
  int32_t page_size = 0;
};

int RunList(const ListOptions& o) {
  constexpr absl::string_view kCmd = "policy list";
  auto stub = MakeStub<v1::Attestation>(o.client);
  if (!stub.ok()) {
    return PrintError(kCmd, kExitUsage, stub.status());
  }
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"ID", "VERSION", "SHA256", "CREATED BY", "CREATED"});
  absl::Status listed =
      FollowPages(kMaxListPages, "", [&](const std::string& token) -> absl::StatusOr<std::string> {
        v1::ListPoliciesRequest req;
        req.set_page_size(o.page_size);
        req.set_page_token(token);
        v1::ListPoliciesResponse resp;
        PML_RETURN_IF_ERROR(Call(o.client, **stub, &Stub::ListPolicies, req, &resp));
        for (const v1::Policy& p : resp.policies()) {
          rows.push_back({p.id(), absl::StrCat(p.version()), Hex(p.sha256()).substr(0, 12),
                          p.created_by(), Time(p.create_time())});
        }
        return resp.next_page_token();
      });
  if (!listed.ok()) {
    return PrintError(kCmd, kExitRefused, listed);
  }
  std::cout << FormatTable(rows, "");
  return kExitOk;
}

// ---- policy rm

struct RmOptions {
  ClientFlags client;
  std::string id;
};

int RunRm(const RmOptions& o) {
  constexpr absl::string_view kCmd = "policy rm";
  auto stub = MakeStub<v1::Attestation>(o.client);
  if (!stub.ok()) {
    return PrintError(kCmd, kExitUsage, stub.status());
  }
  v1::DeletePolicyRequest req;
  req.set_id(o.id);
  v1::DeletePolicyResponse resp;
  if (absl::Status s = Call(o.client, **stub, &Stub::DeletePolicy, req, &resp); !s.ok()) {
    return PrintError(kCmd, kExitRefused, s);
  }
  std::cout << "deleted policy " << o.id << "\n";
  return kExitOk;
}

// ---- token jwks / rotate

struct JwksOptions {
  ClientFlags client;
  std::string out;
};

int RunJwks(const JwksOptions& o) {
  constexpr absl::string_view kCmd = "token jwks";
  auto stub = MakeStub<v1::Attestation>(o.client);
  if (!stub.ok()) {
    return PrintError(kCmd, kExitUsage, stub.status());
  }
  v1::GetJwksRequest req;
  v1::GetJwksResponse resp;
  if (absl::Status s = Call(o.client, **stub, &Stub::GetJwks, req, &resp); !s.ok()) {
    return PrintError(kCmd, kExitRefused, s);
  }
  // Refuse to save what `verify token --jwks` could not use.
  auto jwks = crypto::JwkSet::ParseText(resp.jwks_json());
  if (!jwks.ok()) {
    return PrintError(kCmd, kExitRefused,
                      core::Annotate(jwks.status(), "the service returned an unusable JWKS"));
  }
  const std::string text = Pretty(resp.jwks_json()) + "\n";
  if (o.out.empty()) {
    std::cout << text;
    return kExitOk;
  }
  if (absl::Status s = core::WriteFileAtomic(o.out, text, 0644); !s.ok()) {
    return PrintError(kCmd, kExitUsage, s);
  }
  std::cout << "wrote " << jwks->size() << " key" << (jwks->size() == 1 ? "" : "s") << " to "
            << o.out << " (current kid " << resp.current_key_id() << ")\n";
  return kExitOk;
}

int RunRotate(const ClientFlags& client) {
  constexpr absl::string_view kCmd = "token rotate";
  auto stub = MakeStub<v1::Attestation>(client);
  if (!stub.ok()) {
    return PrintError(kCmd, kExitUsage, stub.status());
  }
  v1::RotateSigningKeyRequest req;
  v1::RotateSigningKeyResponse resp;
  if (absl::Status s = Call(client, **stub, &Stub::RotateSigningKey, req, &resp); !s.ok()) {
    return PrintError(kCmd, kExitRefused, s);
  }
  std::cout << "current kid:  " << resp.key_id() << "\n"
            << "previous kid: "
            << (resp.previous_key_id().empty() ? std::string("(none)") : resp.previous_key_id())
            << " (stays in the JWKS until the tokens it signed expire)\n"
            << "rotated at:   " << Time(resp.rotate_time()) << "\n";
  return kExitOk;
}

constexpr char kExitCodesFooter[] =
    "Exit codes: 0 done; 1 refused by the local policy check or by the service (its gRPC code\n"
    "and message are printed); 2 usage or local I/O error (unreadable FILE or PEM files,\n"
    "unwritable --out, bad ID). Errors the argument parser finds (a missing --addr, a\n"
    "non-numeric --version) exit with CLI11's codes, 100 and up.";

}  // namespace

void AddPolicyCommands(CLI::App& app) {
  auto* policy = app.add_subcommand(
      "policy",
      "manage pml-verifier's appraisal policies (put, get, list, rm; versioned and audited)");
  policy->require_subcommand(1);

  auto put = std::make_shared<PutOptions>();
  auto* put_cmd = policy->add_subcommand(
      "put",
      "store a new version of policy ID from FILE (JSON, services/attestation/policy.h; '-' reads\n"
      "standard input). The policy is checked locally first (errors name the JSON path), then by\n"
      "the service (PutPolicy). Prints \"ID vN sha256 <hex>\". Needs the operator role");
  AddClientFlags(*put_cmd, put->client);
  put_cmd->add_option("ID", put->id, "policy id: 1-63 characters of [a-z0-9._-]")->required();
  put_cmd->add_option("FILE", put->file, "the policy JSON file, or - for standard input")
      ->required();
  put_cmd->add_option("--description", put->description,
                      "operator description stored with the policy (replaces the JSON's "
                      "\"description\")");
  put_cmd
      ->add_option("--expected-version", put->expected_version,
                   "store only if the latest version is N, else ABORTED (optimistic "
                   "concurrency; 0: create or overwrite unconditionally)")
      ->capture_default_str();
  put_cmd->add_flag("--validate-only", put->validate_only,
                    "have the service validate the policy without storing it");
  OnParsed(put_cmd, kExitCodesFooter, [put] { return RunPut(*put); });

  auto get = std::make_shared<GetOptions>();
  auto* get_cmd = policy->add_subcommand(
      "get",
      "print one version of policy ID (GetPolicy): a header line (version, sha256, created_by,\n"
      "time), then the canonical policy JSON, pretty-printed");
  AddClientFlags(*get_cmd, get->client);
  get_cmd->add_option("ID", get->id, "policy id")->required();
  get_cmd->add_option("--version", get->version, "the version to print (0: the latest)")
      ->capture_default_str();
  get_cmd->add_flag("--json", get->json, "print only the policy JSON (no header line)");
  OnParsed(get_cmd, kExitCodesFooter, [get] { return RunGet(*get); });

  auto list = std::make_shared<ListOptions>();
  auto* list_cmd = policy->add_subcommand(
      "list",
      "list the latest version of every policy (ListPolicies, following every page): id,\n"
      "version, sha256 prefix, created_by and time");
  AddClientFlags(*list_cmd, list->client);
  list_cmd
      ->add_option("--page-size", list->page_size,
                   "policies per call (0: the service's default of 100; at most 1000)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  OnParsed(list_cmd, kExitCodesFooter, [list] { return RunList(*list); });

  auto rm = std::make_shared<RmOptions>();
  auto* rm_cmd = policy->add_subcommand(
      "rm",
      "delete policy ID (DeletePolicy): no version of it can be used for appraisal any more; its\n"
      "history stays in the service's audit log. Needs the operator role");
  AddClientFlags(*rm_cmd, rm->client);
  rm_cmd->add_option("ID", rm->id, "policy id")->required();
  OnParsed(rm_cmd, kExitCodesFooter, [rm] { return RunRm(*rm); });
}

void AddTokenCommands(CLI::App& app) {
  auto* token = app.add_subcommand(
      "token",
      "pml-verifier's token-signing keys (jwks, rotate); `verify token` checks a token offline");
  token->require_subcommand(1);

  auto jwks = std::make_shared<JwksOptions>();
  auto* jwks_cmd = token->add_subcommand(
      "jwks",
      "fetch the token-signing public keys as a JWK Set (GetJwks), current key first; print it,\n"
      "or save it with --out for `pmlctl verify token --jwks FILE`");
  AddClientFlags(*jwks_cmd, jwks->client);
  jwks_cmd->add_option("--out", jwks->out,
                       "write the JWKS to FILE (atomically, mode 0644) instead of printing it");
  OnParsed(jwks_cmd, kExitCodesFooter, [jwks] { return RunJwks(*jwks); });

  auto rotate = std::make_shared<ClientFlags>();
  auto* rotate_cmd = token->add_subcommand(
      "rotate",
      "generate a new token-signing key and make it current (RotateSigningKey); prints the new\n"
      "and the previous kid (which stays in the JWKS until its tokens expire). Needs the\n"
      "operator role");
  AddClientFlags(*rotate_cmd, *rotate);
  OnParsed(rotate_cmd, kExitCodesFooter, [rotate] { return RunRotate(*rotate); });
}

}  // namespace pml::pmlctl
