// The dstack HTTP/JSON API against a simulated TEE: what @phala/dstack-sdk sends, and what it
// gets back (shapes, hex, errors), checked with the verifier-side parsers (lib/tdx).

#include "services/guest-agent/dstack_api.h"

#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/hex.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/hash.h"
#include "lib/tdx/event_log.h"
#include "lib/tdx/quote.h"
#include "lib/tee/simulator.h"

namespace pml::guest {
namespace {

using ::pml::testing::IsOk;
using ::testing::HasSubstr;
using Json = nlohmann::json;

class DstackApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat("pml-dstack-", getpid(), "-", reinterpret_cast<uintptr_t>(this) % 100000);
    std::filesystem::create_directories(dir_);
    tee::SimulatorOptions so;
    so.mrtd.fill(0x11);
    auto sim = tee::TdxSimulator::Create(so);
    ASSERT_THAT(sim, IsOk());
    sim_ = *std::move(sim);
    auto log = RuntimeEventLog::Open((dir_ / "runtime.log").string(), *sim_);
    ASSERT_THAT(log, IsOk());
    log_ = *std::move(log);
    auto keys = AppKeys::Create(crypto::SecretBytes(std::vector<uint8_t>(32, 0x42)), {});
    ASSERT_THAT(keys, IsOk());
    keys_ = *std::move(keys);
    AgentIdentity id;
    id.app_id.assign(20, 0xA1);
    id.compose_hash.assign(32, 0xC0);
    id.instance_id.assign(20, 0x1D);
    id.app_compose = R"({"name":"t"})";
    id.boot_log_json = "[]";
    id.tee_kind = "simulated";
    id.version = "test";
    api_ = std::make_unique<DstackApi>(*log_, *keys_, id);
  }
  void TearDown() override {
    api_.reset();
    log_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::pair<int, Json> Call(const std::string& path, const Json& body) {
    HttpResponse r = api_->Handle({"POST", path, "", body.dump()});
    return {r.status, Json::parse(r.body, nullptr, false)};
  }

  std::filesystem::path dir_;
  std::unique_ptr<tee::TdxSimulator> sim_;
  std::unique_ptr<RuntimeEventLog> log_;
  std::unique_ptr<AppKeys> keys_;
  std::unique_ptr<DstackApi> api_;
};

TEST_F(DstackApiTest, GetQuoteZeroPadsAndItsLogReplaysToTheQuote) {
  auto [s0, e0] = Call("/EmitEvent", {{"event", "app-id"}, {"payload", "a1a1"}});
  ASSERT_EQ(s0, 200) << e0.dump();
  auto [status, r] = Call("/GetQuote", {{"report_data", "0102"}});
  ASSERT_EQ(status, 200) << r.dump();
  EXPECT_EQ(r["report_data"], "0102" + std::string(124, '0'));
  auto quote = core::HexDecode(r["quote"].get<std::string>());
  ASSERT_THAT(quote, IsOk());
  auto parsed = tdx::ParseQuote(*quote);
  ASSERT_THAT(parsed, IsOk());
  EXPECT_EQ(parsed->td_report->report_data[1], 0x02);
  auto log = tdx::ParseEventLog(r["event_log"].get<std::string>());
  ASSERT_THAT(log, IsOk());
  EXPECT_TRUE(tdx::ReplayAgainst(*log, *parsed->td_report).matches[3]);
}

TEST_F(DstackApiTest, BadInputIsAJsonErrorTheSdkThrows) {
  EXPECT_EQ(Call("/GetQuote", {{"report_data", std::string(130, 'a')}}).first, 400);
  auto [s, e] = Call("/GetQuote", {{"report_data", "zz"}});
  EXPECT_EQ(s, 400);
  EXPECT_THAT(e["error"].get<std::string>(), HasSubstr("not hex"));
  EXPECT_EQ(Call("/GetKey", {{"path", "a"}, {"algorithm", "rsa"}}).first, 400);
  EXPECT_EQ(Call("/Nope", Json::object()).first, 404);
  HttpResponse garbage = api_->Handle({"POST", "/GetQuote", "", "{not json"});
  EXPECT_EQ(garbage.status, 400);
  EXPECT_EQ(Call("/EmitEvent", {{"event", ""}, {"payload", ""}}).first, 400);
  EXPECT_EQ(Call("/GetTlsKey", Json::object()).first, 501);
}

TEST_F(DstackApiTest, GetKeyIsStablePerPathAndDiffersAcrossPaths) {
  auto a1 = Call("/GetKey", {{"path", "wallet"}, {"purpose", "p"}});
  auto a2 = Call("/GetKey", {{"path", "wallet"}, {"purpose", "p"}});
  auto b = Call("/GetKey", {{"path", "other"}, {"purpose", "p"}});
  ASSERT_EQ(a1.first, 200) << a1.second.dump();
  EXPECT_EQ(a1.second["key"], a2.second["key"]);
  EXPECT_NE(a1.second["key"], b.second["key"]);
  EXPECT_EQ(a1.second["key"].get<std::string>().size(), 64u);
  EXPECT_EQ(a1.second["signature_chain"].size(), 2u);
}

TEST_F(DstackApiTest, InfoCarriesTheTcbInfoAsAJsonString) {
  auto [status, r] = Call("/Info", Json::object());
  ASSERT_EQ(status, 200) << r.dump();
  EXPECT_EQ(r["app_id"], core::HexEncode(std::vector<uint8_t>(20, 0xA1)));
  Json tcb = Json::parse(r["tcb_info"].get<std::string>());
  EXPECT_EQ(tcb["mrtd"], std::string(96, '1'));
  EXPECT_EQ(tcb["app_compose"], R"({"name":"t"})");
  EXPECT_TRUE(r["simulated"].get<bool>());
}

TEST_F(DstackApiTest, TappdTdxQuoteHashesPrefixAndData) {
  auto [status, r] =
      Call("/prpc/Tappd.TdxQuote", {{"report_data", core::HexEncode(std::string("test"))}});
  ASSERT_EQ(status, 200) << r.dump();
  EXPECT_EQ(r["hash_algorithm"], "sha512");
  EXPECT_EQ(r["prefix"], "app-data");
  auto quote = core::HexDecode(r["quote"].get<std::string>());
  ASSERT_THAT(quote, IsOk());
  auto parsed = tdx::ParseQuote(*quote);
  ASSERT_THAT(parsed, IsOk());
  const auto want = crypto::Sha512("app-data:test");
  EXPECT_TRUE(std::equal(want.begin(), want.end(), parsed->td_report->report_data.begin()));
}

TEST_F(DstackApiTest, SignAndVerify) {
  auto [s, sig] = Call("/Sign", {{"algorithm", "ed25519"}, {"data", "68656c6c6f"}});
  ASSERT_EQ(s, 200) << sig.dump();
  auto [v, ok] = Call("/Verify", {{"algorithm", "ed25519"},
                                  {"data", "68656c6c6f"},
                                  {"signature", sig["signature"]},
                                  {"public_key", sig["public_key"]}});
  ASSERT_EQ(v, 200) << ok.dump();
  EXPECT_TRUE(ok["valid"].get<bool>());
  auto [v2, bad] = Call("/Verify", {{"algorithm", "ed25519"},
                                    {"data", "68656c6c6e"},
                                    {"signature", sig["signature"]},
                                    {"public_key", sig["public_key"]}});
  EXPECT_FALSE(bad["valid"].get<bool>());
}

}  // namespace
}  // namespace pml::guest
