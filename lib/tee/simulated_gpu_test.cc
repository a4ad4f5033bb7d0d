#include "lib/tee/simulated_gpu.h"

#include <cstddef>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <openssl/x509.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/key.h"
#include "lib/crypto/x509.h"
#include "lib/crypto/x509_ext.h"

namespace pml::tee {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

// Offsets of the report (spec §2), computed here independently of the simulator.
constexpr size_t kBlocksOffset = 45;
constexpr size_t kBlockSize = 55;
constexpr size_t kResponderNonceOffset = kBlocksOffset + 64 * kBlockSize;  // 3565
constexpr size_t kOpaqueLengthOffset = kResponderNonceOffset + 32;         // 3597
constexpr size_t kOpaqueOffset = kOpaqueLengthOffset + 2;                  // 3599

uint16_t Le16(const std::vector<uint8_t>& b, size_t off) {
  return static_cast<uint16_t>(b.at(off) | b.at(off + 1) << 8);
}
uint32_t Le24(const std::vector<uint8_t>& b, size_t off) {
  return static_cast<uint32_t>(b.at(off) | b.at(off + 1) << 8 | b.at(off + 2) << 16);
}
uint32_t Le32(const std::vector<uint8_t>& b, size_t off) {
  return static_cast<uint32_t>(Le24(b, off)) | static_cast<uint32_t>(b.at(off + 3)) << 24;
}
std::vector<uint8_t> Slice(const std::vector<uint8_t>& b, size_t off, size_t n) {
  EXPECT_LE(off + n, b.size());
  return std::vector<uint8_t>(b.begin() + static_cast<std::ptrdiff_t>(off),
                              b.begin() + static_cast<std::ptrdiff_t>(off + n));
}

std::vector<uint8_t> TestNonce(uint8_t base = 0x10) {
  std::vector<uint8_t> n(32);
  for (size_t i = 0; i < n.size(); ++i) {
    n[i] = static_cast<uint8_t>(base + i);
  }
  return n;
}

struct Tlv {
  uint16_t type;
  std::vector<uint8_t> value;
};
// The opaque TLVs of a report, read with plain offset arithmetic; fails the test on overrun.
std::vector<Tlv> OpaqueTlvs(const std::vector<uint8_t>& report) {
  std::vector<Tlv> out;
  const size_t len = Le16(report, kOpaqueLengthOffset);
  EXPECT_EQ(kOpaqueOffset + len + 96, report.size()) << "no trailing bytes after the signature";
  size_t off = kOpaqueOffset;
  while (off < kOpaqueOffset + len) {
    const uint16_t t = Le16(report, off);
    const uint16_t l = Le16(report, off + 2);
    EXPECT_LE(off + 4 + l, kOpaqueOffset + len);
    out.push_back({t, Slice(report, off + 4, l)});
    off += 4 + l;
  }
  EXPECT_EQ(off, kOpaqueOffset + len);
  return out;
}
std::vector<uint16_t> Types(const std::vector<Tlv>& tlvs) {
  std::vector<uint16_t> out;
  out.reserve(tlvs.size());
  for (const Tlv& t : tlvs) {
    out.push_back(t.type);
  }
  return out;
}
std::vector<uint8_t> Find(const std::vector<Tlv>& tlvs, uint16_t type) {
  for (const Tlv& t : tlvs) {
    if (t.type == type) {
      return t.value;
    }
  }
  ADD_FAILURE() << "no opaque type " << type;
  return {};
}

// NVIDIA's VBIOS decoding (spec §2, NVAT): reverse the bytes, take the hex of the second half
// and the two characters just before the middle, split in pairs, upper case.
std::string NvidiaVbiosDecode(const std::vector<uint8_t>& raw) {
  std::vector<uint8_t> rev(raw.rbegin(), raw.rend());
  const std::string hex = core::HexEncode(rev);
  const size_t mid = hex.size() / 2;
  const std::string s = absl::AsciiStrToUpper(hex.substr(mid) + hex.substr(mid - 2, 2));
  std::vector<std::string> pairs;
  for (size_t i = 0; i < s.size(); i += 2) {
    pairs.push_back(s.substr(i, 2));
  }
  return absl::StrJoin(pairs, ".");
}

std::unique_ptr<SimulatedGpu> MakeGpu(const SimulatedGpuOptions& options = {}) {
  auto gpu = SimulatedGpu::Create(options);
  PML_CHECK(gpu.ok());
  return std::move(gpu).value();
}

std::vector<crypto::X509Ptr> Chain(const SimulatedGpu& gpu) {
  auto certs = crypto::ParsePemCertificates(gpu.CertChainPem());
  PML_CHECK(certs.ok());
  return std::move(certs).value();
}

std::vector<uint8_t> TbsDer(const X509& cert) {
  unsigned char* p = nullptr;
  const int n = i2d_re_X509_tbs(const_cast<X509*>(&cert), &p);
  PML_CHECK(n > 0);
  std::vector<uint8_t> out(p, p + n);
  OPENSSL_free(p);
  return out;
}

std::vector<uint8_t> Spki(const X509& cert) {
  auto der = crypto::PublicKeyToDer(*X509_get0_pubkey(&cert));
  PML_CHECK(der.ok());
  return *der;
}

// ---- PKI.

TEST(SimulatedGpuPkiTest, RootKeyIsThePinnedKeyAndFile) {
  auto pki = SimulatedGpuPki::Create();
  ASSERT_THAT(pki.status(), IsOk());
  auto pem = crypto::PublicKeyToPem(pki->root_key());
  ASSERT_THAT(pem.status(), IsOk());
  EXPECT_EQ(*pem, kSimulatedGpuRootPublicKeyPem);
  auto spki = crypto::SpkiSha256(pki->root_cert());
  ASSERT_THAT(spki.status(), IsOk());
  EXPECT_EQ(core::HexEncode(*spki), kSimulatedGpuRootSpkiSha256Hex);
  auto file = core::ReadFile(absl::StrCat(PML_TEE_SOURCE_DIR, "/simulated_gpu_root.pem"));
  ASSERT_THAT(file.status(), IsOk());
  EXPECT_EQ(*file, kSimulatedGpuRootPublicKeyPem);
}

TEST(SimulatedGpuPkiTest, ChainHasNvidiasShapeAndVerifiesToTheSimulatedRoot) {
  auto gpu = MakeGpu();
  const std::vector<crypto::X509Ptr> chain = Chain(*gpu);
  ASSERT_EQ(chain.size(), 5u);  // nvtrust requires exactly 5
  std::vector<std::string> cns;
  for (const auto& c : chain) {
    cns.push_back(crypto::SubjectCommonName(*c));
    EXPECT_THAT(crypto::NameToString(*X509_get_subject_name(c.get())), HasSubstr("PML SIMULATED"));
    auto v = crypto::CertificateValidity(*c);
    ASSERT_THAT(v.status(), IsOk());
    EXPECT_EQ(absl::FormatTime("%Y-%m-%d", v->not_after, absl::UTCTimeZone()), "9999-12-31");
    EXPECT_EQ(X509_get_signature_nid(c.get()), NID_ecdsa_with_SHA384);
    EXPECT_EQ(EVP_PKEY_get_bits(X509_get0_pubkey(c.get())), 384);
  }
  EXPECT_THAT(
      cns, ElementsAre("GH100 A01 GSP FMC LF (PML SIMULATED)", "GH100 A01 GSP BROM (PML SIMULATED)",
                       "PML SIMULATED NVIDIA GH100 Provisioner ICA 1",
                       "PML SIMULATED NVIDIA GH100 Identity",
                       "PML SIMULATED NVIDIA Device Identity CA"));
  for (size_t i = 0; i + 1 < chain.size(); ++i) {
    EXPECT_THAT(
        crypto::VerifyCertificateSignature(*chain[i], *X509_get0_pubkey(chain[i + 1].get())),
        IsOk())
        << i;
  }
  auto path =
      crypto::VerifyChainToAnchor(chain, *chain.back(), {.at = std::nullopt, .strict = true});
  EXPECT_THAT(path.status(), IsOk());
  // The leaf is what signs reports.
  EXPECT_EQ(Spki(*chain[0]), Spki(gpu->attestation_cert()));
}

TEST(SimulatedGpuPkiTest, LeafCarriesTheHopperFwidExtension) {
  auto gpu = MakeGpu();
  const std::vector<crypto::X509Ptr> chain = Chain(*gpu);
  auto ext = crypto::FindExtension(*chain[0], kHopperFwidOid);
  ASSERT_THAT(ext.status(), IsOk());
  ASSERT_TRUE(ext->has_value());
  const std::vector<uint8_t>& v = **ext;
  // SEQUENCE { INTEGER 1, SubjectPublicKeyInfo (device identity key), SEQUENCE { sha384, OCTET
  // STRING[48] } }, as in real H100 leaves.
  crypto::DerReader outer(v);
  auto seq = outer.Expect(crypto::kDerSequence, "fwid");
  ASSERT_THAT(seq.status(), IsOk());
  EXPECT_TRUE(outer.empty());
  crypto::DerReader r(seq->content);
  auto version = r.Expect(crypto::kDerInteger, "version");
  ASSERT_THAT(version.status(), IsOk());
  EXPECT_THAT(version->content, ElementsAre(1));
  auto spki = r.Expect(crypto::kDerSequence, "spki");
  ASSERT_THAT(spki.status(), IsOk());
  EXPECT_THAT(spki->raw, ElementsAreArray(Spki(*chain[1])));
  auto digest = r.Expect(crypto::kDerSequence, "digest");
  ASSERT_THAT(digest.status(), IsOk());
  EXPECT_TRUE(r.empty());
  crypto::DerReader d(digest->content);
  auto oid = d.Expect(crypto::kDerOid, "alg");
  ASSERT_THAT(oid.status(), IsOk());
  EXPECT_EQ(*crypto::DerOidToString(oid->content), "2.16.840.1.101.3.4.2.2");
  auto value = d.Expect(crypto::kDerOctetString, "value");
  ASSERT_THAT(value.status(), IsOk());
  EXPECT_THAT(value->content, ElementsAreArray(gpu->fwid()));
  // What both NVIDIA verifiers read: the last 48 bytes.
  EXPECT_THAT(Slice(v, v.size() - 48, 48), ElementsAreArray(gpu->fwid()));
  EXPECT_EQ(gpu->fwid(), DefaultSimulatedGpuFwid(gpu->options().vbios_version));
}

TEST(SimulatedGpuPkiTest, LeafSanHasNvidiasOtherNameForm) {
  auto gpu = MakeGpu();
  auto san = crypto::FindExtension(gpu->attestation_cert(), "2.5.29.17");
  ASSERT_THAT(san.status(), IsOk());
  ASSERT_TRUE(san->has_value());
  const std::string text = core::ToString(**san);
  EXPECT_THAT(text, HasSubstr("PML-SIMULATED:GH100:"));
}

// ---- Report layout.

TEST(SimulatedGpuReportTest, LayoutAtTheSpecOffsets) {
  auto gpu = MakeGpu();
  const std::vector<uint8_t> nonce = TestNonce();
  auto report_or = gpu->GetReport(nonce);
  ASSERT_THAT(report_or.status(), IsOk());
  const std::vector<uint8_t>& r = *report_or;

  // Request.
  EXPECT_THAT(Slice(r, 0, 4), ElementsAre(0x11, 0xE0, 0x01, 0xFF));
  EXPECT_EQ(Slice(r, 4, 32), nonce);
  EXPECT_EQ(r[36], 0x00);
  // Response header.
  EXPECT_THAT(Slice(r, 37, 5), ElementsAre(0x11, 0x60, 0x00, 0x00, 64));
  EXPECT_EQ(Le24(r, 42), 64u * 55u);
  // Blocks.
  const GpuMeasurements& m = gpu->measurements();
  EXPECT_EQ(m, DefaultSimulatedGpuMeasurements("580.159.04-sim", "96.00.9F.00.04"));
  for (size_t i = 0; i < 64; ++i) {
    const size_t off = kBlocksOffset + i * kBlockSize;
    SCOPED_TRACE(i);
    EXPECT_EQ(r[off], i + 1);     // index
    EXPECT_EQ(r[off + 1], 0x01);  // DMTF
    EXPECT_EQ(Le16(r, off + 2), 51);
    EXPECT_EQ(r[off + 4], 0x01);  // value type
    EXPECT_EQ(Le16(r, off + 5), 48);
    EXPECT_THAT(Slice(r, off + 7, 48), ElementsAreArray(m[i]));
    EXPECT_EQ(m[i] == GpuMeasurement{}, i >= kGpuActiveMeasurements);
  }
  // Responder nonce is not ours.
  EXPECT_NE(Slice(r, kResponderNonceOffset, 32), nonce);

  const std::vector<Tlv> tlvs = OpaqueTlvs(r);
  // Driver 595's order (vector h100nvl-595.71.05-azure-nras).
  EXPECT_THAT(Types(tlvs),
              ElementsAre(6, 14, 15, 16, 17, 18, 19, 3, 4, 12, 13, 11, 20, 21, 34, 36));
  const std::string driver = core::ToString(Find(tlvs, 3));
  EXPECT_EQ(driver, std::string("580.159.04-sim\0", 15));
  EXPECT_THAT(Find(tlvs, 6), ElementsAre(0x00, 0x9F, 0x00, 0x96, 0x04, 0, 0, 0));
  EXPECT_EQ(NvidiaVbiosDecode(Find(tlvs, 6)), "96.00.9F.00.04");
  EXPECT_THAT(Find(tlvs, 4), ElementsAre(0x80, 0x01, 0, 0, 0, 0, 0, 0));
  EXPECT_THAT(Find(tlvs, 11), ElementsAre(0x55));
  EXPECT_THAT(Find(tlvs, 21), ElementsAre(0x55));
  EXPECT_THAT(Find(tlvs, 34), ElementsAre(0x01, 0x00));
  EXPECT_THAT(Find(tlvs, 36), ElementsAre(0x00, 0x00));
  EXPECT_THAT(Find(tlvs, 14), ElementsAre(0x08, 0x05, 0x00, 0x00));
  EXPECT_EQ(core::ToString(Find(tlvs, 15)), std::string("886\0\0\0\0\0\0", 9));
  EXPECT_EQ(core::ToString(Find(tlvs, 17)), std::string("PSIM\0", 5));
  EXPECT_EQ(core::ToString(Find(tlvs, 18)), std::string("0000\0", 5));
  const std::vector<uint8_t> msrscnt = Find(tlvs, 12);
  ASSERT_EQ(msrscnt.size(), 256u);
  for (size_t i = 0; i < 64; ++i) {
    EXPECT_EQ(Le32(msrscnt, 4 * i), i < kGpuActiveMeasurements ? 1u : 0u) << i;
  }
}

TEST(SimulatedGpuReportTest, SignatureVerifiesOverTheExactSignedBytes) {
  auto gpu = MakeGpu();
  auto r = gpu->GetReport(TestNonce());
  ASSERT_THAT(r.status(), IsOk());
  const std::vector<crypto::X509Ptr> chain = Chain(*gpu);
  const EVP_PKEY& leaf_key = *X509_get0_pubkey(chain[0].get());
  const std::vector<uint8_t> signed_bytes(r->begin(), r->end() - 96);
  const std::vector<uint8_t> sig(r->end() - 96, r->end());
  EXPECT_THAT(crypto::VerifyEcdsaRaw(leaf_key, crypto::Digest::kSha384, signed_bytes, sig), IsOk());

  // Every signed region matters: request, blocks, responder nonce, opaque data.
  for (size_t off : {size_t{3}, size_t{20}, size_t{100}, kResponderNonceOffset, r->size() - 97}) {
    std::vector<uint8_t> tampered = signed_bytes;
    tampered[off] ^= 0x01;
    EXPECT_THAT(crypto::VerifyEcdsaRaw(leaf_key, crypto::Digest::kSha384, tampered, sig),
                StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_))
        << off;
  }
  // Not with another GPU's key.
  SimulatedGpuOptions other;
  other.index = 1;
  auto gpu1 = MakeGpu(other);
  EXPECT_FALSE(
      crypto::VerifyEcdsaRaw(gpu1->attestation_key(), crypto::Digest::kSha384, signed_bytes, sig)
          .ok());
}

TEST(SimulatedGpuReportTest, FwidInReportEqualsLeafFwid) {
  SimulatedGpuOptions o;
  o.fwid = crypto::Sha384("some other firmware");
  auto gpu = MakeGpu(o);
  auto r = gpu->GetReport(TestNonce());
  ASSERT_THAT(r.status(), IsOk());
  auto ext = crypto::FindExtension(*Chain(*gpu)[0], kHopperFwidOid);
  ASSERT_THAT(ext.status(), IsOk());
  ASSERT_TRUE(ext->has_value());
  const std::vector<uint8_t> cert_fwid = Slice(**ext, (*ext)->size() - 48, 48);
  EXPECT_EQ(Find(OpaqueTlvs(*r), 20), cert_fwid);
  EXPECT_THAT(cert_fwid, ElementsAreArray(*o.fwid));
}

TEST(SimulatedGpuReportTest, WithoutFwidTheFieldIsAbsent) {
  SimulatedGpuOptions o;
  o.include_fwid = false;
  auto r = MakeGpu(o)->GetReport(TestNonce());
  ASSERT_THAT(r.status(), IsOk());
  EXPECT_THAT(Types(OpaqueTlvs(*r)), ::testing::Not(::testing::Contains(20)));
}

TEST(SimulatedGpuReportTest, NonceIsEchoedAndChangesTheResponderNonce) {
  auto gpu = MakeGpu();
  auto a = gpu->GetReport(TestNonce(0x10));
  auto b = gpu->GetReport(TestNonce(0x80));
  ASSERT_THAT(a.status(), IsOk());
  ASSERT_THAT(b.status(), IsOk());
  EXPECT_EQ(Slice(*a, 4, 32), TestNonce(0x10));
  EXPECT_EQ(Slice(*b, 4, 32), TestNonce(0x80));
  EXPECT_NE(Slice(*a, kResponderNonceOffset, 32), Slice(*b, kResponderNonceOffset, 32));
}

TEST(SimulatedGpuReportTest, DeterministicAcrossInstances) {
  auto a = MakeGpu();
  auto b = MakeGpu();
  auto ra = a->GetReport(TestNonce());
  auto rb = b->GetReport(TestNonce());
  ASSERT_THAT(ra.status(), IsOk());
  ASSERT_THAT(rb.status(), IsOk());
  ASSERT_EQ(ra->size(), rb->size());
  EXPECT_TRUE(std::equal(ra->begin(), ra->end() - 96, rb->begin()));
  const auto ca = Chain(*a);
  const auto cb = Chain(*b);
  ASSERT_EQ(ca.size(), cb.size());
  for (size_t i = 0; i < ca.size(); ++i) {
    EXPECT_EQ(TbsDer(*ca[i]), TbsDer(*cb[i])) << i;
  }
  // Another index: other device keys and serials, same CAs, same firmware (FWID).
  SimulatedGpuOptions o;
  o.index = 3;
  auto c = MakeGpu(o);
  const auto cc = Chain(*c);
  EXPECT_NE(Spki(*cc[0]), Spki(*ca[0]));
  EXPECT_NE(Spki(*cc[1]), Spki(*ca[1]));
  EXPECT_NE(crypto::SerialNumber(*cc[0]), crypto::SerialNumber(*ca[0]));
  for (size_t i = 2; i < ca.size(); ++i) {
    EXPECT_EQ(TbsDer(*cc[i]), TbsDer(*ca[i])) << i;
  }
  EXPECT_EQ(c->fwid(), a->fwid());
}

TEST(SimulatedGpuReportTest, SharedPkiGivesIdenticalCaCertificates) {
  auto pki = SimulatedGpuPki::Create();
  ASSERT_THAT(pki.status(), IsOk());
  auto shared = std::make_shared<const SimulatedGpuPki>(std::move(pki).value());
  SimulatedGpuOptions o0, o1;
  o1.index = 1;
  auto g0 = SimulatedGpu::Create(o0, shared);
  auto g1 = SimulatedGpu::Create(o1, shared);
  ASSERT_THAT(g0.status(), IsOk());
  ASSERT_THAT(g1.status(), IsOk());
  const std::string& p0 = (*g0)->CertChainPem();
  const std::string& p1 = (*g1)->CertChainPem();
  EXPECT_EQ(p0.substr(p0.size() - shared->ca_chain_pem().size()), shared->ca_chain_pem());
  EXPECT_EQ(p1.substr(p1.size() - shared->ca_chain_pem().size()), shared->ca_chain_pem());
}

TEST(SimulatedGpuReportTest, ConfidentialComputingOffIsRefused) {
  SimulatedGpuOptions o;
  o.cc_mode = false;
  auto gpu = MakeGpu(o);
  EXPECT_THAT(gpu->GetReport(TestNonce()), StatusIs(absl::StatusCode::kFailedPrecondition,
                                                    HasSubstr("confidential computing is off")));
}

TEST(SimulatedGpuReportTest, PpcieReportsProtectedPcieAndSwitchPdis) {
  SimulatedGpuOptions o;
  o.cc_mode = false;  // PPCIe GPUs run with CC off and multi-GPU mode on; NVML still attests
  o.ppcie = true;
  auto r = MakeGpu(o)->GetReport(TestNonce());
  ASSERT_THAT(r.status(), IsOk());
  const std::vector<Tlv> tlvs = OpaqueTlvs(*r);
  // Driver 590's PPCIe order (vector hgx-h100-ppcie-8gpu-4nvswitch-590.12).
  EXPECT_THAT(Types(tlvs),
              ElementsAre(6, 14, 15, 16, 17, 18, 19, 3, 4, 12, 13, 11, 20, 21, 22, 34, 36));
  EXPECT_THAT(Find(tlvs, 21), ElementsAre(0xAA));
  EXPECT_THAT(Find(tlvs, 36), ElementsAre(0x02, 0x00));
  const std::vector<uint8_t> pdis = Find(tlvs, 22);
  ASSERT_EQ(pdis.size(), 18u * 8u);
  std::set<std::vector<uint8_t>> unique;
  for (size_t i = 0; i < 18; ++i) {
    std::vector<uint8_t> p = Slice(pdis, 8 * i, 8);
    if (p != std::vector<uint8_t>(8, 0)) {
      unique.insert(p);
    }
  }
  EXPECT_EQ(unique.size(), 4u);
}

TEST(SimulatedGpuReportTest, RejectsBadNonceAndOptions) {
  auto gpu = MakeGpu();
  EXPECT_THAT(gpu->GetReport(std::vector<uint8_t>(31)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nonce")));
  SimulatedGpuOptions bad_vbios;
  bad_vbios.vbios_version = "96.00.9F.00";
  EXPECT_THAT(SimulatedGpu::Create(bad_vbios).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("vbios_version")));
  SimulatedGpuOptions bad_driver;
  bad_driver.driver_version = "";
  EXPECT_THAT(SimulatedGpu::Create(bad_driver).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("driver_version")));
  SimulatedGpuOptions bad_pdis;
  bad_pdis.switch_pdis = {1, 2, 3};
  EXPECT_THAT(SimulatedGpu::Create(bad_pdis).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("switch_pdis")));
}

TEST(SimulatedGpuVbiosTest, EncodesAsRealGpus) {
  // Real encodings (vectors h100nvl-595.71.05-azure-nras, hgx-h100-ppcie-8gpu-4nvswitch-590.12).
  auto a = EncodeGpuVbiosVersion("96.00.9F.00.04");
  ASSERT_THAT(a.status(), IsOk());
  EXPECT_EQ(core::HexEncode(*a), "009f009604000000");
  auto b = EncodeGpuVbiosVersion("96.00.A5.00.01");
  ASSERT_THAT(b.status(), IsOk());
  EXPECT_EQ(core::HexEncode(*b), "00a5009601000000");
  auto c = EncodeGpuVbiosVersion("12.34.56.78.9a");
  ASSERT_THAT(c.status(), IsOk());
  EXPECT_EQ(NvidiaVbiosDecode(std::vector<uint8_t>(c->begin(), c->end())), "12.34.56.78.9A");
  for (absl::string_view bad : {"", "96.00.9F.00.4", "96.00.9F.00.04.00", "96.00.9G.00.04"}) {
    EXPECT_FALSE(EncodeGpuVbiosVersion(bad).ok()) << bad;
  }
}

// ---- Golden values.

TEST(SimulatedGpuGoldenTest, MatchesDefaultReportsAndCatchesOverrides) {
  const SimulatedGpuGolden golden =
      SimulatedGpuGoldenMeasurements("580.159.04-sim", "96.00.9F.00.04");
  EXPECT_EQ(golden.driver_version, "580.159.04-sim");
  ASSERT_EQ(golden.measurements.size(), kGpuActiveMeasurements);
  auto gpu = MakeGpu();
  auto r = gpu->GetReport(TestNonce());
  ASSERT_THAT(r.status(), IsOk());
  auto mismatches = [&golden](const std::vector<uint8_t>& report) {
    std::vector<uint32_t> out;
    for (const SimulatedGoldenMeasurement& g : golden.measurements) {
      const size_t off = kBlocksOffset + g.index * kBlockSize;  // RIM index = SPDM index - 1
      EXPECT_EQ(report[off], g.index + 1);
      if (Slice(report, off + 7, 48) != std::vector<uint8_t>(g.value.begin(), g.value.end())) {
        out.push_back(g.index);
      }
    }
    return out;
  };
  EXPECT_THAT(mismatches(*r), ::testing::IsEmpty());

  SimulatedGpuOptions o;
  GpuMeasurements m = DefaultSimulatedGpuMeasurements(o.driver_version, o.vbios_version);
  m[9] = crypto::Sha384("tampered firmware");
  o.measurements = m;
  auto r2 = MakeGpu(o)->GetReport(TestNonce());
  ASSERT_THAT(r2.status(), IsOk());
  EXPECT_THAT(mismatches(*r2), ElementsAre(9));

  // Other firmware, other golden values.
  EXPECT_NE(
      SimulatedGpuGoldenMeasurements("580.159.05-sim", "96.00.9F.00.04").measurements[0].value,
      golden.measurements[0].value);
}

// ---- Against a real report: same framing, same opaque layout.

TEST(SimulatedGpuRealVectorTest, SameLayoutAsARealH100Report) {
  const char* shared = std::getenv("PML_SHARED_DIR");  // NOLINT(concurrency-mt-unsafe)
  if (shared == nullptr || *shared == '\0') {
    GTEST_SKIP() << "PML_SHARED_DIR not set";
  }
  auto real_text = core::ReadFile(
      absl::StrCat(shared, "/vectors/gpu/h100nvl-595.71.05-azure-nras/attestation-report.bin"),
      1 << 16);
  if (!real_text.ok()) {
    GTEST_SKIP() << real_text.status();
  }
  const std::vector<uint8_t> real(core::AsBytes(*real_text).begin(),
                                  core::AsBytes(*real_text).end());

  SimulatedGpuOptions o;
  o.driver_version = "595.71.05";  // same length as the vector's
  auto sim = MakeGpu(o)->GetReport(Slice(real, 4, 32));
  ASSERT_THAT(sim.status(), IsOk());
  EXPECT_EQ(sim->size(), real.size());
  EXPECT_EQ(Slice(*sim, 0, 45), Slice(real, 0, 45));  // request, header, block count and length
  for (size_t i = 0; i < 64; ++i) {                   // block headers
    EXPECT_EQ(Slice(*sim, kBlocksOffset + i * kBlockSize, 7),
              Slice(real, kBlocksOffset + i * kBlockSize, 7));
  }
  const std::vector<Tlv> a = OpaqueTlvs(*sim);
  const std::vector<Tlv> b = OpaqueTlvs(real);
  ASSERT_EQ(Types(a), Types(b));
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].value.size(), b[i].value.size()) << "type " << a[i].type;
  }
  for (uint16_t same : {4, 13, 11, 21, 34, 36, 14, 16, 19, 6, 3, 15}) {
    EXPECT_EQ(Find(a, same), Find(b, same)) << "type " << same;
  }
}

}  // namespace
}  // namespace pml::tee
