#include "lib/tee/simulated_pki.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/key.h"
#include "lib/crypto/ossl.h"

namespace pml::tee {
namespace {

using ::pml::testing::IsOk;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using Json = nlohmann::json;

absl::Time TestNow() {
  return absl::FromCivil(absl::CivilSecond(2026, 2, 3, 4, 5, 6), absl::UTCTimeZone());
}

const SimulatedTdxPki& Pki() {
  // Built once per test binary; immutable, so sharing it between tests is safe.
  static const SimulatedTdxPki pki = [] {
    auto p = SimulatedTdxPki::Create();
    PML_CHECK(p.ok());
    return std::move(p).value();
  }();
  return pki;
}

std::vector<uint8_t> Spki(const X509& cert) {
  auto der = crypto::PublicKeyToDer(*X509_get0_pubkey(&cert));
  PML_CHECK(der.ok());
  return *der;
}

std::vector<uint8_t> TbsDer(const X509& cert) {
  unsigned char* der = nullptr;
  const int len = i2d_re_X509_tbs(const_cast<X509*>(&cert), &der);
  PML_CHECK(len > 0);
  std::vector<uint8_t> out(der, der + len);
  OPENSSL_free(der);
  return out;
}

std::string Subject(const X509& cert) {
  char buf[512] = {};
  X509_NAME_oneline(X509_get_subject_name(&cert), buf, sizeof(buf));
  return buf;
}

std::vector<std::string> ChainCommonNames(absl::string_view pem) {
  std::vector<std::string> out;
  crypto::BioPtr bio = crypto::MemBio(pem);
  while (true) {
    crypto::X509Ptr c(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (c == nullptr) {
      break;
    }
    char buf[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(c.get()), NID_commonName, buf, sizeof(buf));
    out.emplace_back(buf);
  }
  crypto::ClearOpensslErrors();
  return out;
}

std::string SharedDir() {
  // Read before any test starts a thread.
  const char* d = std::getenv("PML_SHARED_DIR");  // NOLINT(concurrency-mt-unsafe)
  return d != nullptr ? d : "../shared";
}

TEST(SimulatedTdxPkiTest, RootKeyIsTheFixedPinnedKey) {
  PML_ASSERT_OK_AND_ASSIGN(std::string pem, crypto::PublicKeyToPem(Pki().root_key()));
  EXPECT_EQ(pem, kSimulatedRootPublicKeyPem);
  const crypto::Sha256Digest spki_hash = crypto::Sha256(Spki(Pki().root_cert()));
  EXPECT_EQ(core::HexEncode(spki_hash), kSimulatedRootSpkiSha256Hex);
  // The scalar is SHA-256 of the public label.
  PML_ASSERT_OK_AND_ASSIGN(crypto::SecretBytes scalar,
                           crypto::PrivateKeyToScalar(Pki().root_key()));
  EXPECT_THAT(scalar.span(), ElementsAreArray(crypto::Sha256(kRootKeyLabel)));
}

TEST(SimulatedTdxPkiTest, CheckedInRootPemMatches) {
  PML_ASSERT_OK_AND_ASSIGN(std::string file,
                           core::ReadFile(absl::StrCat(PML_TEE_SOURCE_DIR, "/simulated_root.pem")));
  EXPECT_EQ(file, kSimulatedRootPublicKeyPem);
}

TEST(SimulatedTdxPkiTest, TwoInstancesAgreeOnKeysAndCertificateBodies) {
  PML_ASSERT_OK_AND_ASSIGN(SimulatedTdxPki other, SimulatedTdxPki::Create());
  const SimulatedTdxPki& a = Pki();
  // Every TBSCertificate (all but the randomized ECDSA signature) is identical.
  EXPECT_EQ(TbsDer(a.root_cert()), TbsDer(other.root_cert()));
  EXPECT_EQ(TbsDer(a.platform_ca_cert()), TbsDer(other.platform_ca_cert()));
  EXPECT_EQ(TbsDer(a.pck_cert()), TbsDer(other.pck_cert()));
  EXPECT_EQ(TbsDer(a.tcb_signing_cert()), TbsDer(other.tcb_signing_cert()));
  PML_ASSERT_OK_AND_ASSIGN(auto ak1, crypto::PublicKeyToDer(a.attestation_key()));
  PML_ASSERT_OK_AND_ASSIGN(auto ak2, crypto::PublicKeyToDer(other.attestation_key()));
  EXPECT_EQ(ak1, ak2);
  EXPECT_EQ(a.qe_mrsigner(), other.qe_mrsigner());
  // A certificate from one instance verifies under the other's issuer.
  EXPECT_EQ(
      X509_verify(const_cast<X509*>(&a.pck_cert()), X509_get0_pubkey(&other.platform_ca_cert())),
      1);
}

TEST(SimulatedTdxPkiTest, SubjectsSaySimulated) {
  for (const X509* c : {&Pki().root_cert(), &Pki().platform_ca_cert(), &Pki().pck_cert(),
                        &Pki().tcb_signing_cert()}) {
    EXPECT_THAT(Subject(*c), HasSubstr("PML SIMULATED")) << Subject(*c);
  }
  EXPECT_THAT(Subject(Pki().root_cert()), HasSubstr("CN=PML SIMULATED SGX Root CA"));
  EXPECT_THAT(Subject(Pki().pck_cert()), HasSubstr("SGX PCK Certificate"));
}

TEST(SimulatedTdxPkiTest, ChainLinksVerify) {
  const SimulatedTdxPki& p = Pki();
  EVP_PKEY* root = X509_get0_pubkey(&p.root_cert());
  EXPECT_EQ(X509_verify(const_cast<X509*>(&p.root_cert()), root), 1);
  EXPECT_EQ(X509_verify(const_cast<X509*>(&p.platform_ca_cert()), root), 1);
  EXPECT_EQ(X509_verify(const_cast<X509*>(&p.tcb_signing_cert()), root), 1);
  EXPECT_EQ(X509_verify(const_cast<X509*>(&p.pck_cert()), X509_get0_pubkey(&p.platform_ca_cert())),
            1);
  EXPECT_EQ(
      X509_check_issued(const_cast<X509*>(&p.platform_ca_cert()), const_cast<X509*>(&p.pck_cert())),
      X509_V_OK);
  EXPECT_THAT(ChainCommonNames(p.PckChainPem()),
              ElementsAre(std::string(kPckCommonName), std::string(kPlatformCaCommonName),
                          std::string(kRootCommonName)));
}

// The extension of the real PCK certificate in vector tdx-v4-phala-b0c06f (its DER value, as
// `openssl asn1parse` prints it). Encoding that platform's values must reproduce it byte for byte.
constexpr absl::string_view kRealSgxExtensionHex =
    "30820226301E060A2A864886F84D010D01010410811DCA2A26B952E85BB6448B097BA4FD30820163060A2A8648"
    "86F84D010D0102308201533010060B2A864886F84D010D0102010201033010060B2A864886F84D010D010202"
    "0201033010060B2A864886F84D010D0102030201023010060B2A864886F84D010D0102040201023010060B2A"
    "864886F84D010D0102050201043010060B2A864886F84D010D0102060201013010060B2A864886F84D010D01"
    "02070201003010060B2A864886F84D010D0102080201053010060B2A864886F84D010D0102090201003010060B"
    "2A864886F84D010D01020A0201003010060B2A864886F84D010D01020B0201003010060B2A864886F84D010D01"
    "020C0201003010060B2A864886F84D010D01020D0201003010060B2A864886F84D010D01020E0201003010060B"
    "2A864886F84D010D01020F0201003010060B2A864886F84D010D0102100201003010060B2A864886F84D010D01"
    "021102010B301F060B2A864886F84D010D0102120410030302020401000500000000000000003010060A2A8648"
    "86F84D010D0103040200003014060A2A864886F84D010D01040406B0C06F000000300F060A2A864886F84D010D"
    "01050A0101301E060A2A864886F84D010D0106041007828474603E7019DC930775FFE8CDD23044060A2A864886"
    "F84D010D010730363010060B2A864886F84D010D0107010101FF3010060B2A864886F84D010D0107020101FF30"
    "10060B2A864886F84D010D0107030101FF";

TEST(SimulatedTdxPkiTest, SgxExtensionEncodingMatchesIntelsByteForByte) {
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> ppid,
                           core::HexDecode("811DCA2A26B952E85BB6448B097BA4FD"));
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> pii,
                           core::HexDecode("07828474603E7019DC930775FFE8CDD2"));
  const std::vector<uint8_t> comps = {3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0};
  const std::vector<uint8_t> fmspc = {0xB0, 0xC0, 0x6F, 0, 0, 0};
  const std::vector<uint8_t> pce_id = {0, 0};
  EXPECT_EQ(absl::AsciiStrToUpper(
                core::HexEncode(EncodeSgxExtension(ppid, comps, 11, pce_id, fmspc, pii))),
            kRealSgxExtensionHex);
}

TEST(SimulatedTdxPkiTest, PckCertCarriesSimulatedFmspcInSgxExtension) {
  const X509& pck = Pki().pck_cert();
  ASN1_OBJECT* oid = OBJ_txt2obj("1.2.840.113741.1.13.1", 1);
  ASSERT_NE(oid, nullptr);
  const int idx = X509_get_ext_by_OBJ(&pck, oid, -1);
  ASN1_OBJECT_free(oid);
  ASSERT_GE(idx, 0);
  X509_EXTENSION* ext = X509_get_ext(&pck, idx);
  const ASN1_OCTET_STRING* data = X509_EXTENSION_get_data(ext);
  const std::vector<uint8_t> der(ASN1_STRING_get0_data(data),
                                 ASN1_STRING_get0_data(data) + ASN1_STRING_length(data));
  // SEQUENCE { OID .4, OCTET STRING FMSPC } exactly as Intel encodes it.
  const std::string hex = absl::AsciiStrToUpper(core::HexEncode(der));
  EXPECT_THAT(hex, HasSubstr(absl::StrCat("3014060A2A864886F84D010D01040406", kSimulatedFmspcHex)));
  EXPECT_THAT(hex, HasSubstr("3010060A2A864886F84D010D0103040200"));    // PCE-ID 0000
  EXPECT_THAT(hex, HasSubstr("3010060B2A864886F84D010D01021102010B"));  // PCESVN 11
  EXPECT_EQ(core::HexEncode(kSimulatedFmspc), absl::AsciiStrToLower(kSimulatedFmspcHex));
}

TEST(SimulatedTdxCollateralTest, JsonHasTheVectorsShapeAndKeyOrder) {
  PML_ASSERT_OK_AND_ASSIGN(SimulatedTdxCollateral c, Pki().MakeCollateral(TestNow()));
  const Json ours = Json::parse(c.ToJson());
  PML_ASSERT_OK_AND_ASSIGN(std::string vector_text,
                           core::ReadFile(absl::StrCat(
                               SharedDir(), "/vectors/tdx/tdx-v4-phala-b0c06f/collateral.json")));
  const nlohmann::ordered_json vec = nlohmann::ordered_json::parse(vector_text);
  const nlohmann::ordered_json ours_ordered = nlohmann::ordered_json::parse(c.ToJson());
  std::vector<std::string> want_keys, got_keys;
  for (const auto& [k, v] : vec.items()) {
    want_keys.push_back(k);
  }
  for (const auto& [k, v] : ours_ordered.items()) {
    got_keys.push_back(k);
  }
  EXPECT_EQ(got_keys, want_keys);
  for (const auto& [k, v] : vec.items()) {
    EXPECT_EQ(ours_ordered[k].type(), v.type()) << k;
  }
  EXPECT_EQ(ours["tcb_info"].get<std::string>(), c.tcb_info);
  EXPECT_EQ(ours["qe_identity"].get<std::string>(), c.qe_identity);
  EXPECT_EQ(ours["tcb_info_signature"].get<std::string>().size(), 128u);
  EXPECT_EQ(ours["pck_crl"].get<std::string>(), core::HexEncode(c.pck_crl));
  // Indented by one space, like the vectors.
  EXPECT_EQ(c.ToJson().substr(0, 26), "{\n \"pck_crl_issuer_chain\":");
}

TEST(SimulatedTdxCollateralTest, TcbInfoDescribesTheSimulatedPlatform) {
  PML_ASSERT_OK_AND_ASSIGN(SimulatedTdxCollateral c, Pki().MakeCollateral(TestNow()));
  const Json t = Json::parse(c.tcb_info);
  EXPECT_EQ(t["id"], "TDX");
  EXPECT_EQ(t["version"], 3);
  EXPECT_EQ(t["issueDate"], "2026-02-03T03:05:06Z");
  EXPECT_EQ(t["nextUpdate"], "2026-03-05T04:05:06Z");
  EXPECT_EQ(t["fmspc"], std::string(kSimulatedFmspcHex));
  EXPECT_EQ(t["pceId"], "0000");
  EXPECT_EQ(t["tcbType"], 0);
  EXPECT_EQ(t["tdxModule"]["mrsigner"], std::string(96, '0'));
  // The module identity for TEE_TCB_SVN[1] = 1 rates TEE_TCB_SVN[0] UpToDate.
  bool found = false;
  for (const auto& id : t["tdxModuleIdentities"]) {
    if (id["id"] != "TDX_01") {
      continue;
    }
    found = true;
    EXPECT_EQ(id["tcbLevels"][0]["tcb"]["isvsvn"], kSimulatedTeeTcbSvn[0]);
    EXPECT_EQ(id["tcbLevels"][0]["tcbStatus"], "UpToDate");
  }
  EXPECT_TRUE(found);
  ASSERT_EQ(t["tcbLevels"].size(), 2u);
  const Json& top = t["tcbLevels"][0];
  EXPECT_EQ(top["tcbStatus"], "UpToDate");
  EXPECT_EQ(top["tcb"]["pcesvn"], kSimulatedPceSvn);
  ASSERT_EQ(top["tcb"]["sgxtcbcomponents"].size(), 16u);
  for (size_t i = 0; i < 16; ++i) {
    EXPECT_EQ(top["tcb"]["sgxtcbcomponents"][i]["svn"], kSimulatedSgxTcbComponents[i]) << i;
  }
  EXPECT_EQ(top["tcb"]["tdxtcbcomponents"][2]["svn"], kSimulatedTeeTcbSvn[2]);
  EXPECT_EQ(t["tcbLevels"][1]["tcbStatus"], "OutOfDate");
  EXPECT_LT(t["tcbLevels"][1]["tcb"]["pcesvn"].get<int>(), kSimulatedPceSvn);
  // Compact JSON, as PCS emits it (no spaces or newlines to re-serialize differently).
  EXPECT_EQ(c.tcb_info.find('\n'), std::string::npos);
  EXPECT_EQ(c.tcb_info.find(": "), std::string::npos);
  EXPECT_THAT(c.tcb_info, ::testing::StartsWith("{\"id\":\"TDX\",\"version\":3,\"issueDate\":"));
}

TEST(SimulatedTdxCollateralTest, QeIdentityMatchesTheSimulatedQe) {
  PML_ASSERT_OK_AND_ASSIGN(SimulatedTdxCollateral c, Pki().MakeCollateral(TestNow()));
  const Json q = Json::parse(c.qe_identity);
  EXPECT_EQ(q["id"], "TD_QE");
  EXPECT_EQ(q["version"], 2);
  EXPECT_EQ(q["isvprodid"], kSimulatedQeIsvProdId);
  EXPECT_EQ(q["mrsigner"], absl::AsciiStrToUpper(core::HexEncode(Pki().qe_mrsigner())));
  EXPECT_EQ(q["tcbLevels"][0]["tcb"]["isvsvn"], kSimulatedQeIsvSvn);
  EXPECT_EQ(q["tcbLevels"][0]["tcbStatus"], "UpToDate");
  EXPECT_EQ(q["attributesMask"], "FBFFFFFFFFFFFFFF0000000000000000");
  EXPECT_EQ(q["issueDate"], "2026-02-03T03:05:06Z");
}

TEST(SimulatedTdxCollateralTest, JsonSignaturesVerifyUnderTheTcbSigningCert) {
  PML_ASSERT_OK_AND_ASSIGN(SimulatedTdxCollateral c, Pki().MakeCollateral(TestNow()));
  EVP_PKEY* signer = X509_get0_pubkey(&Pki().tcb_signing_cert());
  EXPECT_THAT(crypto::VerifyEcdsaRaw(*signer, crypto::Digest::kSha256, core::AsBytes(c.tcb_info),
                                     c.tcb_info_signature),
              IsOk());
  EXPECT_THAT(crypto::VerifyEcdsaRaw(*signer, crypto::Digest::kSha256, core::AsBytes(c.qe_identity),
                                     c.qe_identity_signature),
              IsOk());
  std::string tampered = c.tcb_info;
  tampered[tampered.find("UpToDate")] = 'u';
  EXPECT_FALSE(crypto::VerifyEcdsaRaw(*signer, crypto::Digest::kSha256, core::AsBytes(tampered),
                                      c.tcb_info_signature)
                   .ok());
  EXPECT_THAT(ChainCommonNames(c.tcb_info_issuer_chain),
              ElementsAre(std::string(kTcbSigningCommonName), std::string(kRootCommonName)));
  EXPECT_EQ(c.qe_identity_issuer_chain, c.tcb_info_issuer_chain);
  EXPECT_THAT(ChainCommonNames(c.pck_crl_issuer_chain),
              ElementsAre(std::string(kPlatformCaCommonName), std::string(kRootCommonName)));
}

void ExpectEmptyCrlFrom(const std::vector<uint8_t>& der, const X509& issuer) {
  const unsigned char* p = der.data();
  crypto::X509CrlPtr crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size())));
  ASSERT_NE(crl, nullptr);
  EXPECT_EQ(X509_CRL_verify(crl.get(), X509_get0_pubkey(&issuer)), 1);
  EXPECT_EQ(X509_NAME_cmp(X509_CRL_get_issuer(crl.get()), X509_get_subject_name(&issuer)), 0);
  // No entries: OpenSSL omits revokedCertificates, so the stack is absent (num -1) or empty.
  EXPECT_LE(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl.get())), 0);
  const time_t now = absl::ToTimeT(TestNow());
  time_t t = now;
  EXPECT_EQ(X509_cmp_time(X509_CRL_get0_lastUpdate(crl.get()), &t), -1);  // before now
  EXPECT_EQ(X509_cmp_time(X509_CRL_get0_nextUpdate(crl.get()), &t), 1);   // after now
  time_t late = now + time_t{31} * 24 * 3600;
  EXPECT_EQ(X509_cmp_time(X509_CRL_get0_nextUpdate(crl.get()), &late), -1);
}

TEST(SimulatedTdxCollateralTest, CrlsAreSignedEmptyAndCurrent) {
  PML_ASSERT_OK_AND_ASSIGN(SimulatedTdxCollateral c, Pki().MakeCollateral(TestNow()));
  ExpectEmptyCrlFrom(c.pck_crl, Pki().platform_ca_cert());
  ExpectEmptyCrlFrom(c.root_ca_crl, Pki().root_cert());
}

TEST(SimulatedTdxCollateralTest, PcsSplitFormHasTheVectorsFiles) {
  PML_ASSERT_OK_AND_ASSIGN(SimulatedTdxCollateral c, Pki().MakeCollateral(TestNow()));
  const std::string dir = absl::StrCat(::testing::TempDir(), "/pml_tee_split_", getpid());
  std::filesystem::remove_all(dir);
  ASSERT_THAT(c.WritePcsSplit(dir), IsOk());
  std::set<std::string> ours, want;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    ours.insert(e.path().filename().string());
  }
  for (const auto& e : std::filesystem::directory_iterator(
           absl::StrCat(SharedDir(), "/vectors/tdx/tdx-v4-phala-b0c06f/collateral"))) {
    want.insert(e.path().filename().string());
  }
  EXPECT_EQ(ours, want);
  PML_ASSERT_OK_AND_ASSIGN(std::string tcb, core::ReadFile(dir + "/tcb_info.json"));
  EXPECT_EQ(tcb, absl::StrCat("{\"tcbInfo\":", c.tcb_info, ",\"signature\":\"",
                              core::HexEncode(c.tcb_info_signature), "\"}"));
  const Json qe = Json::parse(core::ReadFile(dir + "/qe_identity.json").value());
  EXPECT_EQ(qe["enclaveIdentity"]["id"], "TD_QE");
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> crl, core::ReadFileBytes(dir + "/pck_crl.der"));
  EXPECT_EQ(crl, c.pck_crl);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace pml::tee
