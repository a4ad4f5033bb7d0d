#include "services/attestation/policy_store.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/clock.h"
#include "lib/core/status.h"
#include "lib/core/testing/status_matchers.h"
#include "services/attestation/policy.h"

namespace pml::attestation {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

// A valid policy whose content differs with `description`.
std::string PolicyJson(absl::string_view description) {
  return absl::StrCat(R"({"allow_any_os":true,"allow_any_app":true,"description":")", description,
                      R"("})");
}

std::string Canonical(absl::string_view json) {
  absl::StatusOr<AppraisalPolicy> p = ParsePolicyJson(json);
  PML_CHECK(p.ok());
  return PolicyToJson(*p);
}

class PolicyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "pml_policy_store_testXXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    absl::StatusOr<std::unique_ptr<PolicyStore>> store = PolicyStore::Open(store::kInMemory);
    ASSERT_THAT(store, IsOk());
    store_ = std::move(*store);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Each call is one second after the previous one.
  absl::Time Tick() {
    clock_.Advance(absl::Seconds(1));
    return clock_.Now();
  }

  std::string dir_;
  core::FakeClock clock_{absl::FromUnixSeconds(1700000000)};
  std::unique_ptr<PolicyStore> store_;
};

TEST_F(PolicyStoreTest, FirstPutIsVersionOneAndGetReturnsIt) {
  const absl::Time t = Tick();
  absl::StatusOr<PolicyRecord> put =
      store_->Put("prod", PolicyJson("first"), "spiffe://pml/operator/alice", t);
  ASSERT_THAT(put, IsOk());
  EXPECT_EQ(put->id, "prod");
  EXPECT_EQ(put->version, 1);
  EXPECT_EQ(put->json, Canonical(PolicyJson("first")));
  absl::StatusOr<AppraisalPolicy> parsed = ParsePolicyJson(put->json);
  ASSERT_THAT(parsed, IsOk());
  EXPECT_EQ(put->sha256, PolicyDigest(*parsed));
  EXPECT_EQ(put->created_at, t);
  EXPECT_EQ(put->created_by, "spiffe://pml/operator/alice");

  absl::StatusOr<PolicyRecord> got = store_->Get("prod");
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(*got, *put);
}

TEST_F(PolicyStoreTest, NewContentMakesTheNextVersionAndOldVersionsStayReadable) {
  ASSERT_THAT(store_->Put("prod", PolicyJson("v1"), "alice", Tick()), IsOk());
  absl::StatusOr<PolicyRecord> v2 = store_->Put("prod", PolicyJson("v2"), "bob", Tick());
  ASSERT_THAT(v2, IsOk());
  EXPECT_EQ(v2->version, 2);

  absl::StatusOr<PolicyRecord> latest = store_->Get("prod");
  ASSERT_THAT(latest, IsOk());
  EXPECT_EQ(*latest, *v2);
  absl::StatusOr<PolicyRecord> first = store_->Get("prod", 1);
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(first->version, 1);
  EXPECT_EQ(first->json, Canonical(PolicyJson("v1")));
  EXPECT_EQ(first->created_by, "alice");
}

TEST_F(PolicyStoreTest, ExpectedVersionGuardsConcurrentEdits) {
  ASSERT_THAT(store_->Put("prod", PolicyJson("v1"), "alice", Tick(), 0), IsOk());
  // A second creator that expected no policy loses.
  EXPECT_THAT(store_->Put("prod", PolicyJson("other"), "bob", Tick(), 0),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("latest version is 1")));
  ASSERT_THAT(store_->Put("prod", PolicyJson("v2"), "alice", Tick(), 1), IsOk());
  EXPECT_THAT(store_->Put("prod", PolicyJson("v3"), "bob", Tick(), 1),
              StatusIs(absl::StatusCode::kAborted, ::testing::_));
  absl::StatusOr<PolicyRecord> latest = store_->Get("prod");
  ASSERT_THAT(latest, IsOk());
  EXPECT_EQ(latest->version, 2);
  EXPECT_EQ(latest->created_by, "alice");
}

TEST_F(PolicyStoreTest, IdenticalContentReturnsTheLatestVersionUnchanged) {
  const absl::Time t1 = Tick();
  absl::StatusOr<PolicyRecord> v1 = store_->Put("prod", PolicyJson("same"), "alice", t1);
  ASSERT_THAT(v1, IsOk());
  // Same content, different formatting and key order: no new version, no audit entry.
  absl::StatusOr<PolicyRecord> again = store_->Put(
      "prod", R"({ "description": "same", "allow_any_app": true, "allow_any_os": true })", "bob",
      Tick());
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(*again, *v1);
  EXPECT_EQ(again->created_at, t1);
  absl::StatusOr<std::vector<PolicyAuditEntry>> audit = store_->AuditLog();
  ASSERT_THAT(audit, IsOk());
  EXPECT_THAT(*audit, SizeIs(1));
}

TEST_F(PolicyStoreTest, PutRefusesBadInputAndWritesNothing) {
  EXPECT_THAT(store_->Put("prod", R"({"allow_any_os": true, "gpu": {"cont": 1}})", "alice", Tick()),
              StatusIs(absl::StatusCode::kInvalidArgument, "policy.gpu.cont: unknown field"));
  EXPECT_THAT(store_->Put("Prod", PolicyJson("x"), "alice", Tick()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("policy id")));
  EXPECT_THAT(store_->Put("prod", PolicyJson("x"), "", Tick()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("actor")));
  EXPECT_THAT(store_->Put("prod", PolicyJson("x"), "line\nbreak", Tick()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("actor")));
  EXPECT_THAT(store_->Put("prod", PolicyJson("x"), "alice", absl::InfiniteFuture()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("time")));
  EXPECT_THAT(store_->Get("prod"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("prod")));
  absl::StatusOr<std::vector<PolicyAuditEntry>> audit = store_->AuditLog();
  ASSERT_THAT(audit, IsOk());
  EXPECT_THAT(*audit, IsEmpty());
}

TEST_F(PolicyStoreTest, GetNamesWhatIsMissing) {
  ASSERT_THAT(store_->Put("prod", PolicyJson("v1"), "alice", Tick()), IsOk());
  EXPECT_THAT(store_->Get("staging"),
              StatusIs(absl::StatusCode::kNotFound, "policy \"staging\" not found"));
  EXPECT_THAT(store_->Get("prod", 2),
              StatusIs(absl::StatusCode::kNotFound, "policy \"prod\" version 2 not found"));
  EXPECT_THAT(store_->Get("prod", 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("version 0")));
  EXPECT_THAT(store_->Get("../etc"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("policy id")));
}

TEST_F(PolicyStoreTest, DeleteHidesThePolicyAndRecreatingContinuesVersions) {
  ASSERT_THAT(store_->Put("prod", PolicyJson("v1"), "alice", Tick()), IsOk());
  ASSERT_THAT(store_->Put("prod", PolicyJson("v2"), "alice", Tick()), IsOk());
  ASSERT_THAT(store_->Delete("prod", "bob", Tick()), IsOk());

  EXPECT_THAT(store_->Get("prod"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("\"prod\"")));
  EXPECT_THAT(store_->Get("prod", 1),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("version 1")));
  absl::StatusOr<PolicyPage> page = store_->List();
  ASSERT_THAT(page, IsOk());
  EXPECT_THAT(page->policies, IsEmpty());
  EXPECT_THAT(store_->Delete("prod", "bob", Tick()),
              StatusIs(absl::StatusCode::kNotFound, "policy \"prod\" not found"));

  // Re-creating with the content of the deleted version is still a new version.
  absl::StatusOr<PolicyRecord> v3 = store_->Put("prod", PolicyJson("v2"), "carol", Tick());
  ASSERT_THAT(v3, IsOk());
  EXPECT_EQ(v3->version, 3);
  EXPECT_EQ(v3->created_by, "carol");
  absl::StatusOr<PolicyRecord> v1 = store_->Get("prod", 1);
  ASSERT_THAT(v1, IsOk());
  EXPECT_EQ(v1->json, Canonical(PolicyJson("v1")));
}

TEST_F(PolicyStoreTest, DeleteOfAnUnknownIdIsNotFound) {
  EXPECT_THAT(store_->Delete("nothing", "alice", Tick()),
              StatusIs(absl::StatusCode::kNotFound, "policy \"nothing\" not found"));
  absl::StatusOr<std::vector<PolicyAuditEntry>> audit = store_->AuditLog();
  ASSERT_THAT(audit, IsOk());
  EXPECT_THAT(*audit, IsEmpty());
}

TEST_F(PolicyStoreTest, ListPagesThroughLivePoliciesInIdOrder) {
  for (int i = 119; i >= 0; --i) {  // written out of order
    const std::string id = absl::StrFormat("p%03d", i);
    ASSERT_THAT(store_->Put(id, PolicyJson(id), "alice", Tick()), IsOk());
    // Every 10th policy gets a second version, so List must return latest versions.
    if (i % 10 == 0) {
      ASSERT_THAT(store_->Put(id, PolicyJson(id + "b"), "alice", Tick()), IsOk());
    }
  }
  ASSERT_THAT(store_->Put("zzz", PolicyJson("gone"), "alice", Tick()), IsOk());
  ASSERT_THAT(store_->Delete("zzz", "alice", Tick()), IsOk());
  std::vector<std::string> want;
  want.reserve(120);
  for (int i = 0; i < 120; ++i) {
    want.push_back(absl::StrFormat("p%03d", i));
  }

  std::vector<std::string> got;
  std::vector<size_t> page_sizes;
  std::string token;
  do {
    absl::StatusOr<PolicyPage> page = store_->List(50, token);
    ASSERT_THAT(page, IsOk());
    page_sizes.push_back(page->policies.size());
    for (const PolicyRecord& r : page->policies) {
      got.push_back(r.id);
      EXPECT_EQ(r.version, r.id.back() == '0' ? 2 : 1) << r.id;
    }
    token = page->next_page_token;
  } while (!token.empty() && page_sizes.size() < 10);
  EXPECT_THAT(page_sizes, ElementsAre(50, 50, 20));
  EXPECT_THAT(got, ElementsAreArray(want));
}

TEST_F(PolicyStoreTest, ListPageSizeDefaultsAndIsCapped) {
  for (int i = 0; i < 120; ++i) {
    ASSERT_THAT(store_->Put(absl::StrCat("p", i), PolicyJson("x"), "alice", Tick()), IsOk());
  }
  absl::StatusOr<PolicyPage> page = store_->List();
  ASSERT_THAT(page, IsOk());
  EXPECT_THAT(page->policies, SizeIs(kDefaultPolicyPageSize));
  EXPECT_FALSE(page->next_page_token.empty());
  page = store_->List(100000);  // more than the maximum: the maximum, here everything
  ASSERT_THAT(page, IsOk());
  EXPECT_THAT(page->policies, SizeIs(120));
  EXPECT_EQ(page->next_page_token, "");
}

TEST_F(PolicyStoreTest, ListRefusesBadArguments) {
  EXPECT_THAT(store_->List(-1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_size")));
  EXPECT_THAT(store_->List(10, "not a token!"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
  EXPECT_THAT(store_->List(10, "QUJD"),  // base64url of "ABC": not a policy id
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
}

TEST_F(PolicyStoreTest, AuditLogRecordsEveryMutationNewestFirst) {
  const absl::Time t1 = Tick(), t2 = Tick(), t3 = Tick(), t4 = Tick();
  absl::StatusOr<PolicyRecord> a1 = store_->Put("a", PolicyJson("1"), "alice", t1);
  absl::StatusOr<PolicyRecord> a2 = store_->Put("a", PolicyJson("2"), "bob", t2);
  absl::StatusOr<PolicyRecord> b1 = store_->Put("b", PolicyJson("1"), "alice", t3);
  ASSERT_THAT(a1, IsOk());
  ASSERT_THAT(a2, IsOk());
  ASSERT_THAT(b1, IsOk());
  ASSERT_THAT(store_->Delete("a", "carol", t4), IsOk());

  absl::StatusOr<std::vector<PolicyAuditEntry>> audit = store_->AuditLog();
  ASSERT_THAT(audit, IsOk());
  EXPECT_THAT(*audit, ElementsAre(PolicyAuditEntry{t4, "carol", "delete", "a", 2, a2->sha256},
                                  PolicyAuditEntry{t3, "alice", "put", "b", 1, b1->sha256},
                                  PolicyAuditEntry{t2, "bob", "put", "a", 2, a2->sha256},
                                  PolicyAuditEntry{t1, "alice", "put", "a", 1, a1->sha256}));
  absl::StatusOr<std::vector<PolicyAuditEntry>> last_two = store_->AuditLog(2);
  ASSERT_THAT(last_two, IsOk());
  EXPECT_THAT(*last_two, ElementsAre((*audit)[0], (*audit)[1]));
  EXPECT_THAT(store_->AuditLog(-1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("limit")));
}

TEST_F(PolicyStoreTest, ReopeningTheFileKeepsPoliciesHistoryAndAudit) {
  const std::string path = dir_ + "/policies.db";
  std::vector<PolicyAuditEntry> audit_before;
  {
    absl::StatusOr<std::unique_ptr<PolicyStore>> store = PolicyStore::Open(path);
    ASSERT_THAT(store, IsOk());
    ASSERT_THAT((*store)->Put("prod", PolicyJson("v1"), "alice", Tick()), IsOk());
    ASSERT_THAT((*store)->Put("prod", PolicyJson("v2"), "alice", Tick()), IsOk());
    ASSERT_THAT((*store)->Put("old", PolicyJson("o"), "alice", Tick()), IsOk());
    ASSERT_THAT((*store)->Delete("old", "bob", Tick()), IsOk());
    absl::StatusOr<std::vector<PolicyAuditEntry>> audit = (*store)->AuditLog();
    ASSERT_THAT(audit, IsOk());
    audit_before = *audit;
  }
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  absl::StatusOr<std::unique_ptr<PolicyStore>> store = PolicyStore::Open(path);
  ASSERT_THAT(store, IsOk());
  absl::StatusOr<PolicyRecord> prod = (*store)->Get("prod");
  ASSERT_THAT(prod, IsOk());
  EXPECT_EQ(prod->version, 2);
  EXPECT_EQ(prod->json, Canonical(PolicyJson("v2")));
  absl::StatusOr<PolicyRecord> prod1 = (*store)->Get("prod", 1);
  ASSERT_THAT(prod1, IsOk());
  EXPECT_EQ(prod1->json, Canonical(PolicyJson("v1")));
  EXPECT_THAT((*store)->Get("old"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("old")));
  absl::StatusOr<std::vector<PolicyAuditEntry>> audit = (*store)->AuditLog();
  ASSERT_THAT(audit, IsOk());
  EXPECT_EQ(*audit, audit_before);
  // Version numbering continues across the reopen, also for the deleted id.
  absl::StatusOr<PolicyRecord> old = (*store)->Put("old", PolicyJson("o"), "carol", Tick());
  ASSERT_THAT(old, IsOk());
  EXPECT_EQ(old->version, 2);
}

TEST_F(PolicyStoreTest, ConcurrentPutsGetDistinctConsecutiveVersions) {
  constexpr int kThreads = 4;
  constexpr int kPutsPerThread = 25;
  absl::Mutex mu;
  std::vector<int64_t> versions;
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPutsPerThread; ++i) {
        absl::StatusOr<PolicyRecord> r =
            store_->Put("shared", PolicyJson(absl::StrCat("t", t, "-", i)),
                        absl::StrCat("thread-", t), absl::FromUnixSeconds(1700000000 + i));
        ASSERT_THAT(r, IsOk());
        absl::MutexLock lock(&mu);
        versions.push_back(r->version);
      }
    });
  }
  for (std::thread& th : threads) {
    th.join();
  }
  std::sort(versions.begin(), versions.end());
  std::vector<int64_t> want(size_t{kThreads} * kPutsPerThread);
  std::iota(want.begin(), want.end(), 1);
  EXPECT_EQ(versions, want);
  absl::StatusOr<PolicyRecord> latest = store_->Get("shared");
  ASSERT_THAT(latest, IsOk());
  EXPECT_EQ(latest->version, kThreads * kPutsPerThread);
}

TEST_F(PolicyStoreTest, TwoStoresOnOneFileShareVersionNumbers) {
  // Two connections to one file stand in for two processes: SQLite's lock, not our mutex,
  // keeps their versions consecutive.
  const std::string path = dir_ + "/shared.db";
  absl::StatusOr<std::unique_ptr<PolicyStore>> a = PolicyStore::Open(path);
  absl::StatusOr<std::unique_ptr<PolicyStore>> b = PolicyStore::Open(path);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  std::vector<std::thread> threads;
  for (PolicyStore* s : {a->get(), b->get()}) {
    threads.emplace_back([s] {
      for (int i = 0; i < 20; ++i) {
        ASSERT_THAT(s->Put("p", PolicyJson(absl::StrCat(reinterpret_cast<uintptr_t>(s), "-", i)),
                           "alice", absl::FromUnixSeconds(1700000000)),
                    IsOk());
      }
    });
  }
  for (std::thread& th : threads) {
    th.join();
  }
  absl::StatusOr<PolicyRecord> latest = (*a)->Get("p");
  ASSERT_THAT(latest, IsOk());
  EXPECT_EQ(latest->version, 40);
  for (int64_t v = 1; v <= 40; ++v) {
    EXPECT_THAT((*b)->Get("p", v), IsOk()) << v;
  }
  absl::StatusOr<std::vector<PolicyAuditEntry>> audit = (*b)->AuditLog();
  ASSERT_THAT(audit, IsOk());
  EXPECT_THAT(*audit, SizeIs(40));
}

}  // namespace
}  // namespace pml::attestation
