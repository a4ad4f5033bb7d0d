#include "tools/pmlctl/vm_cmd.h"

#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/hash.h"

namespace pml::pmlctl {
namespace {

namespace v1 = ::pml::vmm::v1;
using ::pml::testing::IsOk;
using ::pml::testing::IsOkAndHolds;
using ::pml::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;
using ::testing::StartsWith;

// A docker-compose file and its app-compose.json as Python's
// json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False) writes it (what dstack's
// vmm-cli.py does), with that file's SHA-256 from hashlib: vectors computed outside this code.
constexpr absl::string_view kComposeYaml = "services:\n  web:\n    image: nginx\n";
constexpr absl::string_view kWrappedCompose =
    R"({"allowed_envs":[],"docker_compose_file":"services:\n  web:\n    image: nginx\n",)"
    R"("gateway_enabled":false,"kms_enabled":false,"local_key_provider_enabled":false,)"
    R"("manifest_version":2,"name":"demo","no_instance_id":false,"public_logs":true,)"
    R"("public_sysinfo":true,"public_tcbinfo":true,"runner":"docker-compose",)"
    R"("secure_time":false})";
constexpr absl::string_view kWrappedComposeSha256 =
    "83f9bf783b85cb055fd1d0e0786b85afec5baa3677bc6ab1666aee77cee45141";

// A bash runner with KMS, a non-ASCII name and characters JSON must escape.
constexpr absl::string_view kBashScript = "echo \"hi\"\tthere\x01\n";
constexpr absl::string_view kWrappedBash =
    R"({"allowed_envs":[],"bash_script":"echo \"hi\"\tthere\u0001\n","gateway_enabled":false,)"
    R"("kms_enabled":true,"local_key_provider_enabled":false,"manifest_version":2,)"
    "\"name\":\"d\xc3\xa9mo\","
    R"("no_instance_id":false,"public_logs":true,"public_sysinfo":true,"public_tcbinfo":true,)"
    R"("runner":"bash","secure_time":false})";
constexpr absl::string_view kWrappedBashSha256 =
    "81d72fb210d2f4134da551022e9aeae64469cbf0656578bb829a1a30b90c3305";

std::string Sha256Hex(absl::string_view data) { return core::HexEncode(crypto::Sha256(data)); }

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "pml-vm-XXXXXX").string();
    if (mkdtemp(tmpl.data()) != nullptr) {
      path_ = tmpl;
    }
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Writes `data` to <dir>/<name> and returns the path.
  std::string Write(absl::string_view name, absl::string_view data) const {
    std::string path = absl::StrCat(path_, "/", name);
    EXPECT_THAT(core::WriteFileAtomic(path, data), IsOk());
    return path;
  }
  const std::string& Path() const { return path_; }

 private:
  std::string path_;
};

// ---- port specs

TEST(VmPortSpecTest, ParsesBothFormsAndBothProtocols) {
  struct Case {
    absl::string_view spec;
    v1::PortProtocol protocol;
    absl::string_view address;
    uint32_t host_port;
    uint32_t guest_port;
  };
  const Case cases[] = {
      {"tcp:127.0.0.1:10022:22", v1::PORT_PROTOCOL_TCP, "127.0.0.1", 10022, 22},
      {"tcp:10022:22", v1::PORT_PROTOCOL_TCP, "127.0.0.1", 10022, 22},
      {"udp:0.0.0.0:5353:53", v1::PORT_PROTOCOL_UDP, "0.0.0.0", 5353, 53},
      {"UDP:8053:53", v1::PORT_PROTOCOL_UDP, "127.0.0.1", 8053, 53},
      {"tcp:[::1]:8080:80", v1::PORT_PROTOCOL_TCP, "::1", 8080, 80},
      {"tcp:1:65535", v1::PORT_PROTOCOL_TCP, "127.0.0.1", 1, 65535},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.spec);
    PML_ASSERT_OK_AND_ASSIGN(v1::PortForward p, ParsePortSpec(c.spec));
    EXPECT_EQ(p.protocol(), c.protocol);
    EXPECT_EQ(p.host_address(), c.address);
    EXPECT_EQ(p.host_port(), c.host_port);
    EXPECT_EQ(p.guest_port(), c.guest_port);
  }
}

TEST(VmPortSpecTest, RejectsBadSpecsNamingSpecAndProblem) {
  struct Case {
    absl::string_view spec;
    absl::string_view want;  // after `--port "<spec>": `
  };
  const Case cases[] = {
      {"", "want PROTO:[HOST_ADDR:]HOST_PORT:GUEST_PORT, e.g. tcp:127.0.0.1:10022:22"},
      {"tcp", "want PROTO:[HOST_ADDR:]HOST_PORT:GUEST_PORT"},
      {"tcp:22", "want PROTO:[HOST_ADDR:]HOST_PORT:GUEST_PORT"},
      {"tcp:1.2.3.4:80:22:7",
       "want PROTO:[HOST_ADDR:]HOST_PORT:GUEST_PORT, e.g. tcp:127.0.0.1:10022:22 (an IPv6 host "
       "address goes in brackets: [::1])"},
      {"tcp::1:80:22",
       "want PROTO:[HOST_ADDR:]HOST_PORT:GUEST_PORT, e.g. tcp:127.0.0.1:10022:22 (an IPv6 host "
       "address goes in brackets: [::1])"},
      {"sctp:80:22", "protocol \"sctp\": want tcp or udp"},
      {":80:22", "protocol \"\": want tcp or udp"},
      {"tcp:0:22", "host port \"0\": want 1-65535"},
      {"tcp:65536:22", "host port \"65536\": want 1-65535"},
      {"tcp:+80:22", "host port \"+80\": want 1-65535"},
      {"tcp:ssh:22", "host port \"ssh\": want 1-65535"},
      {"tcp:80:", "guest port \"\": want 1-65535"},
      {"tcp:80:-1", "guest port \"-1\": want 1-65535"},
      {"tcp::80:22", "host address is empty"},
      {"tcp:localhost:80:22", "host address \"localhost\": want an IPv4 literal"},
      {"tcp:999.1.1.1:80:22", "host address \"999.1.1.1\": want an IPv4 literal"},
      {"tcp:[127.0.0.1]:80:22", "host address \"127.0.0.1\": want an IPv6 literal"},
      {"tcp:[::1:80:22", "host address: no closing ']'"},
      {"tcp:[::1]80:22", "want PROTO:[HOST_ADDR:]HOST_PORT:GUEST_PORT"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.spec);
    EXPECT_THAT(ParsePortSpec(c.spec),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         StartsWith(absl::StrCat("--port \"", c.spec, "\": ", c.want))));
  }
}

TEST(VmPortSpecTest, BoundsTheEchoedSpec) {
  const std::string long_spec = absl::StrCat("tcp:", std::string(500, '9'), ":22");
  auto p = ParsePortSpec(long_spec);
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(std::string(p.status().message()), Not(HasSubstr(std::string(65, '9'))));
}

TEST(VmPortSpecTest, FormatRoundTrips) {
  for (absl::string_view spec :
       {"tcp:127.0.0.1:10022:22", "udp:0.0.0.0:5353:53", "tcp:[::1]:8080:80"}) {
    SCOPED_TRACE(spec);
    PML_ASSERT_OK_AND_ASSIGN(v1::PortForward p, ParsePortSpec(spec));
    EXPECT_EQ(FormatPortSpec(p), spec);
  }
  v1::PortForward defaulted;
  defaulted.set_protocol(v1::PORT_PROTOCOL_TCP);
  defaulted.set_host_port(8080);
  defaulted.set_guest_port(80);
  EXPECT_EQ(FormatPortSpec(defaulted), "tcp:127.0.0.1:8080:80");
}

// ---- sizes

TEST(VmSizeTest, MemoryAcceptsMibGibTibAndBareMib) {
  EXPECT_THAT(ParseMemoryMib("--memory", "2G"), IsOkAndHolds(2048u));
  EXPECT_THAT(ParseMemoryMib("--memory", "2g"), IsOkAndHolds(2048u));
  EXPECT_THAT(ParseMemoryMib("--memory", "2GiB"), IsOkAndHolds(2048u));
  EXPECT_THAT(ParseMemoryMib("--memory", "2048M"), IsOkAndHolds(2048u));
  EXPECT_THAT(ParseMemoryMib("--memory", "2048mib"), IsOkAndHolds(2048u));
  EXPECT_THAT(ParseMemoryMib("--memory", "2048"), IsOkAndHolds(2048u));
  EXPECT_THAT(ParseMemoryMib("--memory", "1T"), IsOkAndHolds(1024u * 1024u));
  EXPECT_THAT(ParseMemoryMib("--memory", "64"), IsOkAndHolds(64u));
}

TEST(VmSizeTest, MemoryRejectsMalformedZeroAmbiguousAndOverflow) {
  struct Case {
    absl::string_view text;
    absl::string_view want;
  };
  const Case cases[] = {
      {"", "--memory \"\": want a whole number with an optional unit M, G or T"},
      {"G", "--memory \"G\": want a whole number"},
      {"1.5G", "--memory \"1.5G\": unit \".5g\": want M, G or T"},
      {"-1", "--memory \"-1\": want a whole number"},
      {"2K", "--memory \"2K\": unit \"k\": want M, G or T"},
      {"2GB", "--memory \"2GB\": \"gb\" is ambiguous: write G or GiB (powers of 1024)"},
      {"2048MB", "\"mb\" is ambiguous: write M or MiB"},
      {"0", "--memory \"0\": want more than 0"},
      {"0G", "--memory \"0G\": want more than 0"},
      {"99999999999999999T", "--memory \"99999999999999999T\": too large"},
      {"99999999999999999999", "want a whole number"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    EXPECT_THAT(ParseMemoryMib("--memory", c.text),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.want)));
  }
}

TEST(VmSizeTest, DiskTakesBareGibWholeGibAndZero) {
  EXPECT_THAT(ParseDiskGib("--disk", "20G"), IsOkAndHolds(20u));
  EXPECT_THAT(ParseDiskGib("--disk", "20"), IsOkAndHolds(20u));
  EXPECT_THAT(ParseDiskGib("--disk", "20480M"), IsOkAndHolds(20u));
  EXPECT_THAT(ParseDiskGib("--disk", "1TiB"), IsOkAndHolds(1024u));
  EXPECT_THAT(ParseDiskGib("--disk", "0"), IsOkAndHolds(0u));
  EXPECT_THAT(ParseDiskGib("--disk", "100M"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--disk \"100M\": not a whole number of GiB")));
  EXPECT_THAT(
      ParseDiskGib("--disk", "5000000000"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--disk \"5000000000\": too large")));
  EXPECT_THAT(ParseDiskGib("--disk", "20GB"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ambiguous")));
}

TEST(VmSizeTest, StopTimeoutTakesDurationsOrSeconds) {
  EXPECT_THAT(ParseStopTimeoutSeconds("30s"), IsOkAndHolds(30u));
  EXPECT_THAT(ParseStopTimeoutSeconds("2m"), IsOkAndHolds(120u));
  EXPECT_THAT(ParseStopTimeoutSeconds("1m30s"), IsOkAndHolds(90u));
  EXPECT_THAT(ParseStopTimeoutSeconds("45"), IsOkAndHolds(45u));
  EXPECT_THAT(ParseStopTimeoutSeconds("0"), IsOkAndHolds(0u));
  for (absl::string_view bad : {"-5s", "1.5s", "soon", "inf", "", "99999999999"}) {
    SCOPED_TRACE(bad);
    EXPECT_THAT(ParseStopTimeoutSeconds(bad),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         StartsWith(absl::StrCat("--timeout \"", bad, "\": "))));
  }
}

// ---- app-compose.json

TEST(VmComposeTest, WrapsDockerComposeAsSortedCompactJson) {
  PML_ASSERT_OK_AND_ASSIGN(
      std::string wrapped,
      WrapAppCompose(ComposeRunner::kDockerCompose, "demo", kComposeYaml, /*kms_enabled=*/false));
  EXPECT_EQ(wrapped, kWrappedCompose);
  EXPECT_EQ(Sha256Hex(wrapped), kWrappedComposeSha256);
}

TEST(VmComposeTest, WrapsBashScriptWithKmsUnescapedUtf8AndEscapedControls) {
  PML_ASSERT_OK_AND_ASSIGN(std::string wrapped,
                           WrapAppCompose(ComposeRunner::kBash, "d\xc3\xa9mo", kBashScript,
                                          /*kms_enabled=*/true));
  EXPECT_EQ(wrapped, kWrappedBash);
  EXPECT_EQ(Sha256Hex(wrapped), kWrappedBashSha256);
  // The guest agent reads the script back from the runner's field.
  const nlohmann::json j = nlohmann::json::parse(wrapped);
  EXPECT_EQ(j["runner"], "bash");
  EXPECT_EQ(j["bash_script"], std::string(kBashScript));
  EXPECT_FALSE(j.contains("docker_compose_file"));
}

TEST(VmComposeTest, RejectsInvalidUtf8) {
  EXPECT_THAT(WrapAppCompose(ComposeRunner::kDockerCompose, "demo", "image: \xff\n", false),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("docker-compose file: not valid UTF-8")));
  EXPECT_THAT(WrapAppCompose(ComposeRunner::kBash, "de\xc3", "true", false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("app name: not valid UTF-8")));
}

TEST(VmComposeTest, LoadWrapsComposeAndBashFiles) {
  TempDir dir;
  ComposeFlags compose;
  compose.compose_file = dir.Write("docker-compose.yaml", kComposeYaml);
  EXPECT_THAT(LoadAppCompose(compose, "demo", false), IsOkAndHolds(std::string(kWrappedCompose)));
  ComposeFlags bash;
  bash.bash_script_file = dir.Write("run.sh", kBashScript);
  EXPECT_THAT(LoadAppCompose(bash, "d\xc3\xa9mo", true), IsOkAndHolds(std::string(kWrappedBash)));
}

TEST(VmComposeTest, LoadSendsAppComposeBytesUnchanged) {
  TempDir dir;
  // Unsorted keys and whitespace: hashed as delivered, never re-serialized.
  const std::string text = "{ \"runner\": \"bash\", \"bash_script\": \"true\" }\n";
  ComposeFlags flags;
  flags.app_compose_file = dir.Write("app-compose.json", text);
  EXPECT_THAT(LoadAppCompose(flags, "", false), IsOkAndHolds(text));
}

TEST(VmComposeTest, LoadRejectsNoneSeveralMissingNameNonObjectAndMissingFile) {
  TempDir dir;
  const std::string yaml = dir.Write("c.yaml", kComposeYaml);
  EXPECT_THAT(LoadAppCompose(ComposeFlags{}, "demo", false),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("give one of --compose FILE, --app-compose FILE and "
                                 "--bash-script FILE")));
  ComposeFlags two;
  two.compose_file = yaml;
  two.bash_script_file = yaml;
  EXPECT_THAT(LoadAppCompose(two, "demo", false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("give only one of")));
  ComposeFlags no_name;
  no_name.compose_file = yaml;
  EXPECT_THAT(LoadAppCompose(no_name, "", false),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--compose needs the app name (--name)")));
  ComposeFlags array;
  array.app_compose_file = dir.Write("a.json", "[1,2]");
  EXPECT_THAT(LoadAppCompose(array, "", false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a JSON object")));
  ComposeFlags missing;
  missing.compose_file = dir.Path() + "/nope.yaml";
  EXPECT_THAT(LoadAppCompose(missing, "demo", false),
              StatusIs(absl::StatusCode::kNotFound, StartsWith("--compose: ")));
}

// ---- compose hash

TEST(VmComposeHashTest, HashAppIdAndMrConfigIdFollowDstack) {
  const v1::GetComposeHashResponse h = ComputeComposeHash(kWrappedCompose);
  EXPECT_EQ(core::HexEncode(h.compose_hash()), kWrappedComposeSha256);
  EXPECT_EQ(h.compose_hash(), core::ToString(crypto::Sha256(kWrappedCompose)));
  EXPECT_EQ(core::HexEncode(h.app_id()), kWrappedComposeSha256.substr(0, 40));
  EXPECT_EQ(core::HexEncode(h.mrconfigid()),
            absl::StrCat("01", kWrappedComposeSha256, std::string(30, '0')));
  EXPECT_EQ(h.mrconfigid().size(), 48u);
}

TEST(VmComposeHashTest, LocalOutputPrintsTheThreeValuesInHex) {
  EXPECT_EQ(FormatComposeHash(ComputeComposeHash(kWrappedCompose)),
            absl::StrCat("compose hash: ", kWrappedComposeSha256, "\n",                //
                         "app id:       ", kWrappedComposeSha256.substr(0, 40), "\n",  //
                         "mrconfigid:   01", kWrappedComposeSha256, std::string(30, '0'), "\n"));
}

TEST(VmComposeHashTest, WrappedFileHashesLikeCreateSends) {
  TempDir dir;
  ComposeFlags flags;
  flags.compose_file = dir.Write("docker-compose.yaml", kComposeYaml);
  PML_ASSERT_OK_AND_ASSIGN(std::string compose, LoadAppCompose(flags, "demo", false));
  EXPECT_EQ(core::HexEncode(ComputeComposeHash(compose).compose_hash()), kWrappedComposeSha256);
}

// ---- create

TEST(VmCreateTest, BuildsTheRequestFromFlags) {
  TempDir dir;
  CreateVmFlags f;
  f.name = "demo";
  f.image = "pml-0.1.0";
  f.compose.compose_file = dir.Write("docker-compose.yaml", kComposeYaml);
  f.tee = "none";
  f.vcpus = 4;
  f.memory = "8G";
  f.disk = "0";
  f.gpus = {"0000:18:00.0", "0000:2a:00.0"};
  f.ports = {"tcp:127.0.0.1:10022:22", "udp:5353:53"};
  f.hugepages = true;
  f.pin_numa = true;
  f.numa_node = 1;
  f.kms_urls = {"https://kms.example:8000"};
  f.encrypted_env_file = dir.Write("env", std::string(80, 'e'));
  f.app_id = "0123456789abcdef0123456789abcdef01234567";
  f.request_id = "req-1";
  f.start = true;
  PML_ASSERT_OK_AND_ASSIGN(v1::CreateVmRequest req, BuildCreateVmRequest(f));
  const v1::VmSpec& s = req.spec();
  EXPECT_EQ(s.name(), "demo");
  EXPECT_EQ(s.image(), "pml-0.1.0");
  EXPECT_EQ(s.tee_mode(), common::v1::TEE_MODE_NONE);
  EXPECT_EQ(s.vcpus(), 4u);
  EXPECT_EQ(s.memory_mib(), 8192u);
  EXPECT_EQ(s.disk_size_gib(), 0u);
  EXPECT_THAT(s.gpus().slots(), ElementsAre("0000:18:00.0", "0000:2a:00.0"));
  EXPECT_FALSE(s.gpus().all());
  ASSERT_EQ(s.ports_size(), 2);
  EXPECT_EQ(FormatPortSpec(s.ports(1)), "udp:127.0.0.1:5353:53");
  EXPECT_TRUE(s.hugepages());
  EXPECT_TRUE(s.pin_numa());
  ASSERT_TRUE(s.has_numa_node());
  EXPECT_EQ(s.numa_node(), 1);
  EXPECT_THAT(s.kms_urls(), ElementsAre("https://kms.example:8000"));
  EXPECT_EQ(s.encrypted_env(), std::string(80, 'e'));
  EXPECT_EQ(core::HexEncode(s.app_id()), f.app_id);
  EXPECT_EQ(req.request_id(), "req-1");
  EXPECT_TRUE(req.start());
  // --kms-url turns kms_enabled on in the wrapped compose, and nothing else changes.
  EXPECT_EQ(nlohmann::json::parse(s.app_compose())["kms_enabled"], true);
  PML_ASSERT_OK_AND_ASSIGN(std::string expected,
                           WrapAppCompose(ComposeRunner::kDockerCompose, "demo", kComposeYaml,
                                          /*kms_enabled=*/true));
  EXPECT_EQ(s.app_compose(), expected);
}

TEST(VmCreateTest, DefaultsAndGpusAll) {
  TempDir dir;
  CreateVmFlags f;
  f.name = "demo";
  f.image = "img";
  f.compose.compose_file = dir.Write("c.yaml", kComposeYaml);
  f.tee = "tdx";
  f.all_gpus = true;
  f.request_id = "r";
  PML_ASSERT_OK_AND_ASSIGN(v1::CreateVmRequest req, BuildCreateVmRequest(f));
  EXPECT_EQ(req.spec().tee_mode(), common::v1::TEE_MODE_TDX);
  EXPECT_EQ(req.spec().vcpus(), 2u);
  EXPECT_EQ(req.spec().memory_mib(), 2048u);
  EXPECT_EQ(req.spec().disk_size_gib(), 20u);
  EXPECT_TRUE(req.spec().gpus().all());
  EXPECT_FALSE(req.spec().has_numa_node());
  EXPECT_EQ(req.spec().app_compose(), kWrappedCompose);
}

TEST(VmCreateTest, RejectsBadFlagsBeforeReadingFiles) {
  CreateVmFlags base;
  base.name = "demo";
  base.image = "img";
  base.compose.compose_file = "/nonexistent/compose.yaml";  // never read: the flag error wins
  base.tee = "tdx";
  base.request_id = "r";
  struct Case {
    absl::string_view name;
    CreateVmFlags flags;
    absl::string_view want;
  };
  std::vector<Case> cases;
  cases.push_back({"port", base, "--port \"tcp:0:22\": host port \"0\": want 1-65535"});
  cases.back().flags.ports = {"tcp:8080:80", "tcp:0:22"};
  cases.push_back({"tee", base, "--tee \"sev\": want one of tdx, none"});
  cases.back().flags.tee = "sev";
  cases.push_back({"memory", base, "--memory \"2GB\""});
  cases.back().flags.memory = "2GB";
  cases.push_back({"disk", base, "--disk \"1M\""});
  cases.back().flags.disk = "1M";
  cases.push_back({"gpus", base, "give --gpu SLOT... or --gpus all, not both"});
  cases.back().flags.gpus = {"0000:18:00.0"};
  cases.back().flags.all_gpus = true;
  cases.push_back({"app id", base, "--app-id \"abcd\": want 40 hex digits"});
  cases.back().flags.app_id = "abcd";
  cases.push_back({"request id", base, "--request-id: want 1-128 characters, got 129"});
  cases.back().flags.request_id = std::string(129, 'r');
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(BuildCreateVmRequest(c.flags),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.want)));
  }
  EXPECT_THAT(BuildCreateVmRequest(base),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("--compose")));
}

// ---- update

v1::Vm CurrentVm() {
  v1::Vm vm;
  vm.set_id("8c1e2d3f-0000-4000-8000-000000000001");
  vm.set_name("web");
  vm.mutable_spec()->set_name("web");
  vm.mutable_spec()->add_kms_urls("https://kms.example:8000");
  return vm;
}

TEST(VmUpdateTest, MaskNamesOnlyTheGivenFlagsInFieldOrder) {
  UpdateVmFlags f;
  f.ports = {"tcp:10022:22"};
  f.memory = "4G";
  f.hugepages = false;
  f.vcpus = 8;
  PML_ASSERT_OK_AND_ASSIGN(v1::UpdateVmRequest req, BuildUpdateVmRequest("vm-1", f, CurrentVm()));
  EXPECT_EQ(req.vm_id(), "vm-1");
  EXPECT_THAT(req.update_mask().paths(), ElementsAre("vcpus", "memory_mib", "ports", "hugepages"));
  EXPECT_EQ(req.spec().vcpus(), 8u);
  EXPECT_EQ(req.spec().memory_mib(), 4096u);
  ASSERT_EQ(req.spec().ports_size(), 1);
  EXPECT_EQ(req.spec().ports(0).host_port(), 10022u);
  EXPECT_FALSE(req.spec().hugepages());
  EXPECT_TRUE(req.spec().app_compose().empty());
}

TEST(VmUpdateTest, EveryFlagMapsToItsPath) {
  TempDir dir;
  UpdateVmFlags f;
  f.compose.app_compose_file = dir.Write("app-compose.json", "{\"runner\":\"bash\"}");
  f.vcpus = 1;
  f.memory = "1G";
  f.disk = "40G";
  f.gpus = {"0000:18:00.0"};
  f.ports = {"udp:53:53"};
  f.hugepages = true;
  f.pin_numa = true;
  f.numa_node = 0;
  f.kms_urls = {"https://a", "https://b"};
  f.encrypted_env_file = dir.Write("env", std::string(64, 'x'));
  PML_ASSERT_OK_AND_ASSIGN(v1::UpdateVmRequest req, BuildUpdateVmRequest("id", f, CurrentVm()));
  EXPECT_THAT(req.update_mask().paths(),
              ElementsAre("app_compose", "vcpus", "memory_mib", "disk_size_gib", "gpus", "ports",
                          "hugepages", "pin_numa", "numa_node", "kms_urls", "encrypted_env"));
  EXPECT_EQ(req.spec().app_compose(), "{\"runner\":\"bash\"}");
  EXPECT_EQ(req.spec().disk_size_gib(), 40u);
  EXPECT_THAT(req.spec().gpus().slots(), ElementsAre("0000:18:00.0"));
  ASSERT_TRUE(req.spec().has_numa_node());
  EXPECT_EQ(req.spec().numa_node(), 0);
  EXPECT_THAT(req.spec().kms_urls(), ElementsAre("https://a", "https://b"));
  EXPECT_EQ(req.spec().encrypted_env(), std::string(64, 'x'));
}

TEST(VmUpdateTest, ClearFlagsSendThePathWithAnEmptyValue) {
  UpdateVmFlags f;
  f.no_ports = true;
  f.no_gpus = true;
  f.no_kms_urls = true;
  f.no_numa_node = true;
  PML_ASSERT_OK_AND_ASSIGN(v1::UpdateVmRequest req, BuildUpdateVmRequest("id", f, CurrentVm()));
  EXPECT_THAT(req.update_mask().paths(), ElementsAre("gpus", "ports", "numa_node", "kms_urls"));
  EXPECT_EQ(req.spec().ports_size(), 0);
  EXPECT_EQ(req.spec().gpus().slots_size(), 0);
  EXPECT_FALSE(req.spec().gpus().all());
  EXPECT_FALSE(req.spec().has_numa_node());
  EXPECT_EQ(req.spec().kms_urls_size(), 0);
}

TEST(VmUpdateTest, GpusAllSetsAll) {
  UpdateVmFlags f;
  f.all_gpus = true;
  PML_ASSERT_OK_AND_ASSIGN(v1::UpdateVmRequest req, BuildUpdateVmRequest("id", f, CurrentVm()));
  EXPECT_THAT(req.update_mask().paths(), ElementsAre("gpus"));
  EXPECT_TRUE(req.spec().gpus().all());
}

TEST(VmUpdateTest, ComposeIsWrappedWithTheVmsNameAndKmsState) {
  TempDir dir;
  UpdateVmFlags f;
  f.compose.compose_file = dir.Write("c.yaml", kComposeYaml);
  // The VM has KMS URLs: kms_enabled.
  PML_ASSERT_OK_AND_ASSIGN(v1::UpdateVmRequest with_kms,
                           BuildUpdateVmRequest("id", f, CurrentVm()));
  PML_ASSERT_OK_AND_ASSIGN(std::string want_kms, WrapAppCompose(ComposeRunner::kDockerCompose,
                                                                "web", kComposeYaml, true));
  EXPECT_EQ(with_kms.spec().app_compose(), want_kms);
  // Removing them in the same update: not.
  f.no_kms_urls = true;
  PML_ASSERT_OK_AND_ASSIGN(v1::UpdateVmRequest without, BuildUpdateVmRequest("id", f, CurrentVm()));
  PML_ASSERT_OK_AND_ASSIGN(std::string want_plain, WrapAppCompose(ComposeRunner::kDockerCompose,
                                                                  "web", kComposeYaml, false));
  EXPECT_EQ(without.spec().app_compose(), want_plain);
  EXPECT_THAT(without.update_mask().paths(), ElementsAre("app_compose", "kms_urls"));
}

TEST(VmUpdateTest, RejectsNothingAndContradictions) {
  EXPECT_THAT(BuildUpdateVmRequest("id", UpdateVmFlags{}, CurrentVm()),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("nothing to update")));
  struct Case {
    absl::string_view name;
    UpdateVmFlags flags;
    absl::string_view want;
  };
  std::vector<Case> cases;
  cases.push_back({"ports", {}, "give --port or --no-ports, not both"});
  cases.back().flags.ports = {"tcp:1:1"};
  cases.back().flags.no_ports = true;
  cases.push_back({"gpus", {}, "give one of --gpu SLOT..., --gpus all and --no-gpus"});
  cases.back().flags.gpus = {"0000:18:00.0"};
  cases.back().flags.all_gpus = true;
  cases.push_back({"no gpus", {}, "give one of --gpu SLOT..., --gpus all and --no-gpus"});
  cases.back().flags.all_gpus = true;
  cases.back().flags.no_gpus = true;
  cases.push_back({"kms", {}, "give --kms-url or --no-kms-urls, not both"});
  cases.back().flags.kms_urls = {"https://a"};
  cases.back().flags.no_kms_urls = true;
  cases.push_back({"numa", {}, "give --numa-node or --no-numa-node, not both"});
  cases.back().flags.numa_node = 1;
  cases.back().flags.no_numa_node = true;
  cases.push_back({"bad port", {}, "--port \"tcp:80\": want PROTO"});
  cases.back().flags.ports = {"tcp:80"};
  cases.push_back({"bad memory", {}, "--memory \"lots\""});
  cases.back().flags.memory = "lots";
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(BuildUpdateVmRequest("id", c.flags, CurrentVm()),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.want)));
  }
}

// ---- names and VM arguments

TEST(VmNamesTest, EveryEnumValueRoundTrips) {
  const auto* states = v1::VmState_descriptor();
  for (int i = 0; i < states->value_count(); ++i) {
    const auto value = static_cast<v1::VmState>(states->value(i)->number());
    SCOPED_TRACE(states->value(i)->name());
    if (value == v1::VM_STATE_UNSPECIFIED) {
      continue;
    }
    EXPECT_THAT(ParseVmState(VmStateName(value)), IsOkAndHolds(value));
  }
  const auto* gpu_states = v1::GpuState_descriptor();
  for (int i = 0; i < gpu_states->value_count(); ++i) {
    const auto value = static_cast<v1::GpuState>(gpu_states->value(i)->number());
    if (value != v1::GPU_STATE_UNSPECIFIED) {
      EXPECT_THAT(ParseGpuState(GpuStateName(value)), IsOkAndHolds(value));
    }
  }
}

TEST(VmNamesTest, UsesShortLowerCaseNames) {
  EXPECT_EQ(VmStateName(v1::VM_STATE_RUNNING), "running");
  EXPECT_EQ(VmStateName(static_cast<v1::VmState>(99)), "unknown(99)");
  EXPECT_EQ(GpuStateName(v1::GPU_STATE_UNUSABLE), "unusable");
  EXPECT_EQ(VmEventTypeName(v1::VM_EVENT_TYPE_STATE_CHANGED), "state-changed");
  EXPECT_EQ(TeeModeName(common::v1::TEE_MODE_TDX), "tdx");
  EXPECT_THAT(ParseTeeMode("none"), IsOkAndHolds(common::v1::TEE_MODE_NONE));
}

TEST(VmNamesTest, RejectsUnknownAndUnspecifiedListingTheChoices) {
  EXPECT_THAT(ParseVmState("up"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--state \"up\": want one of creating, stopped, starting, "
                                 "running, stopping, paused, failed, removing")));
  EXPECT_THAT(ParseVmState("unspecified"),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(ParseGpuState("busy"), StatusIs(absl::StatusCode::kInvalidArgument,
                                              HasSubstr("want one of free, claimed, unusable")));
}

TEST(VmNamesTest, ModeNoneSaysSimulatedTdx) {
  EXPECT_EQ(TeeModeDescription(common::v1::TEE_MODE_NONE),
            "none (no TEE: the guest uses the SIMULATED TDX; development only)");
  EXPECT_EQ(TeeModeDescription(common::v1::TEE_MODE_TDX), "tdx");
}

TEST(VmRefTest, UuidTextIsAnIdAnythingElseAName) {
  EXPECT_TRUE(LooksLikeVmId("8c1e2d3f-0000-4000-8000-000000000001"));
  EXPECT_TRUE(LooksLikeVmId("8C1E2D3F-0000-4000-8000-00000000000A"));
  EXPECT_FALSE(LooksLikeVmId("web"));
  EXPECT_FALSE(LooksLikeVmId("8c1e2d3f00004000800000000000000001ab"));
  EXPECT_FALSE(LooksLikeVmId("8c1e2d3f-0000-4000-8000-00000000000g"));
}

TEST(VmRefTest, PicksTheOneExactNameMatch) {
  std::vector<v1::Vm> vms(3);
  vms[0].set_id("a");
  vms[0].set_name("web-2");
  vms[1].set_id("b");
  vms[1].set_name("web");
  vms[2].set_id("c");
  vms[2].set_name("old-web");
  EXPECT_THAT(PickVmByName("web", vms), IsOkAndHolds(std::string("b")));
  EXPECT_THAT(PickVmByName("we", vms),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no VM is named \"we\"")));
  vms[2].set_name("web");
  EXPECT_THAT(PickVmByName("web", vms),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("2 VMs are named \"web\" (b, c): give the id")));
}

TEST(VmRefTest, RequestIdsAreFreshVersion4Uuids) {
  const std::string a = NewRequestId();
  const std::string b = NewRequestId();
  EXPECT_NE(a, b);
  EXPECT_THAT(a,
              MatchesRegex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"));
  EXPECT_TRUE(LooksLikeVmId(a));
}

// ---- output

TEST(VmFormatTest, GpuTableShowsHolderOrReason) {
  v1::ListGpusResponse resp;
  v1::Gpu* free = resp.add_gpus();
  free->set_slot("0000:18:00.0");
  free->set_device_kind(common::v1::GPU_DEVICE_KIND_GPU);
  free->set_name("NVIDIA H100 80GB HBM3");
  free->set_numa_node(0);
  free->set_iommu_group(12);
  free->set_driver("vfio-pci");
  free->set_state(v1::GPU_STATE_FREE);
  v1::Gpu* held = resp.add_gpus();
  *held = *free;
  held->set_slot("0000:2a:00.0");
  held->set_state(v1::GPU_STATE_CLAIMED);
  held->set_vm_id("8c1e2d3f-0000-4000-8000-000000000001");
  held->set_vm_name("web");
  v1::Gpu* bad = resp.add_gpus();
  bad->set_slot("0000:c0:00.0");
  bad->set_device_kind(common::v1::GPU_DEVICE_KIND_NVSWITCH);
  bad->set_name("unknown");
  bad->set_numa_node(-1);
  bad->set_iommu_group(-1);
  bad->set_state(v1::GPU_STATE_UNUSABLE);
  bad->set_unusable_reason("bound to nvidia, not vfio-pci");
  EXPECT_EQ(FormatGpuTable(resp),
            "SLOT          KIND      NAME                   NUMA  IOMMU  DRIVER    STATE     "
            "VM/REASON\n"
            "0000:18:00.0  gpu       NVIDIA H100 80GB HBM3  0     12     vfio-pci  free      -\n"
            "0000:2a:00.0  gpu       NVIDIA H100 80GB HBM3  0     12     vfio-pci  claimed   web\n"
            "0000:c0:00.0  nvswitch  unknown                -     -      -         unusable  "
            "bound to nvidia, not vfio-pci\n");
}

TEST(VmFormatTest, EventLineHasTimeTypeVmNameStateAndReason) {
  v1::VmEvent e;
  e.mutable_time()->set_seconds(1751328000);
  e.set_type(v1::VM_EVENT_TYPE_STATE_CHANGED);
  e.mutable_vm()->set_id("8c1e2d3f-0000-4000-8000-000000000001");
  e.mutable_vm()->set_name("web");
  e.mutable_vm()->set_state(v1::VM_STATE_STOPPED);
  e.set_previous_state(v1::VM_STATE_RUNNING);
  e.set_reason("libvirt: shutdown by guest\n");
  EXPECT_EQ(FormatVmEvent(e),
            "2025-07-01T00:00:00Z state-changed 8c1e2d3f-0000-4000-8000-000000000001 web stopped "
            "(was running) \"libvirt: shutdown by guest\\n\"");
  e.set_type(v1::VM_EVENT_TYPE_CREATED);
  e.clear_reason();
  EXPECT_EQ(FormatVmEvent(e),
            "2025-07-01T00:00:00Z created 8c1e2d3f-0000-4000-8000-000000000001 web stopped -");
}

TEST(VmFormatTest, VmSummaryShowsIdentityAndMode) {
  v1::Vm vm = CurrentVm();
  vm.set_state(v1::VM_STATE_STOPPED);
  vm.set_tee_mode(common::v1::TEE_MODE_NONE);
  const v1::GetComposeHashResponse h = ComputeComposeHash(kWrappedCompose);
  vm.set_compose_hash(h.compose_hash());
  vm.set_app_id(h.app_id());
  vm.mutable_spec()->set_memory_mib(2048);
  PML_ASSERT_OK_AND_ASSIGN(*vm.mutable_spec()->add_ports(), ParsePortSpec("tcp:10022:22"));
  const std::string text = FormatVm(vm);
  EXPECT_THAT(text, HasSubstr("id:           8c1e2d3f-0000-4000-8000-000000000001\n"));
  EXPECT_THAT(text, HasSubstr("name:         web\n"));
  EXPECT_THAT(text, HasSubstr("state:        stopped\n"));
  EXPECT_THAT(text, HasSubstr("tee mode:     none (no TEE: the guest uses the SIMULATED TDX; "
                              "development only)\n"));
  EXPECT_THAT(text, HasSubstr(absl::StrCat("compose hash: ", kWrappedComposeSha256, "\n")));
  EXPECT_THAT(text, HasSubstr(absl::StrCat("app id:       ", kWrappedComposeSha256.substr(0, 40))));
  EXPECT_THAT(text, HasSubstr("ports:        tcp:127.0.0.1:10022:22\n"));
  EXPECT_THAT(text, HasSubstr("memory:       2048 MiB\n"));
  EXPECT_THAT(text, Not(HasSubstr("failure:")));
}

TEST(VmFormatTest, ProtoJsonUsesProtoNamesAndPrintsEveryField) {
  v1::GetVmResponse resp;
  resp.mutable_vm()->set_id("x");
  resp.mutable_vm()->set_app_id(std::string("\x01\x02", 2));
  const std::string line = ProtoJson(resp, /*pretty=*/false);
  EXPECT_THAT(line, Not(HasSubstr("\n")));
  const nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_EQ(j["vm"]["id"], "x");
  EXPECT_EQ(j["vm"]["app_id"], "AQI=");                 // bytes as base64
  EXPECT_EQ(j["vm"]["state"], "VM_STATE_UNSPECIFIED");  // printed although default
  EXPECT_TRUE(j["vm"].contains("failure_reason"));
  const std::string pretty = ProtoJson(resp, /*pretty=*/true);
  EXPECT_THAT(pretty, HasSubstr("\n "));
  EXPECT_EQ(pretty.back(), '\n');
}

}  // namespace
}  // namespace pml::pmlctl
