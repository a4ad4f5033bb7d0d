// The hardware TDX providers (configfs-tsm, /dev/tdx_guest, the sysfs measurement registers) and
// DetectTeeKind, against the fakes of lib/tee/testing/fake_tdx.h: the real file code runs on temp
// directory trees while the fakes play the kernel's part (see fake_tdx.h for why).

#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/hash.h"
#include "lib/tee/configfs_tsm.h"
#include "lib/tee/internal/errno_status.h"
#include "lib/tee/tdx_guest_device.h"
#include "lib/tee/tdx_measurements.h"
#include "lib/tee/tdx_provider.h"
#include "lib/tee/tee_provider.h"
#include "lib/tee/testing/fake_tdx.h"

namespace pml::tee {
namespace {

using ::pml::tee::testing::FakeRtmrKernel;
using ::pml::tee::testing::FakeTdxGuestDevice;
using ::pml::tee::testing::FakeTsmKernel;
using ::pml::testing::IsOk;
using ::pml::testing::IsOkAndHolds;
using ::pml::testing::StatusIs;
using ::testing::AllOf;
using ::testing::Each;
using ::testing::ElementsAreArray;
using ::testing::Eq;
using ::testing::HasSubstr;

std::vector<uint8_t> ReportData(uint8_t seed) {
  std::vector<uint8_t> rd(kReportDataSize);
  for (size_t i = 0; i < rd.size(); ++i) {
    rd[i] = static_cast<uint8_t>(seed + i);
  }
  return rd;
}

Measurement Filled(uint8_t b) {
  Measurement m;
  m.fill(b);
  return m;
}

RtmrValues DistinctRtmrs() { return {Filled(0xA0), Filled(0xA1), Filled(0xA2), Filled(0xA3)}; }

// A fresh directory per test, removed afterwards.
class TempTree : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/pml_tee_hw_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << "mkdtemp: errno " << errno;
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // <tmp>/<rel>, created.
  std::string MakeDir(const std::string& rel) {
    std::string path = absl::StrCat(dir_, "/", rel);
    EXPECT_THAT(core::MakeDirs(path), IsOk());
    return path;
  }
  std::string Path(const std::string& rel) const { return absl::StrCat(dir_, "/", rel); }

  static bool IsEmptyDir(const std::string& path) {
    std::error_code ec;
    return std::filesystem::is_empty(path, ec) && !ec;
  }

  std::string dir_;
};

// ---------------------------------------------------------------------------------------------
// errno mapping

TEST(ErrnoToStatusTest, MapsKernelErrorsToCanonicalCodes) {
  struct Case {
    int err;
    absl::StatusCode code;
  };
  const Case cases[] = {
      {ENOENT, absl::StatusCode::kNotFound},
      {EBUSY, absl::StatusCode::kUnavailable},
      {EAGAIN, absl::StatusCode::kUnavailable},
      {EIO, absl::StatusCode::kUnavailable},
      {ETIMEDOUT, absl::StatusCode::kUnavailable},
      {ENXIO, absl::StatusCode::kFailedPrecondition},
      {ENOTTY, absl::StatusCode::kFailedPrecondition},
      {EACCES, absl::StatusCode::kPermissionDenied},
      {EPERM, absl::StatusCode::kPermissionDenied},
      {EEXIST, absl::StatusCode::kAlreadyExists},
      {EINVAL, absl::StatusCode::kInternal},
      {EFBIG, absl::StatusCode::kInternal},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.err);
    EXPECT_THAT(internal::ErrnoToStatus(c.err, "cannot read", "/x/outblob"),
                StatusIs(c.code, HasSubstr("cannot read /x/outblob: ")));
  }
}

// ---------------------------------------------------------------------------------------------
// configfs-tsm

class ConfigfsTsmTest : public TempTree {
 protected:
  void SetUp() override {
    TempTree::SetUp();
    root_ = MakeDir("tsm/report");
    auto fake = std::make_unique<FakeTsmKernel>(root_);
    fake_ = fake.get();
    quoter_ = std::make_unique<ConfigfsTsmQuoter>(std::move(fake), /*max_attempts=*/3);
  }

  std::string root_;
  FakeTsmKernel* fake_ = nullptr;  // owned by quoter_
  std::unique_ptr<ConfigfsTsmQuoter> quoter_;
};

TEST_F(ConfigfsTsmTest, ReturnsTheQuoteMadeFromTheReportData) {
  const std::vector<uint8_t> rd = ReportData(1);
  EXPECT_THAT(quoter_->GetQuote(rd), IsOkAndHolds(Eq(FakeTsmKernel::QuoteFor(rd))));
  EXPECT_EQ(fake_->entries_created(), 1);
  EXPECT_EQ(fake_->inblob_writes(), 1);
}

TEST_F(ConfigfsTsmTest, RemovesItsEntryAfterwards) {
  ASSERT_THAT(quoter_->GetQuote(ReportData(1)), IsOk());
  EXPECT_TRUE(IsEmptyDir(root_));
}

TEST_F(ConfigfsTsmTest, RetriesInAFreshEntryAfterAGenerationRace) {
  fake_->set_racing_writes(1);  // generation 0 → 2 across our one write in the first entry
  const std::vector<uint8_t> rd = ReportData(2);
  // Never the intruder's quote, which the first entry's outblob held.
  EXPECT_THAT(quoter_->GetQuote(rd), IsOkAndHolds(Eq(FakeTsmKernel::QuoteFor(rd))));
  EXPECT_EQ(fake_->entries_created(), 2);
  EXPECT_TRUE(IsEmptyDir(root_));
}

TEST_F(ConfigfsTsmTest, GivesUpAsUnavailableWhenEveryAttemptRaces) {
  fake_->set_racing_writes(1000);
  EXPECT_THAT(quoter_->GetQuote(ReportData(3)),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("all 3 attempts"),
                             HasSubstr("generation 0 before our inblob write and 2 after"))));
  EXPECT_EQ(fake_->entries_created(), 3);
  EXPECT_TRUE(IsEmptyDir(root_));
}

TEST_F(ConfigfsTsmTest, MissingInterfaceIsAFailedPrecondition) {
  ConfigfsTsmQuoter quoter(MakeTsmReportFs(Path("no/such/report")), 3);
  EXPECT_THAT(quoter.GetQuote(ReportData(1)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("report interface not found at"),
                             HasSubstr("no/such/report"), HasSubstr("CONFIG_TSM_REPORTS"))));
}

TEST_F(ConfigfsTsmTest, RefusesAProviderOtherThanTdx) {
  fake_->set_provider("sev_guest");
  EXPECT_THAT(quoter_->GetQuote(ReportData(1)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("provided by \"sev_guest\""), HasSubstr("not tdx_guest"))));
  EXPECT_EQ(fake_->inblob_writes(), 0);
  EXPECT_TRUE(IsEmptyDir(root_));
}

TEST_F(ConfigfsTsmTest, AcceptsAnEntryWithoutAProviderAttribute) {
  fake_->set_provider(std::nullopt);
  const std::vector<uint8_t> rd = ReportData(4);
  EXPECT_THAT(quoter_->GetQuote(rd), IsOkAndHolds(Eq(FakeTsmKernel::QuoteFor(rd))));
}

TEST_F(ConfigfsTsmTest, EmptyOutblobIsUnavailable) {
  fake_->set_empty_outblob(true);
  EXPECT_THAT(quoter_->GetQuote(ReportData(1)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("empty outblob")));
  EXPECT_TRUE(IsEmptyDir(root_));
}

TEST_F(ConfigfsTsmTest, BusyTsmIsUnavailableAndKeepsTheCause) {
  fake_->set_outblob_error(absl::UnavailableError("cannot read outblob: Device or resource busy"));
  EXPECT_THAT(quoter_->GetQuote(ReportData(1)),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("configfs-tsm outblob"), HasSubstr("busy"))));
  EXPECT_TRUE(IsEmptyDir(root_));
}

TEST_F(ConfigfsTsmTest, RejectsReportDataThatIsNot64Bytes) {
  EXPECT_THAT(quoter_->GetQuote(std::vector<uint8_t>(63)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("64 bytes, got 63")));
  EXPECT_EQ(fake_->entries_created(), 0);
}

TEST_F(ConfigfsTsmTest, ConcurrentQuotesUseSeparateEntries) {
  constexpr int kThreads = 8;
  std::vector<absl::StatusOr<std::vector<uint8_t>>> quotes(kThreads);
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([this, i, &quotes] {
      quotes[static_cast<size_t>(i)] = quoter_->GetQuote(ReportData(static_cast<uint8_t>(i)));
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  for (int i = 0; i < kThreads; ++i) {
    SCOPED_TRACE(i);
    EXPECT_THAT(quotes[static_cast<size_t>(i)],
                IsOkAndHolds(Eq(FakeTsmKernel::QuoteFor(ReportData(static_cast<uint8_t>(i))))));
  }
  EXPECT_EQ(fake_->entries_created(), kThreads);
  EXPECT_TRUE(IsEmptyDir(root_));
}

// The real file code alone on a plain directory: mkdir works, but nothing populates the entry,
// so it is not configfs-tsm; the entry still goes away.
TEST_F(ConfigfsTsmTest, APlainDirectoryIsNotConfigfsTsm) {
  const std::string plain = MakeDir("plain");
  ConfigfsTsmQuoter quoter(MakeTsmReportFs(plain), 3);
  EXPECT_THAT(quoter.GetQuote(ReportData(1)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("no generation attribute: not a configfs-tsm")));
  EXPECT_TRUE(IsEmptyDir(plain));
}

TEST_F(ConfigfsTsmTest, ReadTsmProviderNamesTheProviderAndCleansUp) {
  FakeTsmKernel fs(root_);
  EXPECT_THAT(ReadTsmProvider(fs), IsOkAndHolds(Eq("tdx_guest")));
  EXPECT_TRUE(IsEmptyDir(root_));
}

// ---------------------------------------------------------------------------------------------
// TDREPORT and /dev/tdx_guest

TEST(ParseTdReportTest, ReadsEachFieldAtItsOffset) {
  const Measurement mrtd = Filled(0x7D);
  const RtmrValues rtmrs = DistinctRtmrs();
  const std::vector<uint8_t> rd = ReportData(9);
  const TdReportBytes raw = FakeTdxGuestDevice::BuildTdReport(mrtd, rtmrs, rd);
  // The layout itself (tdx-guest.c TDREPORT_*): RTMR3 at 864, MRTD at 528, REPORTDATA at 128.
  EXPECT_EQ(raw[864], 0xA3);
  EXPECT_EQ(raw[528], 0x7D);
  EXPECT_EQ(raw[128], rd[0]);

  PML_ASSERT_OK_AND_ASSIGN(const TdReportFields f, ParseTdReport(raw));
  EXPECT_EQ(f.report_type, kTdReportTypeTdx);
  EXPECT_THAT(f.report_data, ElementsAreArray(rd));
  EXPECT_EQ(f.td_attributes, kTdAttributeSeptVeDisable);
  EXPECT_EQ(f.xfam, 0xE7u);
  EXPECT_EQ(f.mrtd, mrtd);
  EXPECT_THAT(f.mrconfigid, Each(Eq(0xC1)));
  EXPECT_THAT(f.mrowner, Each(Eq(0)));
  EXPECT_EQ(f.rtmrs, rtmrs);
  EXPECT_THAT(f.servtd_hash, Each(Eq(0x5E)));
}

TEST(ParseTdReportTest, RejectsBadSizes) {
  for (size_t size : {size_t{0}, size_t{1023}, size_t{1025}, size_t{1088}}) {
    SCOPED_TRACE(size);
    EXPECT_THAT(ParseTdReport(std::vector<uint8_t>(size, 0x81)),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr(absl::StrCat("1024 bytes, got ", size))));
  }
}

TEST(ParseTdReportTest, RejectsANonTdxReportType) {
  TdReportBytes raw = FakeTdxGuestDevice::BuildTdReport(Filled(1), DistinctRtmrs(), ReportData(0));
  raw[0] = 0x00;  // SGX
  EXPECT_THAT(ParseTdReport(raw),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not TDX (0x81)")));
}

class TdxGuestDeviceTest : public TempTree {};

TEST_F(TdxGuestDeviceTest, MissingDeviceIsAFailedPrecondition) {
  EXPECT_THAT(OpenTdxGuestDevice(Path("tdx_guest")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("tdx_guest"), HasSubstr("no TDX guest driver"))));
}

// The real open/ioctl code on a regular file: the ioctl fails with ENOTTY.
TEST_F(TdxGuestDeviceTest, ARegularFileIsNotATdxGuestDevice) {
  const std::string path = Path("tdx_guest");
  ASSERT_THAT(core::WriteFileAtomic(path, ""), IsOk());
  PML_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TdxGuestDevice> device, OpenTdxGuestDevice(path));
  EXPECT_EQ(device->path(), path);
  EXPECT_THAT(device->GetReport0(ReportData(0)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("TDX_CMD_GET_REPORT0"), HasSubstr("not a tdx_guest"))));
  EXPECT_THAT(device->GetReport0(std::vector<uint8_t>(65)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("64 bytes, got 65")));
}

// ---------------------------------------------------------------------------------------------
// The sysfs measurement registers (real file code, plain files)

class SysfsRtmrRegistersTest : public TempTree {
 protected:
  void SetUp() override {
    TempTree::SetUp();
    dir_m_ = MakeDir("measurements");
    const RtmrValues v = DistinctRtmrs();
    for (int i = 0; i < kRtmrCount; ++i) {
      WriteRegisterFile(i, v[static_cast<size_t>(i)]);
    }
    regs_ = MakeSysfsRtmrRegisters(dir_m_);
  }
  void WriteRegisterFile(int i, absl::Span<const uint8_t> bytes) {
    ASSERT_THAT(core::WriteFileAtomic(RegisterPath(i), std::string(bytes.begin(), bytes.end())),
                IsOk());
  }
  std::string RegisterPath(int i) const { return absl::StrCat(dir_m_, "/", RtmrAttributeName(i)); }

  std::string dir_m_;
  std::unique_ptr<RtmrRegisters> regs_;
};

TEST_F(SysfsRtmrRegistersTest, ReadsEachRegister) {
  const RtmrValues v = DistinctRtmrs();
  for (int i = 0; i < kRtmrCount; ++i) {
    SCOPED_TRACE(i);
    EXPECT_THAT(regs_->Read(i), IsOkAndHolds(Eq(v[static_cast<size_t>(i)])));
  }
  EXPECT_EQ(RtmrAttributeName(2), "rtmr2:sha384");
}

TEST_F(SysfsRtmrRegistersTest, ExtendWritesExactlyTheDigestAtOffsetZero) {
  const Measurement digest = crypto::Sha384("event");
  ASSERT_THAT(regs_->Extend(3, digest), IsOk());
  // What the kernel's tm_digest_write receives: one 48-byte write at offset 0.
  EXPECT_THAT(core::ReadFileBytes(RegisterPath(3)), IsOkAndHolds(ElementsAreArray(digest)));
  EXPECT_THAT(core::ReadFileBytes(RegisterPath(2)), IsOkAndHolds(ElementsAreArray(Filled(0xA2))));
}

TEST_F(SysfsRtmrRegistersTest, RejectsBadSizesAndIndexes) {
  WriteRegisterFile(1, std::vector<uint8_t>(47, 1));
  EXPECT_THAT(regs_->Read(1),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("holds 47 bytes, want 48")));
  WriteRegisterFile(2, std::vector<uint8_t>(96, 1));
  EXPECT_THAT(regs_->Read(2),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("holds more than 48 bytes")));
  EXPECT_THAT(regs_->Extend(3, std::vector<uint8_t>(47)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("48 bytes, got 47")));
  EXPECT_THAT(regs_->Read(4), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("0..3")));
  EXPECT_THAT(regs_->Extend(-1, Filled(0)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("0..3")));
  ASSERT_TRUE(std::filesystem::remove(RegisterPath(0)));
  EXPECT_THAT(regs_->Read(0), StatusIs(absl::StatusCode::kNotFound, HasSubstr("rtmr0:sha384")));
}

// ---------------------------------------------------------------------------------------------
// The composed providers

class TdxProviderTest : public TempTree {
 protected:
  void SetUp() override {
    TempTree::SetUp();
    root_ = MakeDir("tsm/report");
    measurements_ = Path("measurements");
  }
  std::unique_ptr<FakeTsmKernel> Tsm() { return std::make_unique<FakeTsmKernel>(root_); }
  std::unique_ptr<FakeRtmrKernel> Rtmrs() {
    auto r = FakeRtmrKernel::Create(measurements_, DistinctRtmrs());
    EXPECT_THAT(r, IsOk());
    return r.ok() ? std::move(r).value() : nullptr;
  }

  std::string root_;
  std::string measurements_;
};

TEST_F(TdxProviderTest, DeviceProviderReadsTheRtmrsFromTheTdReport) {
  TdxBackends b;
  b.device = std::make_unique<FakeTdxGuestDevice>(Filled(1), DistinctRtmrs());
  PML_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TeeProvider> tee,
                           MakeTdxProvider(TeeKind::kTdxGuestDevice, std::move(b), 3));
  EXPECT_EQ(tee->Kind(), TeeKind::kTdxGuestDevice);
  EXPECT_FALSE(tee->IsSimulated());
  EXPECT_THAT(tee->GetRtmrs(), IsOkAndHolds(Eq(DistinctRtmrs())));
}

TEST_F(TdxProviderTest, DeviceProviderQuotesThroughConfigfsTsm) {
  TdxBackends b;
  b.device = std::make_unique<FakeTdxGuestDevice>(Filled(1), DistinctRtmrs());
  b.tsm = Tsm();
  PML_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TeeProvider> tee,
                           MakeTdxProvider(TeeKind::kTdxGuestDevice, std::move(b), 3));
  const std::vector<uint8_t> rd = ReportData(5);
  EXPECT_THAT(tee->GetQuote(rd), IsOkAndHolds(Eq(FakeTsmKernel::QuoteFor(rd))));
}

TEST_F(TdxProviderTest, DeviceProviderWithoutConfigfsTsmCannotQuote) {
  TdxBackends b;
  b.device = std::make_unique<FakeTdxGuestDevice>(Filled(1), DistinctRtmrs());
  PML_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TeeProvider> tee,
                           MakeTdxProvider(TeeKind::kTdxGuestDevice, std::move(b), 3));
  EXPECT_THAT(tee->GetQuote(ReportData(5)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("no quote ioctl"), HasSubstr("configfs-tsm"),
                             HasSubstr("CONFIG_TSM_REPORTS"))));
  EXPECT_THAT(tee->GetQuote(std::vector<uint8_t>(10)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("64 bytes")));
}

TEST_F(TdxProviderTest, ExtensionsShowInTheTdReport) {
  std::unique_ptr<FakeRtmrKernel> regs = Rtmrs();
  ASSERT_NE(regs, nullptr);
  FakeRtmrKernel* regs_view = regs.get();
  TdxBackends b;
  b.rtmrs = std::move(regs);
  b.device = std::make_unique<FakeTdxGuestDevice>(Filled(1), RtmrValues{}, measurements_);
  PML_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TeeProvider> tee,
                           MakeTdxProvider(TeeKind::kTdxGuestDevice, std::move(b), 3));

  const Measurement digest = crypto::Sha384("app-id:1234");
  ASSERT_THAT(tee->ExtendRtmr(3, digest), IsOk());
  RtmrValues want = DistinctRtmrs();
  want[3] = crypto::Sha384Concat({want[3], digest});
  EXPECT_THAT(tee->GetRtmrs(), IsOkAndHolds(Eq(want)));
  EXPECT_EQ(regs_view->extensions(), 1);
}

TEST_F(TdxProviderTest, ConfigfsProviderReadsSysfsRegistersWithoutADevice) {
  TdxBackends b;
  b.tsm = Tsm();
  b.rtmrs = Rtmrs();
  PML_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TeeProvider> tee,
                           MakeTdxProvider(TeeKind::kConfigfsTsm, std::move(b), 3));
  EXPECT_EQ(tee->Kind(), TeeKind::kConfigfsTsm);
  EXPECT_THAT(tee->GetRtmrs(), IsOkAndHolds(Eq(DistinctRtmrs())));
  const Measurement digest = crypto::Sha384("x");
  ASSERT_THAT(tee->ExtendRtmr(2, digest), IsOk());
  PML_ASSERT_OK_AND_ASSIGN(const RtmrValues after, tee->GetRtmrs());
  EXPECT_EQ(after[2], crypto::Sha384Concat({Filled(0xA2), digest}));
  EXPECT_EQ(after[3], Filled(0xA3));
}

TEST_F(TdxProviderTest, WithoutRegistersExtendAndReadAreUnimplemented) {
  TdxBackends b;
  b.tsm = Tsm();
  PML_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TeeProvider> tee,
                           MakeTdxProvider(TeeKind::kConfigfsTsm, std::move(b), 3));
  EXPECT_THAT(tee->ExtendRtmr(3, crypto::Sha384("e")),
              StatusIs(absl::StatusCode::kUnimplemented,
                       AllOf(HasSubstr("rtmr3:sha384"), HasSubstr("Linux >= 6.16"))));
  EXPECT_THAT(tee->GetRtmrs(), StatusIs(absl::StatusCode::kUnimplemented,
                                        HasSubstr("cannot read the RTMRs without a quote")));
}

TEST_F(TdxProviderTest, ExtendRejectsBadInputFirst) {
  TdxBackends b;
  b.tsm = Tsm();
  b.rtmrs = Rtmrs();
  PML_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TeeProvider> tee,
                           MakeTdxProvider(TeeKind::kConfigfsTsm, std::move(b), 3));
  EXPECT_THAT(tee->ExtendRtmr(4, crypto::Sha384("e")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("0..3")));
  EXPECT_THAT(tee->ExtendRtmr(3, std::vector<uint8_t>(32)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("48 bytes, got 32")));
  EXPECT_THAT(tee->GetRtmrs(), IsOkAndHolds(Eq(DistinctRtmrs())));
}

TEST_F(TdxProviderTest, DeviceErrorsPassThrough) {
  auto device = std::make_unique<FakeTdxGuestDevice>(Filled(1), DistinctRtmrs());
  device->set_error(absl::UnavailableError("ioctl TDX_CMD_GET_REPORT0: busy"));
  TdxBackends b;
  b.device = std::move(device);
  PML_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TeeProvider> tee,
                           MakeTdxProvider(TeeKind::kTdxGuestDevice, std::move(b), 3));
  EXPECT_THAT(tee->GetRtmrs(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("busy")));
}

TEST_F(TdxProviderTest, EachKindNeedsItsOwnInterface) {
  EXPECT_THAT(MakeTdxProvider(TeeKind::kConfigfsTsm, TdxBackends{}, 3),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("configfs-tsm")));
  EXPECT_THAT(MakeTdxProvider(TeeKind::kTdxGuestDevice, TdxBackends{}, 3),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("/dev/tdx_guest")));
  EXPECT_THAT(MakeTdxProvider(TeeKind::kSimulated, TdxBackends{}, 3),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hardware providers only")));
}

// ---------------------------------------------------------------------------------------------
// MakeTeeProvider from paths

class MakeHardwareTeeProviderTest : public TempTree {
 protected:
  TeeOptions OptionsUnder(const std::string& base) {
    TeeOptions o;
    o.hardware.configfs_tsm_root = absl::StrCat(base, "/sys/kernel/config/tsm/report");
    o.hardware.tdx_guest_device = absl::StrCat(base, "/dev/tdx_guest");
    o.hardware.tdx_measurements_dir = absl::StrCat(base, "/sys/class/misc/tdx_guest/measurements");
    return o;
  }
};

TEST_F(MakeHardwareTeeProviderTest, EachKindNeedsItsKernelInterface) {
  const TeeOptions o = OptionsUnder(dir_);
  EXPECT_THAT(
      MakeTeeProvider(TeeKind::kConfigfsTsm, o),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               AllOf(HasSubstr(o.hardware.configfs_tsm_root), HasSubstr("CONFIG_TSM_REPORTS"))));
  EXPECT_THAT(
      MakeTeeProvider(TeeKind::kTdxGuestDevice, o),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               AllOf(HasSubstr(o.hardware.tdx_guest_device), HasSubstr("tdx_guest driver"))));
}

// The device provider from paths: a regular file for the device, plain files for the registers,
// no configfs-tsm. Everything below runs the real syscall code.
TEST_F(MakeHardwareTeeProviderTest, BuildsTheDeviceProviderFromPaths) {
  const TeeOptions o = OptionsUnder(dir_);
  MakeDir("dev");
  ASSERT_THAT(core::WriteFileAtomic(o.hardware.tdx_guest_device, ""), IsOk());
  ASSERT_THAT(FakeRtmrKernel::Create(o.hardware.tdx_measurements_dir, DistinctRtmrs()), IsOk());

  PML_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TeeProvider> tee,
                           MakeTeeProvider(TeeKind::kTdxGuestDevice, o));
  EXPECT_EQ(tee->Kind(), TeeKind::kTdxGuestDevice);
  EXPECT_THAT(tee->GetQuote(ReportData(1)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no quote ioctl")));
  // The TDREPORT comes from the "device", which is no tdx_guest.
  EXPECT_THAT(tee->GetRtmrs(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("TDX_CMD_GET_REPORT0")));
  const Measurement digest = crypto::Sha384("e");
  ASSERT_THAT(tee->ExtendRtmr(3, digest), IsOk());
  EXPECT_THAT(core::ReadFileBytes(absl::StrCat(o.hardware.tdx_measurements_dir, "/rtmr3:sha384")),
              IsOkAndHolds(ElementsAreArray(digest)));
}

TEST_F(MakeHardwareTeeProviderTest, BuildsTheConfigfsProviderFromPaths) {
  const TeeOptions o = OptionsUnder(dir_);
  MakeDir("sys/kernel/config/tsm/report");
  ASSERT_THAT(FakeRtmrKernel::Create(o.hardware.tdx_measurements_dir, DistinctRtmrs()), IsOk());

  PML_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TeeProvider> tee,
                           MakeTeeProvider(TeeKind::kConfigfsTsm, o));
  EXPECT_EQ(tee->Kind(), TeeKind::kConfigfsTsm);
  EXPECT_THAT(tee->GetRtmrs(), IsOkAndHolds(Eq(DistinctRtmrs())));
  // A plain directory at the root is not configfs: the quote path got there and said so.
  EXPECT_THAT(tee->GetQuote(ReportData(1)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no generation")));
  EXPECT_TRUE(IsEmptyDir(o.hardware.configfs_tsm_root));
}

TEST_F(MakeHardwareTeeProviderTest, IgnoresAPartialSetOfRegisters) {
  const TeeOptions o = OptionsUnder(dir_);
  MakeDir("sys/kernel/config/tsm/report");
  ASSERT_THAT(FakeRtmrKernel::Create(o.hardware.tdx_measurements_dir, DistinctRtmrs()), IsOk());
  ASSERT_TRUE(std::filesystem::remove(o.hardware.tdx_measurements_dir + "/rtmr1:sha384"));
  PML_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TeeProvider> tee,
                           MakeTeeProvider(TeeKind::kConfigfsTsm, o));
  EXPECT_THAT(tee->GetRtmrs(),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("cannot read the RTMRs")));
}

// ---------------------------------------------------------------------------------------------
// DetectTeeKind

class DetectTeeKindTest : public TempTree {
 protected:
  void SetUp() override {
    TempTree::SetUp();
    options_.configfs_tsm_root = Path("sys/kernel/config/tsm/report");
    options_.tdx_guest_device = Path("dev/tdx_guest");
  }
  void MakeDevice() {
    MakeDir("dev");
    ASSERT_THAT(core::WriteFileAtomic(options_.tdx_guest_device, ""), IsOk());
  }
  DetectOptions options_;
};

TEST_F(DetectTeeKindTest, PrefersConfigfsTsmWithATdxProvider) {
  FakeTsmKernel fake(MakeDir("sys/kernel/config/tsm/report"));
  options_.tsm_fs = &fake;
  MakeDevice();
  EXPECT_THAT(DetectTeeKind(options_), IsOkAndHolds(Eq(TeeKind::kConfigfsTsm)));
  EXPECT_EQ(fake.entries_created(), 1);
  EXPECT_TRUE(IsEmptyDir(options_.configfs_tsm_root));  // the probe entry is gone
}

TEST_F(DetectTeeKindTest, FallsBackToTheDeviceWithoutConfigfsTsm) {
  MakeDevice();
  EXPECT_THAT(DetectTeeKind(options_), IsOkAndHolds(Eq(TeeKind::kTdxGuestDevice)));
}

TEST_F(DetectTeeKindTest, FallsBackToTheDeviceWhenTheProviderIsNotTdx) {
  FakeTsmKernel fake(MakeDir("sys/kernel/config/tsm/report"));
  fake.set_provider("sev_guest");
  options_.tsm_fs = &fake;
  MakeDevice();
  EXPECT_THAT(DetectTeeKind(options_), IsOkAndHolds(Eq(TeeKind::kTdxGuestDevice)));
}

TEST_F(DetectTeeKindTest, NothingFoundNamesEachPathAndTheSimulator) {
  EXPECT_THAT(DetectTeeKind(options_),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("no TDX interface found (looked at "),
                             HasSubstr(absl::StrCat(options_.configfs_tsm_root, " (absent)")),
                             HasSubstr(absl::StrCat(options_.tdx_guest_device, " (absent)")),
                             HasSubstr("use --tee=simulated for development"))));
}

TEST_F(DetectTeeKindTest, AnotherProviderIsNamedWhenNothingQualifies) {
  FakeTsmKernel fake(MakeDir("sys/kernel/config/tsm/report"));
  fake.set_provider("sev_guest");
  options_.tsm_fs = &fake;
  EXPECT_THAT(DetectTeeKind(options_),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("provider \"sev_guest\", not tdx_guest"),
                             HasSubstr("--tee=simulated"))));
}

// The real file code on a plain directory at the root: mkdir works but no provider appears.
TEST_F(DetectTeeKindTest, APlainDirectoryAtTheRootDoesNotQualify) {
  const std::string root = MakeDir("sys/kernel/config/tsm/report");
  EXPECT_THAT(DetectTeeKind(options_), StatusIs(absl::StatusCode::kFailedPrecondition,
                                                AllOf(HasSubstr("has no provider attribute"),
                                                      HasSubstr("no TDX interface found"))));
  EXPECT_TRUE(IsEmptyDir(root));
}

}  // namespace
}  // namespace pml::tee
