#include "services/guest-agent/runtime_log.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <latch>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/hash.h"
#include "lib/tdx/event_log.h"
#include "lib/tdx/quote.h"
#include "lib/tee/simulator.h"

namespace pml::guest {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::SizeIs;

std::vector<uint8_t> Bytes(absl::string_view s) { return {s.begin(), s.end()}; }

class RuntimeEventLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = absl::StrCat(::testing::TempDir(), "/pml_guest_log_", info->name(), "_", getpid());
    std::filesystem::remove_all(dir_);
    log_path_ = dir_ + "/log/runtime_events.log";
    sim_ = MakeSim(dir_ + "/sim");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static std::unique_ptr<tee::TdxSimulator> MakeSim(const std::string& state_dir) {
    tee::SimulatorOptions o;
    o.state_dir = state_dir;
    auto sim = tee::TdxSimulator::Create(o);
    EXPECT_THAT(sim, IsOk());
    return sim.ok() ? std::move(sim).value() : nullptr;
  }

  std::unique_ptr<RuntimeEventLog> OpenLog() {
    auto log = RuntimeEventLog::Open(log_path_, *sim_);
    EXPECT_THAT(log, IsOk());
    return log.ok() ? std::move(log).value() : nullptr;
  }

  tee::Measurement Rtmr3() {
    auto regs = sim_->GetRtmrs();
    EXPECT_THAT(regs, IsOk());
    return regs.ok() ? (*regs)[3] : tee::Measurement{};
  }

  // What lib/tdx (the verifier) replays the served JSON to.
  static tee::Measurement Replay(const std::string& json) {
    auto parsed = tdx::ParseEventLog(json);
    EXPECT_THAT(parsed, IsOk());
    return parsed.ok() ? tdx::ReplayRtmrs(*parsed)[3] : tee::Measurement{};
  }

  std::string FileContent() {
    auto content = core::ReadFile(log_path_);
    EXPECT_THAT(content, IsOk());
    return content.ok() ? *content : "";
  }

  void AppendRaw(absl::string_view text) {
    std::ofstream out(log_path_, std::ios::app | std::ios::binary);
    out << text;
  }

  std::string dir_;
  std::string log_path_;
  std::unique_ptr<tee::TdxSimulator> sim_;
};

// SHA-384(0x08000001 LE ‖ ":" ‖ name ‖ ":" ‖ payload), computed here rather than through
// lib/tdx, so the test pins the format independently.
tee::Measurement IndependentDigest(absl::string_view name, absl::string_view payload) {
  return crypto::Sha384(
      absl::StrCat(absl::string_view("\x01\x00\x00\x08", 4), ":", name, ":", payload));
}

std::string EntryJson(absl::string_view name, absl::string_view payload) {
  return absl::StrCat(R"({"imr":3,"event_type":134217729,"digest":")",
                      core::HexEncode(IndependentDigest(name, payload)), R"(","event":")", name,
                      R"(","event_payload":")", core::HexEncode(payload), R"("})");
}

TEST_F(RuntimeEventLogTest, ConcurrentEmitsReplayExactlyToRtmr3) {
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  constexpr int kThreads = 100;
  std::latch start(kThreads);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      if (!log->Emit(absl::StrCat("event-", i), Bytes(absl::StrCat("payload ", i))).ok()) {
        failures.fetch_add(1);
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  EXPECT_EQ(failures.load(), 0);

  const std::string json = log->ToDstackJson();
  PML_ASSERT_OK_AND_ASSIGN(tdx::EventLog parsed, tdx::ParseEventLog(json));
  ASSERT_THAT(parsed.entries, SizeIs(kThreads));
  std::set<std::string> names;
  for (const tdx::EventLogEntry& e : parsed.entries) {
    EXPECT_EQ(e.imr, 3u);
    EXPECT_TRUE(e.digest_verified);
    names.insert(e.event);
  }
  EXPECT_THAT(names, SizeIs(kThreads));
  EXPECT_EQ(tdx::ReplayRtmrs(parsed)[3], Rtmr3());
  EXPECT_EQ(tdx::ReplayRtmrs(parsed)[0], tee::Measurement{});  // only RTMR3 entries

  // The file holds the same log, in the same order.
  std::string from_file = FileContent();
  ASSERT_FALSE(from_file.empty());
  from_file.pop_back();  // the last newline
  std::replace(from_file.begin(), from_file.end(), '\n', ',');
  EXPECT_EQ(absl::StrCat("[", from_file, "]"), json);
}

TEST_F(RuntimeEventLogTest, ServesDstackJsonExactly) {
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->ToDstackJson(), "[]");
  ASSERT_THAT(log->Emit("app-id", Bytes("\x01\x02z")), IsOk());
  ASSERT_THAT(log->Emit("empty", {}), IsOk());
  EXPECT_EQ(log->ToDstackJson(),
            absl::StrCat("[", EntryJson("app-id", "\x01\x02z"), ",", EntryJson("empty", ""), "]"));
  const std::vector<RuntimeEvent> events = log->Events();
  ASSERT_THAT(events, SizeIs(2));
  EXPECT_EQ(events[0].name, "app-id");
  EXPECT_EQ(events[0].payload, Bytes("\x01\x02z"));
  EXPECT_EQ(events[0].digest, IndependentDigest("app-id", "\x01\x02z"));
  EXPECT_EQ(log->Size(), 2u);

  tee::Measurement want{};
  want = crypto::Sha384Concat({want, IndependentDigest("app-id", "\x01\x02z")});
  want = crypto::Sha384Concat({want, IndependentDigest("empty", "")});
  EXPECT_EQ(Rtmr3(), want);
}

TEST_F(RuntimeEventLogTest, RestartServesTheSameLog) {
  std::string json;
  std::vector<RuntimeEvent> events;
  {
    auto log = OpenLog();
    ASSERT_NE(log, nullptr);
    ASSERT_THAT(log->Emit("system-preparing", {}), IsOk());
    ASSERT_THAT(log->Emit("compose-hash", Bytes("abc")), IsOk());
    ASSERT_THAT(log->Emit("instance-id", Bytes("xyz")), IsOk());
    json = log->ToDstackJson();
    events = log->Events();
  }
  // A restarted agent: a new simulator reading the persisted RTMR3, a new log on the same file.
  sim_ = MakeSim(dir_ + "/sim");
  ASSERT_NE(sim_, nullptr);
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->ToDstackJson(), json);
  EXPECT_EQ(log->Events(), events);
  EXPECT_EQ(Replay(json), Rtmr3());

  ASSERT_THAT(log->Emit("system-ready", {}), IsOk());
  EXPECT_EQ(Replay(log->ToDstackJson()), Rtmr3());
}

TEST_F(RuntimeEventLogTest, EntryAppendedButNeverExtendedIsDropped) {
  {
    auto log = OpenLog();
    ASSERT_NE(log, nullptr);
    ASSERT_THAT(log->Emit("one", Bytes("1")), IsOk());
    ASSERT_THAT(log->Emit("two", Bytes("2")), IsOk());
  }
  const std::string before = FileContent();
  // The crash window: the line is durable, the agent died before extending RTMR3.
  AppendRaw(absl::StrCat(EntryJson("three", "3"), "\n"));

  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  EXPECT_THAT(log->Events(), SizeIs(2));
  EXPECT_EQ(FileContent(), before);  // truncated on disk too
  EXPECT_EQ(Replay(log->ToDstackJson()), Rtmr3());
  ASSERT_THAT(log->Emit("three", Bytes("3")), IsOk());
  EXPECT_EQ(Replay(log->ToDstackJson()), Rtmr3());
}

TEST_F(RuntimeEventLogTest, TornAppendIsDropped) {
  {
    auto log = OpenLog();
    ASSERT_NE(log, nullptr);
    ASSERT_THAT(log->Emit("one", Bytes("1")), IsOk());
  }
  const std::string before = FileContent();
  const std::string line = EntryJson("two", "2");
  AppendRaw(line.substr(0, line.size() / 2));  // no newline: the write stopped midway

  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  EXPECT_THAT(log->Events(), SizeIs(1));
  EXPECT_EQ(FileContent(), before);
  ASSERT_THAT(log->Emit("two", Bytes("2")), IsOk());
  EXPECT_EQ(Replay(log->ToDstackJson()), Rtmr3());
}

TEST_F(RuntimeEventLogTest, RegisterAheadOfTheLogIsDataLoss) {
  {
    auto log = OpenLog();
    ASSERT_NE(log, nullptr);
    ASSERT_THAT(log->Emit("one", Bytes("1")), IsOk());
  }
  ASSERT_THAT(sim_->ExtendRtmr(3, IndependentDigest("lost", "")), IsOk());
  EXPECT_THAT(RuntimeEventLog::Open(log_path_, *sim_),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("cannot be reconciled with rtmr3: its 1 events replay to")));
}

TEST_F(RuntimeEventLogTest, LogFromAnEarlierBootIsDataLoss) {
  {
    auto log = OpenLog();
    ASSERT_NE(log, nullptr);
    ASSERT_THAT(log->Emit("one", Bytes("1")), IsOk());
    ASSERT_THAT(log->Emit("two", Bytes("2")), IsOk());
  }
  sim_ = MakeSim(dir_ + "/fresh-boot");  // RTMR3 back at zero, the file still there
  ASSERT_NE(sim_, nullptr);
  EXPECT_THAT(RuntimeEventLog::Open(log_path_, *sim_),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("its 2 events replay to")));
}

TEST_F(RuntimeEventLogTest, CorruptLineInsideTheMeasuredPartIsDataLoss) {
  {
    auto log = OpenLog();
    ASSERT_NE(log, nullptr);
    ASSERT_THAT(log->Emit("one", Bytes("1")), IsOk());
    ASSERT_THAT(log->Emit("two", Bytes("2")), IsOk());
  }
  std::string content = FileContent();
  const size_t at = content.find("\"two\"");
  ASSERT_NE(at, std::string::npos);
  content[at + 1] = 'X';  // the second line's name no longer matches its digest
  ASSERT_THAT(core::WriteFileAtomic(log_path_, content), IsOk());
  EXPECT_THAT(RuntimeEventLog::Open(log_path_, *sim_),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("line 2 is malformed")));
}

TEST_F(RuntimeEventLogTest, RefusesBadNamesAndPayloads) {
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  struct Case {
    const char* label;
    std::string name;
    size_t payload_size;
    const char* want;
  };
  const Case cases[] = {
      {"empty name", "", 0, "name is empty"},
      {"65-char name", std::string(65, 'a'), 0, "name has 65 bytes"},
      {"space", "app id", 0, "outside [A-Za-z0-9._-] at offset 3"},
      {"colon", "a:b", 0, "':' would make the digest ambiguous"},
      {"slash", "a/b", 0, "outside"},
      {"newline", "a\n", 0, "outside"},
      {"quote", "a\"", 0, "outside"},
      {"non-ascii", "\xc3\xa9", 0, "outside"},
      {"payload over 64 KiB", "ok", (64 << 10) + 1, "payload has 65537 bytes"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.label);
    EXPECT_THAT(log->Emit(c.name, std::vector<uint8_t>(c.payload_size, 'x')),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.want)));
  }
  EXPECT_EQ(log->Size(), 0u);
  EXPECT_EQ(FileContent(), "");
  EXPECT_EQ(Rtmr3(), tee::Measurement{});

  // The bounds themselves are accepted.
  EXPECT_THAT(log->Emit(std::string(64, 'n'), std::vector<uint8_t>(64 << 10, 0xff)), IsOk());
  EXPECT_THAT(log->Emit("A-z.0_9", {}), IsOk());
  EXPECT_EQ(Replay(log->ToDstackJson()), Rtmr3());
}

// Fails ExtendRtmr on demand, otherwise forwards to the simulator.
class FlakyTee final : public tee::TeeProvider {
 public:
  explicit FlakyTee(tee::TeeProvider& inner) : inner_(inner) {}
  absl::StatusOr<std::vector<uint8_t>> GetQuote(absl::Span<const uint8_t> rd) override {
    return inner_.GetQuote(rd);
  }
  absl::Status ExtendRtmr(int index, absl::Span<const uint8_t> digest) override {
    if (fail_next_extend) {
      fail_next_extend = false;
      return absl::InternalError("simulated extend failure");
    }
    return inner_.ExtendRtmr(index, digest);
  }
  absl::StatusOr<tee::RtmrValues> GetRtmrs() override { return inner_.GetRtmrs(); }
  tee::TeeKind Kind() const override { return inner_.Kind(); }

  bool fail_next_extend = false;

 private:
  tee::TeeProvider& inner_;
};

TEST_F(RuntimeEventLogTest, FailedExtendRemovesTheAppendedLine) {
  FlakyTee flaky(*sim_);
  PML_ASSERT_OK_AND_ASSIGN(std::unique_ptr<RuntimeEventLog> log,
                           RuntimeEventLog::Open(log_path_, flaky));
  ASSERT_THAT(log->Emit("one", Bytes("1")), IsOk());
  const std::string before = FileContent();
  flaky.fail_next_extend = true;
  EXPECT_THAT(log->Emit("two", Bytes("2")),
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr("extending rtmr3 with event two: simulated extend failure")));
  EXPECT_EQ(FileContent(), before);
  EXPECT_EQ(log->Size(), 1u);
  ASSERT_THAT(log->Emit("three", Bytes("3")), IsOk());
  EXPECT_EQ(Replay(log->ToDstackJson()), Rtmr3());
  log.reset();
  auto reopened = OpenLog();
  ASSERT_NE(reopened, nullptr);
  EXPECT_THAT(reopened->Events(), SizeIs(2));
}

TEST_F(RuntimeEventLogTest, SecondOpenOfTheSameFileIsRefused) {
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  EXPECT_THAT(RuntimeEventLog::Open(log_path_, *sim_),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("locked")));
}

TEST_F(RuntimeEventLogTest, QuoteCarriesTheRtmr3TheLogReplaysTo) {
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  ASSERT_THAT(log->Emit("app-id", Bytes("app")), IsOk());
  std::vector<uint8_t> report_data(64, 0x5a);
  PML_ASSERT_OK_AND_ASSIGN(QuoteAndLog q, log->GetQuoteAndLog(report_data));
  PML_ASSERT_OK_AND_ASSIGN(tdx::Quote quote, tdx::ParseQuote(q.quote));
  ASSERT_TRUE(quote.td_report.has_value());
  PML_ASSERT_OK_AND_ASSIGN(tdx::EventLog parsed, tdx::ParseEventLog(q.runtime_log_json));
  EXPECT_THAT(tdx::CheckReplayMatches(parsed, *quote.td_report, {3}), IsOk());
}

TEST_F(RuntimeEventLogTest, StopsAtTheByteBound) {
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  const std::vector<uint8_t> big(kMaxRuntimeEventPayloadBytes, 0xab);
  int emitted = 0;
  absl::Status s;
  while ((s = log->Emit(absl::StrCat("big-", emitted), big)).ok()) {
    ++emitted;
  }
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("would grow past")));
  EXPECT_GT(emitted, 50);
  EXPECT_LE(FileContent().size(), kMaxRuntimeLogBytes);
  PML_ASSERT_OK_AND_ASSIGN(tdx::EventLog parsed, tdx::ParseEventLog(log->ToDstackJson()));
  EXPECT_EQ(tdx::ReplayRtmrs(parsed)[3], Rtmr3());
}

}  // namespace
}  // namespace pml::guest
