// `pml-guest-agent tls-key`'s client: the request it sends, the checks on the agent's answer, and
// the call itself against a UnixHttpServer on a temp socket (the real agent: guest_agent_test.py).

#include "services/guest-agent/tls_key_client.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/cert_builder.h"
#include "lib/crypto/key.h"
#include "lib/crypto/x509.h"
#include "services/guest-agent/unix_http.h"

namespace pml::guest {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using Json = nlohmann::json;

std::string Pem(const X509& cert) {
  auto pem = crypto::CertificateToPem(cert);
  EXPECT_THAT(pem, IsOk());
  return pem.ok() ? *pem : std::string();
}

std::string KeyPem(const EVP_PKEY& key) {
  auto pem = crypto::PrivateKeyToPem(key);
  EXPECT_THAT(pem, IsOk());
  return pem.ok() ? std::string(pem->span().begin(), pem->span().end()) : std::string();
}

std::string ReadAll(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// What the agent answers: a key, its leaf under a CA, the CA.
struct Issued {
  crypto::EvpPkeyPtr ca_key, key, other_key;
  crypto::X509Ptr ca, leaf;
  Json answer;
};

Issued Issue() {
  Issued i;
  i.ca_key = *crypto::GenerateEcKey(crypto::Curve::kP256);
  i.key = *crypto::GenerateEcKey(crypto::Curve::kP256);
  i.other_key = *crypto::GenerateEcKey(crypto::Curve::kP256);
  crypto::CertSpec ca;
  ca.common_name = "app ca";
  ca.is_ca = true;
  i.ca = *crypto::IssueCertificate(ca, *i.ca_key, *i.ca_key, nullptr);
  crypto::CertSpec leaf;
  leaf.common_name = "app.example";
  leaf.dns_sans = {"app.example"};
  leaf.server_auth = true;
  i.leaf = *crypto::IssueCertificate(leaf, *i.key, *i.ca_key, i.ca.get());
  i.answer = {{"key", KeyPem(*i.key)}, {"certificate_chain", {Pem(*i.leaf), Pem(*i.ca)}}};
  return i;
}

TEST(TlsKeyRequestJsonTest, CarriesTheOptionsAsTheSdkSendsThem) {
  TlsKeyClientOptions o;
  o.subject = "app.example";
  o.alt_names = {"app.example", "10.0.2.15"};
  o.ra_tls = true;
  const Json j = Json::parse(TlsKeyRequestJson(o));
  EXPECT_EQ(j["subject"], "app.example");
  EXPECT_EQ(j["alt_names"], Json({"app.example", "10.0.2.15"}));
  EXPECT_EQ(j["usage_ra_tls"], true);
  EXPECT_EQ(j["usage_server_auth"], true);
  o.alt_names.clear();
  o.ra_tls = false;
  const Json plain = Json::parse(TlsKeyRequestJson(o));
  EXPECT_FALSE(plain.contains("alt_names"));
  EXPECT_EQ(plain["usage_ra_tls"], false);
}

TEST(ParseTlsKeyResponseTest, ReturnsTheKeyAndTheChainLeafFirst) {
  Issued i = Issue();
  // Text around a certificate's PEM does not reach the file.
  i.answer["certificate_chain"][1] = "comment\n" + Pem(*i.ca) + "trailer";
  auto files = ParseTlsKeyResponse(i.answer.dump());
  ASSERT_THAT(files, IsOk());
  EXPECT_EQ(files->chain_pem, Pem(*i.leaf) + Pem(*i.ca));
  auto key = crypto::PrivateKeyFromPem(
      std::string(files->key_pem.span().begin(), files->key_pem.span().end()));
  ASSERT_THAT(key, IsOk());
  EXPECT_EQ(*crypto::PublicKeyToDer(**key), *crypto::PublicKeyToDer(*i.key));
  EXPECT_THAT(std::string(files->key_pem.span().begin(), files->key_pem.span().end()),
              HasSubstr("-----BEGIN PRIVATE KEY-----"));
}

TEST(ParseTlsKeyResponseTest, RefusesAnswersThatAreNotAKeyAndItsChain) {
  const Issued i = Issue();
  const std::string key_pem = i.answer["key"];
  auto with = [&](const char* field, const Json& value) {
    Json j = i.answer;
    j[field] = value;
    return j.dump();
  };
  Json no_key = i.answer;
  no_key.erase("key");
  struct Case {
    const char* name;
    std::string body;
    const char* message;
  } cases[] = {
      {"not json", "{\"key\":", "not a JSON object"},
      {"an array", "[]", "not a JSON object"},
      {"no key", no_key.dump(), "key: want a PEM string"},
      {"key not a string", with("key", 7), "key: want a PEM string"},
      {"key not PEM", with("key", "-----BEGIN PRIVATE KEY-----\nAAAA\n"), "key: not a PEM"},
      {"no chain", with("certificate_chain", Json::array()), "certificate_chain: want 1 to 8"},
      {"chain not an array", with("certificate_chain", Pem(*i.leaf)), "certificate_chain"},
      {"chain too long", with("certificate_chain", Json(std::vector<std::string>(9, Pem(*i.ca)))),
       "want 1 to 8"},
      {"element not a string", with("certificate_chain", {Pem(*i.leaf), 3}),
       "certificate_chain[1]: want a PEM string"},
      {"element not PEM", with("certificate_chain", {"nope"}),
       "certificate_chain[0]: want one PEM certificate"},
      {"two in one element", with("certificate_chain", {Pem(*i.leaf) + Pem(*i.ca)}),
       "certificate_chain[0]: want one PEM certificate"},
      {"leaf of another key", with("key", KeyPem(*i.other_key)), "not the key's certificate"},
      {"leaf last", with("certificate_chain", {Pem(*i.ca), Pem(*i.leaf)}),
       "not the key's certificate"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(ParseTlsKeyResponse(c.body),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr(c.message), Not(HasSubstr("PRIVATE KEY")))));
  }
}

class RequestTlsKeyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat("pml-tlskey-", getpid(), "-", reinterpret_cast<uintptr_t>(this) % 100000);
    std::filesystem::create_directories(dir_);
    options_.socket_path = (dir_ / "dstack.sock").string();
    options_.subject = "app.example";
    options_.alt_names = {"app.example"};
    options_.ra_tls = true;
    options_.timeout = absl::Seconds(10);
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }
  // Serves `response` for every request, recording the last one.
  void Serve(HttpResponse response) {
    UnixHttpServer::Options o;
    o.socket_path = options_.socket_path;
    auto s = UnixHttpServer::Start(o, [this, response](const HttpRequest& r) {
      last_path_ = r.path;
      last_body_ = r.body;
      return response;
    });
    ASSERT_THAT(s, IsOk());
    server_ = *std::move(s);
  }

  std::filesystem::path dir_;
  TlsKeyClientOptions options_;
  std::unique_ptr<UnixHttpServer> server_;
  std::string last_path_, last_body_;
};

TEST_F(RequestTlsKeyTest, PostsGetTlsKeyAndWritesTheFiles) {
  const Issued i = Issue();
  Serve({200, "application/json", i.answer.dump()});
  auto files = RequestTlsKey(options_);
  ASSERT_THAT(files, IsOk());
  EXPECT_EQ(last_path_, "/GetTlsKey");
  EXPECT_EQ(Json::parse(last_body_), Json::parse(TlsKeyRequestJson(options_)));
  const auto cert_path = dir_ / "chain.pem";
  std::ofstream(cert_path) << "old";
  ASSERT_THAT(WriteTlsKeyFiles(*files, (dir_ / "key.pem").string(), cert_path.string()), IsOk());
  struct stat st {};
  ASSERT_EQ(stat((dir_ / "key.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  ASSERT_EQ(stat(cert_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644);
  EXPECT_EQ(ReadAll(cert_path), Pem(*i.leaf) + Pem(*i.ca));
  auto key = crypto::PrivateKeyFromPem(ReadAll(dir_ / "key.pem"));
  ASSERT_THAT(key, IsOk());
  EXPECT_EQ(*crypto::PublicKeyToDer(**key), *crypto::PublicKeyToDer(*i.key));
}

TEST_F(RequestTlsKeyTest, AnAgentErrorKeepsItsCodeAndMessage) {
  struct Case {
    int http;
    absl::StatusCode code;
  } cases[] = {{400, absl::StatusCode::kInvalidArgument},
               {403, absl::StatusCode::kPermissionDenied},
               {409, absl::StatusCode::kFailedPrecondition},
               {500, absl::StatusCode::kInternal}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.http);
    server_.reset();
    Serve({c.http, "application/json", R"({"error":"alt_names: bad name"})"});
    EXPECT_THAT(
        RequestTlsKey(options_),
        StatusIs(c.code, HasSubstr(absl::StrCat("HTTP ", c.http, ": alt_names: bad name"))));
  }
  server_.reset();
  Serve({200, "application/json", "{}"});
  EXPECT_THAT(RequestTlsKey(options_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("key")));
}

TEST_F(RequestTlsKeyTest, NoAgentIsUnavailable) {
  EXPECT_THAT(RequestTlsKey(options_),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr(options_.socket_path)));
}

TEST(WriteTlsKeyFilesTest, NamesAPathItCannotWrite) {
  TlsKeyFiles files;
  files.chain_pem = "x";
  EXPECT_THAT(WriteTlsKeyFiles(files, "/nonexistent-dir/key.pem", "/nonexistent-dir/c.pem"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent-dir")));
}

}  // namespace
}  // namespace pml::guest
