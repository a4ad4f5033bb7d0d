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
#include "lib/crypto/key.h"
#include "lib/crypto/x509.h"
#include "lib/ratls/cert.h"
#include "lib/ratls/report_data.h"
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
    AgentIdentity id;
    id.app_id.assign(20, 0xA1);
    auto dev = MakeLocalDevKeys(crypto::SecretBytes(std::vector<uint8_t>(32, 0x42)), id.app_id);
    ASSERT_THAT(dev, IsOk());
    dev_ = std::make_unique<LocalDevKeys>(*std::move(dev));
    auto keys = AppKeys::Create(dev_->app_key, {});
    ASSERT_THAT(keys, IsOk());
    keys_ = *std::move(keys);
    auto gpus = MakeSimulatedGpus(2);
    ASSERT_THAT(gpus, IsOk());
    gpus_ = *std::move(gpus);
    id.compose_hash.assign(32, 0xC0);
    id.instance_id.assign(20, 0x1D);
    id.app_compose = R"({"name":"t"})";
    id.boot_log_json = "[]";
    id.tee_kind = "simulated";
    id.version = "test";
    id.key_provider_info = dev_->key_provider_info;
    core_ = std::make_unique<AgentCore>(*log_, *keys_, &dev_->ca, gpus_.get(), id);
    api_ = std::make_unique<DstackApi>(*core_);
  }
  void TearDown() override {
    api_.reset();
    core_.reset();
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
  std::unique_ptr<LocalDevKeys> dev_;
  std::unique_ptr<AppKeys> keys_;
  std::unique_ptr<GpuSource> gpus_;
  std::unique_ptr<AgentCore> core_;
  std::unique_ptr<DstackApi> api_;
};

TEST_F(DstackApiTest, GetQuoteZeroPadsAndItsLogReplaysToTheQuote) {
  auto [s0, e0] = Call("/EmitEvent", {{"event", "my-event"}, {"payload", "a1a1"}});
  ASSERT_EQ(s0, 200) << e0.dump();
  EXPECT_EQ(Call("/EmitEvent", {{"event", "compose-hash"}, {"payload", "00"}}).first, 400);
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
  EXPECT_EQ(Call("/GetTlsKey", {{"subject", 7}}).first, 400);
  EXPECT_EQ(Call("/GetTlsKey", {{"alt_names", {"a b"}}}).first, 400);
  EXPECT_EQ(Call("/GetTlsKey", {{"usage_ra_tls", "yes"}}).first, 400);
  EXPECT_EQ(Call("/GetTlsKey", {{"not_before", 100}, {"not_after", 50}}).first, 400);
  EXPECT_EQ(Call("/Attest", {{"report_data", std::string(130, 'a')}}).first, 400);
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

// The chain as PEM -> X509s, leaf first.
std::vector<crypto::X509Ptr> Chain(const Json& list) {
  std::vector<crypto::X509Ptr> out;
  for (const auto& pem : list) {
    auto certs = crypto::ParsePemCertificates(pem.get<std::string>());
    EXPECT_THAT(certs, IsOk());
    if (certs.ok())
      for (auto& c : *certs)
        out.push_back(std::move(c));
  }
  return out;
}

TEST_F(DstackApiTest, GetTlsKeyChainsToTheAppCaAndTheQuoteBindsTheKey) {
  auto [s, r] = Call("/GetTlsKey", {{"subject", "app.example"},
                                    {"alt_names", {"app.example", "10.0.0.7"}},
                                    {"usage_ra_tls", true},
                                    {"usage_client_auth", true}});
  ASSERT_EQ(s, 200) << r.dump();
  auto chain = Chain(r["certificate_chain"]);
  ASSERT_EQ(chain.size(), 3u);
  // leaf <- app CA <- root (self-signed), and the key matches the leaf.
  auto root_key = crypto::CertificatePublicKey(*chain[2]);
  auto ca_key = crypto::CertificatePublicKey(*chain[1]);
  ASSERT_THAT(root_key, IsOk());
  ASSERT_THAT(ca_key, IsOk());
  EXPECT_THAT(crypto::VerifyCertificateSignature(*chain[2], **root_key), IsOk());
  EXPECT_THAT(crypto::VerifyCertificateSignature(*chain[1], **root_key), IsOk());
  EXPECT_THAT(crypto::VerifyCertificateSignature(*chain[0], **ca_key), IsOk());
  auto key = crypto::PrivateKeyFromPem(r["key"].get<std::string>());
  ASSERT_THAT(key, IsOk());
  auto leaf_pub = crypto::CertificatePublicKey(*chain[0]);
  ASSERT_THAT(leaf_pub, IsOk());
  EXPECT_EQ(*crypto::PublicKeyToDer(**key), *crypto::PublicKeyToDer(**leaf_pub));
  EXPECT_EQ(crypto::SubjectCommonName(*chain[0]), "app.example");

  auto claims = ratls::ParseRaTlsClaims(*chain[0]);
  ASSERT_THAT(claims, IsOk());
  EXPECT_EQ(claims->usage, "app:custom");
  EXPECT_EQ(claims->app_id, std::vector<uint8_t>(20, 0xA1));
  auto quote = tdx::ParseQuote(claims->quote);
  ASSERT_THAT(quote, IsOk());
  EXPECT_THAT(ratls::CheckBinding(*chain[0], quote->td_report->report_data), IsOk());
  EXPECT_FALSE(ratls::CheckBinding(*chain[1], quote->td_report->report_data).ok());
  auto log = tdx::ParseEventLog(claims->event_log);
  ASSERT_THAT(log, IsOk());
  EXPECT_TRUE(tdx::ReplayAgainst(*log, *quote->td_report).matches[3]);
  auto ca_claims = ratls::ParseRaTlsClaims(*chain[1]);
  ASSERT_THAT(ca_claims, IsOk());
  EXPECT_EQ(ca_claims->usage, "app:ca");

  // Keys are fresh per call; without usage_ra_tls there is no quote.
  auto [s2, r2] = Call("/GetTlsKey", {{"subject", "x"}});
  ASSERT_EQ(s2, 200) << r2.dump();
  EXPECT_NE(r2["key"], r["key"]);
  auto plain = Chain(r2["certificate_chain"]);
  ASSERT_EQ(plain.size(), 3u);
  EXPECT_TRUE(ratls::ParseRaTlsClaims(*plain[0])->quote.empty());
}

TEST_F(DstackApiTest, TappdDeriveKeyIsDeterministicPerPath) {
  auto a1 = Call("/prpc/Tappd.DeriveKey", {{"path", "svc"}, {"subject", "svc"}});
  auto a2 = Call("/prpc/Tappd.DeriveKey", {{"path", "svc"}});
  auto b = Call("/prpc/Tappd.DeriveKey", {{"path", "other"}});
  ASSERT_EQ(a1.first, 200) << a1.second.dump();
  EXPECT_EQ(a1.second["key"], a2.second["key"]);
  EXPECT_NE(a1.second["key"], b.second["key"]);
  EXPECT_EQ(a1.second["certificate_chain"].size(), 3u);
  auto r = Call("/prpc/Tappd.DeriveKey", {{"path", "svc"}, {"random_seed", true}});
  ASSERT_EQ(r.first, 200);
  EXPECT_NE(r.second["key"], a1.second["key"]);
}

TEST_F(DstackApiTest, AttestReturnsAnEvidenceBundleWithGpuEvidenceBoundToTheReportData) {
  auto [s, r] = Call("/Attest", {{"report_data", "c0ffee"}});
  ASSERT_EQ(s, 200) << r.dump();
  auto bytes = core::HexDecode(r["attestation"].get<std::string>());
  ASSERT_THAT(bytes, IsOk());
  common::v1::EvidenceBundle b;
  ASSERT_TRUE(b.ParseFromString(core::ToString(*bytes)));
  EXPECT_TRUE(b.simulated());
  EXPECT_EQ(b.app_info().app_id(), std::string(20, '\xA1'));
  ASSERT_EQ(b.gpus_size(), 2);
  ratls::ReportData rd{};
  rd[0] = 0xc0;
  rd[1] = 0xff;
  rd[2] = 0xee;
  const auto nonce = ratls::GpuNonce(rd);
  EXPECT_EQ(b.gpus(1).nonce(), std::string(nonce.begin(), nonce.end()));
  auto quote = tdx::ParseQuote(core::AsBytes(b.tdx_quote()));
  ASSERT_THAT(quote, IsOk());
  EXPECT_EQ(quote->td_report->report_data[2], 0xee);
  auto [s2, r2] = Call("/Attest", {{"report_data", "00"}, {"skip_gpu_evidence", true}});
  ASSERT_EQ(s2, 200);
  EXPECT_EQ(r2["gpus"], 0);
}

TEST_F(DstackApiTest, TheTcpListenerServesOnlyTheKeyFreeMethods) {
  struct Case {
    const char* path;
    bool served;
  } cases[] = {
      {"/GetQuote", true},
      {"/Attest", true},
      {"/Info", true},
      {"/Version", true},
      {"/prpc/Tappd.TdxQuote", true},
      {"/prpc/Tappd.Info", true},
      {"/GetKey", false},
      {"/GetTlsKey", false},
      {"/EmitEvent", false},
      {"/Sign", false},
      {"/Verify", false},
      {"/prpc/Tappd.DeriveKey", false},
      {"/prpc/Tappd.RawQuote", false},
      {"/Nope", false},
      // Exact matches only: no case folding, prefixes, suffixes or dot segments.
      {"/getkey", false},
      {"/getquote", false},
      {"/GetQuote/", false},
      {"/GetQuote/../GetKey", false},
      {"//GetKey", false},
      {"GetQuote", false},
      {"", false},
  };
  const std::vector<uint8_t> rd(64, 0x5a);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.path);
    EXPECT_EQ(DstackApi::IsPublicPath(c.path), c.served);
    const HttpResponse r =
        api_->HandlePublic({"POST", c.path, "", Json{{"report_data", core::HexEncode(rd)}}.dump()});
    const Json body = Json::parse(r.body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << r.body;
    if (c.served) {
      EXPECT_EQ(r.status, 200) << r.body;
      EXPECT_FALSE(body.contains("error")) << r.body;
      // The same answer shape as the unix socket's.
      EXPECT_EQ(api_->Handle({"POST", c.path, "", "{}"}).status, 200);
    } else {
      EXPECT_EQ(r.status, 403) << r.body;
      EXPECT_THAT(body["error"].get<std::string>(),
                  HasSubstr("not served on the TCP listener: key material never leaves the "
                            "guest; use the unix socket"));
      EXPECT_FALSE(body.contains("key"));
    }
  }
  // A refused EmitEvent does not reach the log; the unix socket's does.
  const size_t before = log_->Size();
  EXPECT_EQ(
      api_->HandlePublic({"POST", "/EmitEvent", "", R"({"event":"x","payload":"00"})"}).status,
      403);
  EXPECT_EQ(log_->Size(), before);
  // Hostile paths are bounded and still give valid JSON.
  const HttpResponse odd =
      api_->HandlePublic({"POST", "/\xff\xfe" + std::string(500, 'k'), "", ""});
  EXPECT_EQ(odd.status, 403);
  const Json odd_body = Json::parse(odd.body, nullptr, false);
  ASSERT_TRUE(odd_body.is_object()) << odd.body;
  EXPECT_LT(odd_body["error"].get<std::string>().size(), 200u);
  // The answer of a served path is the unix socket's own: a quote for the report data.
  const HttpResponse q =
      api_->HandlePublic({"POST", "/GetQuote", "", Json{{"report_data", "abcd"}}.dump()});
  ASSERT_EQ(q.status, 200) << q.body;
  EXPECT_EQ(Json::parse(q.body)["report_data"], "abcd" + std::string(124, '0'));
}

}  // namespace
}  // namespace pml::guest
