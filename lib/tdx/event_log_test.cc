#include "lib/tdx/event_log.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/hex.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/hash.h"

namespace pml::tdx {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;

std::string Entry(int imr, uint32_t type, const std::string& digest_hex, const std::string& event,
                  const std::string& payload_hex) {
  return absl::StrCat("{\"imr\":", imr, ",\"event_type\":", type, ",\"digest\":\"", digest_hex,
                      "\",\"event\":\"", event, "\",\"event_payload\":\"", payload_hex, "\"}");
}

std::string RuntimeEntry(const std::string& name, const std::string& payload) {
  const Bytes48 d = RuntimeEventDigest(name, core::AsBytes(payload));
  return Entry(3, kDstackRuntimeEventType, core::HexEncode(d), name, core::HexEncode(payload));
}

TEST(RuntimeEventDigestTest, IsSha384OfTypeColonNameColonPayload) {
  // The empty system-ready event, hand-assembled: 01 00 00 08 ":system-ready:".
  std::string msg("\x01\x00\x00\x08", 4);
  msg += ":system-ready:";
  EXPECT_EQ(RuntimeEventDigest("system-ready", {}), crypto::Sha384(msg));
}

TEST(EventLogTest, ReplaysEachRegisterFromZero) {
  const Bytes48 boot = crypto::Sha384(std::string("firmware blob"));
  const std::string json =
      absl::StrCat("[", Entry(0, 0x80000001u, core::HexEncode(boot), "", ""), ",",
                   RuntimeEntry("app-id", "\x01\x02"), ",", RuntimeEntry("compose-hash", "abc"),
                   "]");
  PML_ASSERT_OK_AND_ASSIGN(EventLog log, ParseEventLog(json));
  ASSERT_EQ(log.entries.size(), 3u);
  EXPECT_FALSE(log.entries[0].digest_verified);
  EXPECT_TRUE(log.entries[1].digest_verified);
  EXPECT_EQ(log.entries[2].event, "compose-hash");
  EXPECT_EQ(log.entries[2].payload, std::vector<uint8_t>({'a', 'b', 'c'}));

  const std::array<Bytes48, 4> r = ReplayRtmrs(log);
  EXPECT_EQ(r[0], ExtendRtmr(Bytes48{}, boot));
  EXPECT_EQ(r[1], Bytes48{});
  EXPECT_EQ(r[2], Bytes48{});
  const Bytes48 step1 =
      ExtendRtmr(Bytes48{}, RuntimeEventDigest("app-id", core::AsBytes(std::string("\x01\x02"))));
  EXPECT_EQ(r[3], ExtendRtmr(step1, RuntimeEventDigest("compose-hash", core::AsBytes(std::string("abc")))));
  // SHA-384(old || digest) by hand for the first step.
  std::string cat(48, '\0');
  cat += core::ToString(boot);
  EXPECT_EQ(r[0], crypto::Sha384(cat));
}

TEST(EventLogTest, ComparesWithTheQuoteRegisters) {
  const std::string json = absl::StrCat("[", RuntimeEntry("system-preparing", ""), "]");
  PML_ASSERT_OK_AND_ASSIGN(EventLog log, ParseEventLog(json));
  TdReport td;
  td.rtmr[3] = ReplayRtmrs(log)[3];
  RtmrReplay rep = ReplayAgainst(log, td);
  EXPECT_TRUE(rep.all_match());
  EXPECT_THAT(CheckReplayMatches(log, td), IsOk());
  td.rtmr[3][0] ^= 1;
  rep = ReplayAgainst(log, td);
  EXPECT_FALSE(rep.matches[3]);
  EXPECT_TRUE(rep.matches[0]);
  EXPECT_THAT(CheckReplayMatches(log, td),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("rtmr3")));
  EXPECT_THAT(CheckReplayMatches(log, td, {0, 1, 2}), IsOk());
}

TEST(EventLogTest, RuntimeEventWithoutDigestIsComputed) {
  const std::string json = absl::StrCat("[", Entry(3, kDstackRuntimeEventType, "", "x", "00"), "]");
  PML_ASSERT_OK_AND_ASSIGN(EventLog log, ParseEventLog(json));
  EXPECT_EQ(log.entries[0].digest, RuntimeEventDigest("x", std::vector<uint8_t>{0}));
}

TEST(EventLogTest, RejectsRuntimeEventWhoseDigestDoesNotMatch) {
  // The classic substitution: keep the digest of the real payload, swap in another payload.
  const Bytes48 real = RuntimeEventDigest("compose-hash", core::AsBytes(std::string("evil")));
  const std::string json = absl::StrCat(
      "[", Entry(3, kDstackRuntimeEventType, core::HexEncode(real), "compose-hash",
                 core::HexEncode(std::string("good"))), "]");
  EXPECT_THAT(ParseEventLog(json),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("does not match runtime event")));
}

TEST(EventLogTest, RejectsMalformedEntries) {
  const std::string d = std::string(96, 'a');
  struct Case {
    std::string json;
    const char* want;
  };
  const Case cases[] = {
      {"{}", "not a json array"},
      {"[1]", "not an object"},
      {"[" + Entry(4, 1, d, "", "") + "]", "imr"},
      {"[{\"imr\":-1,\"event_type\":1,\"digest\":\"" + d + "\"}]", "imr"},
      {"[{\"imr\":0,\"event_type\":4294967296,\"digest\":\"" + d + "\"}]", "event_type"},
      {"[" + Entry(0, 1, d.substr(2), "", "") + "]", "want 48"},
      {"[" + Entry(0, 1, "", "", "") + "]", "missing"},
      {"[" + Entry(0, 1, d, "", "0") + "]", "event_payload"},
      {"[" + Entry(0, 1, "zz" + d.substr(2), "", "") + "]", "digest"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.json.substr(0, 80));
    EXPECT_THAT(ParseEventLog(c.json), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.want)));
  }
}

TEST(EventLogTest, CapsEntryCount) {
  std::string json = "[";
  const std::string e = Entry(0, 1, std::string(96, 'a'), "", "");
  for (size_t i = 0; i <= kMaxEventLogEntries; ++i) {
    if (i) json += ",";
    json += e;
  }
  json += "]";
  EXPECT_THAT(ParseEventLog(json),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("entries, more than")));
}

}  // namespace
}  // namespace pml::tdx
