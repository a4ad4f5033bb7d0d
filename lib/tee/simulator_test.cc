#include "lib/tee/simulator.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/byte_reader.h"
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
using ::pml::testing::StatusIs;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

// Offsets from tdx-quote-verification.md §2 (quote v4), written out here on purpose: the test
// must not share the simulator's constants.
constexpr size_t kBody = 48;
constexpr size_t kSigLen = 632;
constexpr size_t kS = 636;  // start of the signature data
constexpr size_t kQeReport = kS + 134;

Measurement Filled(uint8_t v) {
  Measurement m;
  m.fill(v);
  return m;
}

std::vector<uint8_t> ReportData(uint8_t seed) {
  std::vector<uint8_t> rd(64);
  for (size_t i = 0; i < rd.size(); ++i) {
    rd[i] = static_cast<uint8_t>(seed + i);
  }
  return rd;
}

SimulatorOptions TestOptions() {
  SimulatorOptions o;
  o.mrtd = Filled(0x11);
  o.rtmr0 = Filled(0x20);
  o.rtmr1 = Filled(0x21);
  o.rtmr2 = Filled(0x22);
  o.mrconfigid = Filled(0x33);
  o.mrowner = Filled(0x44);
  o.mrownerconfig = Filled(0x55);
  return o;
}

std::unique_ptr<TdxSimulator> MakeSim(const SimulatorOptions& o = TestOptions()) {
  auto sim = TdxSimulator::Create(o);
  PML_CHECK(sim.ok());
  return std::move(sim).value();
}

std::vector<uint8_t> At(const std::vector<uint8_t>& q, size_t off, size_t n) {
  return std::vector<uint8_t>(q.begin() + static_cast<long>(off),
                              q.begin() + static_cast<long>(off + n));
}

uint16_t U16At(const std::vector<uint8_t>& q, size_t off) {
  core::ByteReader r(q);
  PML_CHECK(r.Skip(off, "skip").ok());
  return r.U16("u16").value();
}
uint32_t U32At(const std::vector<uint8_t>& q, size_t off) {
  core::ByteReader r(q);
  PML_CHECK(r.Skip(off, "skip").ok());
  return r.U32("u32").value();
}
uint64_t U64At(const std::vector<uint8_t>& q, size_t off) {
  core::ByteReader r(q);
  PML_CHECK(r.Skip(off, "skip").ok());
  return r.U64("u64").value();
}

std::vector<crypto::X509Ptr> ParsePemChain(absl::string_view pem) {
  std::vector<crypto::X509Ptr> out;
  crypto::BioPtr bio = crypto::MemBio(pem);
  while (true) {
    crypto::X509Ptr c(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (c == nullptr) {
      break;
    }
    out.push_back(std::move(c));
  }
  crypto::ClearOpensslErrors();
  return out;
}

std::string CommonName(const X509& cert) {
  char buf[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(&cert), NID_commonName, buf, sizeof(buf));
  return buf;
}

TEST(TdxSimulatorTest, QuoteHeaderHasV4TdxLayout) {
  auto sim = MakeSim();
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> q, sim->GetQuote(ReportData(1)));
  EXPECT_EQ(U16At(q, 0), 4);      // version
  EXPECT_EQ(U16At(q, 2), 2);      // attestation key type ECDSA-256-with-P-256
  EXPECT_EQ(U32At(q, 4), 0x81u);  // TEE type TDX
  EXPECT_EQ(U32At(q, 8), 0u);     // reserved in v4
  EXPECT_EQ(core::HexEncode(At(q, 12, 16)), "939a7233f79c4ca9940a0db3957f0607");  // Intel QE vendor
}

TEST(TdxSimulatorTest, TdReportCarriesConfiguredRegistersAtSpecOffsets) {
  SimulatorOptions o = TestOptions();
  o.mrseam = Filled(0x66);
  auto sim = MakeSim(o);
  const std::vector<uint8_t> rd = ReportData(7);
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> q, sim->GetQuote(rd));
  EXPECT_THAT(At(q, 48, 16), ElementsAreArray(kSimulatedTeeTcbSvn));  // TEE_TCB_SVN
  EXPECT_THAT(At(q, 64, 48), ElementsAreArray(Filled(0x66)));         // MRSEAM
  EXPECT_THAT(At(q, 112, 48), ElementsAreArray(Measurement{}));       // MRSIGNERSEAM
  EXPECT_EQ(U64At(q, 160), 0u);                                       // SEAMATTRIBUTES
  EXPECT_EQ(U64At(q, 168), uint64_t{1} << 28);                        // TDATTRIBUTES: SEPT_VE only
  EXPECT_EQ(U64At(q, 176), 0x602e7u);                                 // XFAM
  EXPECT_THAT(At(q, 184, 48), ElementsAreArray(Filled(0x11)));        // MRTD
  EXPECT_THAT(At(q, 232, 48), ElementsAreArray(Filled(0x33)));        // MRCONFIGID
  EXPECT_THAT(At(q, 280, 48), ElementsAreArray(Filled(0x44)));        // MROWNER
  EXPECT_THAT(At(q, 328, 48), ElementsAreArray(Filled(0x55)));        // MROWNERCONFIG
  EXPECT_THAT(At(q, 376, 48), ElementsAreArray(Filled(0x20)));        // RTMR0
  EXPECT_THAT(At(q, 424, 48), ElementsAreArray(Filled(0x21)));        // RTMR1
  EXPECT_THAT(At(q, 472, 48), ElementsAreArray(Filled(0x22)));        // RTMR2
  EXPECT_THAT(At(q, 520, 48), ElementsAreArray(Measurement{}));       // RTMR3 starts at zero
  EXPECT_THAT(At(q, 568, 64), ElementsAreArray(rd));                  // REPORTDATA
}

TEST(TdxSimulatorTest, DebugAttributeAndTcbSvnCanBeSet) {
  SimulatorOptions o = TestOptions();
  o.td_attributes = kTdAttributeDebug | kTdAttributeSeptVeDisable;
  o.tee_tcb_svn = std::array<uint8_t, 16>{3, 1, 1};
  auto sim = MakeSim(o);
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> q, sim->GetQuote(ReportData(0)));
  EXPECT_EQ(U64At(q, 168) & 1, 1u);
  EXPECT_EQ(q[kBody + 0], 3);
  EXPECT_EQ(q[kBody + 1], 1);
  EXPECT_EQ(q[kBody + 2], 1);
}

TEST(TdxSimulatorTest, SignatureDataHasType6WrappingType5Chain) {
  auto sim = MakeSim();
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> q, sim->GetQuote(ReportData(2)));
  const uint32_t sig_len = U32At(q, kSigLen);
  EXPECT_EQ(q.size(), kS + sig_len);  // no trailing bytes
  EXPECT_EQ(U16At(q, kS + 128), 6);   // QE report certification data
  const uint32_t cert_size = U32At(q, kS + 130);
  EXPECT_EQ(cert_size, sig_len - 134);
  const uint16_t auth_size = U16At(q, kS + 582);
  EXPECT_EQ(auth_size, 32);
  const size_t inner = kS + 584 + auth_size;
  EXPECT_EQ(U16At(q, inner), 5);  // PCK cert chain
  const uint32_t pem_size = U32At(q, inner + 2);
  EXPECT_EQ(inner + 6 + pem_size, q.size());
  const std::string pem = core::ToString(At(q, inner + 6, pem_size));
  EXPECT_EQ(pem.back(), '\0');
  EXPECT_EQ(pem, sim->pki().PckChainPem() + std::string(1, '\0'));
  std::vector<crypto::X509Ptr> chain = ParsePemChain(pem);
  ASSERT_EQ(chain.size(), 3u);
  EXPECT_THAT(CommonName(*chain[0]), HasSubstr("SGX PCK Certificate"));
  EXPECT_THAT(CommonName(*chain[1]), HasSubstr("SGX PCK Platform CA"));
  EXPECT_THAT(CommonName(*chain[2]), HasSubstr("SGX Root CA"));
  for (const auto& c : chain) {
    EXPECT_THAT(CommonName(*c), HasSubstr("PML SIMULATED"));
  }
}

TEST(TdxSimulatorTest, QuoteSignatureVerifiesWithEmbeddedAttestationKey) {
  auto sim = MakeSim();
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> q, sim->GetQuote(ReportData(3)));
  PML_ASSERT_OK_AND_ASSIGN(crypto::EvpPkeyPtr ak,
                           crypto::PublicKeyFromRawPoint(crypto::Curve::kP256, At(q, kS + 64, 64)));
  EXPECT_THAT(crypto::VerifyEcdsaRaw(*ak, crypto::Digest::kSha256, At(q, 0, 632), At(q, kS, 64)),
              IsOk());
  // A flipped REPORTDATA byte breaks it.
  std::vector<uint8_t> bad = At(q, 0, 632);
  bad[600] ^= 1;
  EXPECT_THAT(crypto::VerifyEcdsaRaw(*ak, crypto::Digest::kSha256, bad, At(q, kS, 64)),
              StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_));
}

TEST(TdxSimulatorTest, QeReportIsSignedByPckAndBindsAttestationKey) {
  auto sim = MakeSim();
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> q, sim->GetQuote(ReportData(4)));
  const std::vector<uint8_t> qe = At(q, kQeReport, 384);
  const std::vector<uint8_t> qe_sig = At(q, kS + 518, 64);
  EVP_PKEY* pck_pub = X509_get0_pubkey(&sim->pki().pck_cert());
  ASSERT_NE(pck_pub, nullptr);
  EXPECT_THAT(crypto::VerifyEcdsaRaw(*pck_pub, crypto::Digest::kSha256, qe, qe_sig), IsOk());

  // QE REPORTDATA = SHA-256(attestation key ‖ QE auth data) ‖ 0^32 (§5 step 8).
  std::vector<uint8_t> bound = At(q, kS + 64, 64);
  const std::vector<uint8_t> auth = At(q, kS + 584, 32);
  bound.insert(bound.end(), auth.begin(), auth.end());
  const crypto::Sha256Digest h = crypto::Sha256(bound);
  EXPECT_THAT(At(qe, 320, 32), ElementsAreArray(h));
  EXPECT_THAT(At(qe, 352, 32), ElementsAreArray(std::vector<uint8_t>(32, 0)));

  // The QE identity fields of the simulated TD QE.
  EXPECT_THAT(At(qe, 128, 32), ElementsAreArray(sim->pki().qe_mrsigner()));
  EXPECT_EQ(U16At(qe, 256), 2);  // ISVPRODID (TD_QE)
  EXPECT_EQ(U16At(qe, 258), kSimulatedQeIsvSvn);
  EXPECT_EQ(U32At(qe, 16), 0u);    // MISCSELECT
  EXPECT_EQ(qe[48] & 0xFB, 0x11);  // ATTRIBUTES under the identity's mask
}

TEST(TdxSimulatorTest, RejectsReportDataOfWrongSize) {
  auto sim = MakeSim();
  EXPECT_THAT(sim->GetQuote(std::vector<uint8_t>(63)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("report_data has 63 bytes")));
  EXPECT_THAT(sim->GetQuote(std::vector<uint8_t>(65)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("want 64")));
}

TEST(TdxSimulatorTest, ExtendRtmrIsSha384OfOldValueAndDigest) {
  auto sim = MakeSim();
  const crypto::Sha384Digest d1 = crypto::Sha384("event one");
  const crypto::Sha384Digest d2 = crypto::Sha384("event two");
  ASSERT_THAT(sim->ExtendRtmr(3, d1), IsOk());
  ASSERT_THAT(sim->ExtendRtmr(3, d2), IsOk());
  const Measurement r1 = crypto::Sha384Concat({Measurement{}, d1});
  const Measurement r2 = crypto::Sha384Concat({r1, d2});
  PML_ASSERT_OK_AND_ASSIGN(RtmrValues regs, sim->GetRtmrs());
  EXPECT_EQ(regs[3], r2);
  EXPECT_EQ(regs[0], Filled(0x20));
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> q, sim->GetQuote(ReportData(5)));
  EXPECT_THAT(At(q, 520, 48), ElementsAreArray(r2));
}

TEST(TdxSimulatorTest, ExtendsRtmr0To2FromTheirInitialValues) {
  auto sim = MakeSim();
  const crypto::Sha384Digest d = crypto::Sha384("boot");
  for (int i = 0; i < 3; ++i) {
    ASSERT_THAT(sim->ExtendRtmr(i, d), IsOk());
  }
  PML_ASSERT_OK_AND_ASSIGN(RtmrValues regs, sim->GetRtmrs());
  EXPECT_EQ(regs[0], crypto::Sha384Concat({Filled(0x20), d}));
  EXPECT_EQ(regs[1], crypto::Sha384Concat({Filled(0x21), d}));
  EXPECT_EQ(regs[2], crypto::Sha384Concat({Filled(0x22), d}));
  EXPECT_EQ(regs[3], Measurement{});
}

TEST(TdxSimulatorTest, ExtendRejectsBadIndexAndDigestSize) {
  auto sim = MakeSim();
  const crypto::Sha384Digest d = crypto::Sha384("x");
  EXPECT_THAT(sim->ExtendRtmr(4, d),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rtmr index 4")));
  EXPECT_THAT(sim->ExtendRtmr(-1, d),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rtmr index -1")));
  EXPECT_THAT(sim->ExtendRtmr(3, std::vector<uint8_t>(32)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("32 bytes, want 48")));
  PML_ASSERT_OK_AND_ASSIGN(RtmrValues regs, sim->GetRtmrs());
  EXPECT_EQ(regs[3], Measurement{});
}

TEST(TdxSimulatorTest, ConcurrentExtensionsAreAtomic) {
  auto sim = MakeSim();
  const crypto::Sha384Digest d = crypto::Sha384("same event");
  constexpr int kThreads = 8;
  constexpr int kPerThread = 50;
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        if (!sim->ExtendRtmr(3, d).ok()) {
          failures.fetch_add(1);
        }
        if (!sim->GetQuote(ReportData(0)).ok()) {
          failures.fetch_add(1);
        }
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_EQ(failures.load(), 0);
  Measurement want{};
  for (int i = 0; i < kThreads * kPerThread; ++i) {
    want = crypto::Sha384Concat({want, d});
  }
  PML_ASSERT_OK_AND_ASSIGN(RtmrValues regs, sim->GetRtmrs());
  EXPECT_EQ(regs[3], want);
}

std::string FreshDir(absl::string_view name) {
  std::string dir = absl::StrCat(::testing::TempDir(), "/pml_tee_", name, "_", getpid());
  std::filesystem::remove_all(dir);
  return dir;
}

TEST(TdxSimulatorTest, Rtmr3PersistsAcrossInstancesInStateDir) {
  SimulatorOptions o = TestOptions();
  o.state_dir = FreshDir("persist");
  const crypto::Sha384Digest d = crypto::Sha384("app-id");
  {
    auto sim = MakeSim(o);
    ASSERT_THAT(sim->ExtendRtmr(3, d), IsOk());
  }
  auto again = MakeSim(o);
  PML_ASSERT_OK_AND_ASSIGN(RtmrValues regs, again->GetRtmrs());
  EXPECT_EQ(regs[3], crypto::Sha384Concat({Measurement{}, d}));
  EXPECT_EQ(regs[0], Filled(0x20));  // RTMR0-2 come from the options, not the state dir
}

TEST(TdxSimulatorTest, RejectsMalformedStateFile) {
  SimulatorOptions o = TestOptions();
  o.state_dir = FreshDir("malformed");
  ASSERT_THAT(core::MakeDirs(o.state_dir), IsOk());
  ASSERT_THAT(core::WriteFileAtomic(o.state_dir + "/rtmr3", "abcd\n"), IsOk());
  EXPECT_THAT(TdxSimulator::Create(o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rtmr3 is not 48 bytes")));
}

TEST(TdxSimulatorTest, QuotesDifferOnlyInSignatures) {
  auto sim = MakeSim();
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> a, sim->GetQuote(ReportData(9)));
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> b, sim->GetQuote(ReportData(9)));
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    const bool quote_sig = i >= kS && i < kS + 64;
    const bool qe_sig = i >= kS + 518 && i < kS + 582;
    if (!quote_sig && !qe_sig) {
      ASSERT_EQ(a[i], b[i]) << "offset " << i;
    }
  }
}

TEST(TdxSimulatorTest, IsSimulated) {
  auto sim = MakeSim();
  EXPECT_TRUE(sim->IsSimulated());
  EXPECT_EQ(sim->Kind(), TeeKind::kSimulated);
}

}  // namespace
}  // namespace pml::tee
