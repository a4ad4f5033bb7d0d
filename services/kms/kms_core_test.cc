// KMS core: root keys and epochs (first start, crash leftovers, rotation, wrong keys), the store
// (policies, audit, append-only), key release against a scripted verifier (the real pml-verifier
// is driven in tests/integration/kms_test.py), sealing, and replication's Export/Join.

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <thread>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/key.h"
#include "lib/crypto/seal.h"
#include "lib/crypto/secp256k1.h"
#include "lib/crypto/x509.h"
#include "lib/ratls/cert.h"
#include "lib/ratls/report_data.h"
#include "lib/store/sql.h"
#include "lib/store/testing/local_postgres.h"
#include "absl/strings/str_replace.h"
#include "lib/tdx/quote.h"
#include "lib/tee/simulator.h"
#include "services/kms/derive.h"
#include "services/kms/key_release.h"
#include "services/kms/kms_store.h"
#include "services/kms/root_keys.h"

namespace pml::kms {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

namespace av1 = attestation::v1;

std::string TempDir() {
  static int n = 0;
  auto d = std::filesystem::temp_directory_path() /
           absl::StrCat("pml-kms-", getpid(), "-", n++);
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d.string();
}

std::unique_ptr<KmsStore> OpenUrl(const std::string& url) {
  auto s = KmsStore::OpenUrl(url);  // with its reader connection, as pml-kms opens it
  EXPECT_THAT(s, IsOk());
  return *std::move(s);
}


// The same store-level behaviour on PostgreSQL (what replicas share): one throwaway server for
// the suite; every test gets its own database.
class PostgresKmsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto pg = store::LocalPostgres::Start();
    if (pg.ok())
      pg_ = pg->release();
    else
      skip_ = std::string(pg.status().message());
  }
  static void TearDownTestSuite() {
    delete pg_;
    pg_ = nullptr;
  }
  void SetUp() override {
    if (pg_ == nullptr)
      GTEST_SKIP() << "PostgreSQL unavailable: " << skip_;
    static int n = 0;
    const std::string name = absl::StrCat("kms", n++);
    auto admin = store::OpenSqlDb(pg_->url());
    ASSERT_THAT(admin, IsOk());
    ASSERT_THAT((*admin)->Exec(absl::StrCat("CREATE DATABASE ", name)), IsOk());
    url_ = absl::StrReplaceAll(pg_->url(), {{"postgresql:///postgres", "postgresql:///" + name}});
  }
  static store::LocalPostgres* pg_;
  static std::string skip_;
  std::string url_;
};
store::LocalPostgres* PostgresKmsTest::pg_ = nullptr;
std::string PostgresKmsTest::skip_;

// The same tests on both stores: SQLite (one file per test) and PostgreSQL (one database per
// test, on one throwaway server for the whole binary).
enum class Backend { kSqlite, kPostgres };

absl::StatusOr<std::string> NewStoreUrl(Backend b) {
  if (b == Backend::kSqlite)
    return absl::StrCat("sqlite:", TempDir(), "/kms.db");
  static absl::StatusOr<std::unique_ptr<store::LocalPostgres>>* pg =
      new absl::StatusOr<std::unique_ptr<store::LocalPostgres>>(store::LocalPostgres::Start());
  if (!pg->ok())
    return pg->status();
  static int n = 0;
  const std::string name = absl::StrCat("kmsp", n++);
  PML_ASSIGN_OR_RETURN(auto admin, store::OpenSqlDb((**pg)->url()));
  PML_RETURN_IF_ERROR(admin->Exec(absl::StrCat("CREATE DATABASE ", name)));
  return absl::StrReplaceAll((**pg)->url(), {{"postgresql:///postgres", "postgresql:///" + name}});
}

class BackendTest : public ::testing::TestWithParam<Backend> {
 protected:
  // A fresh store's URL; skips the test when PostgreSQL is not installed.
  std::string NewUrl() {
    auto url = NewStoreUrl(GetParam());
    if (!url.ok()) {
      if (absl::IsUnavailable(url.status()))
        skip_ = true;
      EXPECT_TRUE(absl::IsUnavailable(url.status())) << url.status();
      return "";
    }
    return *url;
  }
  bool skip_ = false;
};

std::string BackendName(const ::testing::TestParamInfo<Backend>& i) {
  return i.param == Backend::kSqlite ? "sqlite" : "postgres";
}

#define PML_NEW_URL(var)     \
  const std::string var = NewUrl(); \
  if (skip_)                 \
    GTEST_SKIP() << "PostgreSQL is not installed";

std::string EnvPub(RootKeys& keys, uint32_t epoch, const std::string& app) {
  auto e = keys.Get(epoch);
  EXPECT_THAT(e, IsOk());
  auto d = DeriveAppSecrets((*e)->secret, core::AsBytes(app), {});
  EXPECT_THAT(d, IsOk());
  return core::HexEncode(d->env_public_key);
}

const std::string kApp(20, '\xa1');

TEST_P(BackendTest, FirstStartThenReopenGivesTheSameKeys) {
  PML_NEW_URL(url);
  const std::string dir = TempDir();
  std::string before;
  {
    auto store = OpenUrl(url);
    auto keys = RootKeys::Open(dir, *store, "n1");
    ASSERT_THAT(keys, IsOk());
    auto cur = (*keys)->Current();
    ASSERT_THAT(cur, IsOk());
    EXPECT_EQ((*cur)->secret.epoch, 1u);
    before = EnvPub(**keys, 1, kApp);
    struct stat st;
    ASSERT_EQ(stat((dir + "/cluster.key").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600);
    // The store holds no root secret in the clear.
    auto rows = store->ListEpochs();
    ASSERT_THAT(rows, IsOk());
    const std::string k = core::ToString((*cur)->secret.k256_scalar.span());
    const std::string c = core::ToString((*cur)->secret.ca_scalar.span());
    for (const EpochRow& r : *rows) {
      for (const std::string* f : {&r.ca_cert_der, &r.k256_public_key, &r.sealed_secrets}) {
        EXPECT_EQ(f->find(k), std::string::npos);
        EXPECT_EQ(f->find(c), std::string::npos);
      }
    }
  }
  auto store = OpenUrl(url);
  auto keys = RootKeys::Open(dir, *store, "n1");
  ASSERT_THAT(keys, IsOk());
  EXPECT_EQ(EnvPub(**keys, 1, kApp), before);
  auto audit = store->ListAudit({});
  ASSERT_THAT(audit, IsOk());
  ASSERT_EQ(audit->first.size(), 1u);
  EXPECT_EQ(audit->first[0].action(), v1::AUDIT_ACTION_ROOT_KEY_GENERATE);
}

TEST_P(BackendTest, AFirstStartInterruptedAfterTheKeyFileCompletesOnRestart) {
  PML_NEW_URL(url);
  const std::string dir = TempDir();
  ASSERT_THAT(core::WriteFileAtomic(dir + "/cluster.key.new", std::string(32, 'k'), 0600), IsOk());
  auto store = OpenUrl(url);
  auto keys = RootKeys::Open(dir, *store, "n1");
  ASSERT_THAT(keys, IsOk());
  EXPECT_EQ((*(*keys)->Current())->secret.epoch, 1u);
  EXPECT_EQ(*core::ReadFile(dir + "/cluster.key"), std::string(32, 'k'));
  EXPECT_FALSE(core::PathExists(dir + "/cluster.key.new"));
  // A cluster key over an empty store (a wrong --store) is refused, not a new cluster.
  PML_NEW_URL(other);
  auto empty = OpenUrl(other);
  EXPECT_EQ(RootKeys::Open(dir, *empty, "n1").status().code(),
            absl::StatusCode::kFailedPrecondition);
  // A node whose pending first-start key lost to another node's is told to join.
  const std::string loser = TempDir();
  ASSERT_THAT(core::WriteFileAtomic(loser + "/cluster.key.new", std::string(32, 'z'), 0600),
              IsOk());
  auto lost = RootKeys::Open(loser, *store, "n2");
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(lost.status().message()), HasSubstr("--join"));
  EXPECT_FALSE(core::PathExists(loser + "/cluster.key.new"));
}

TEST_P(BackendTest, RotationKeepsOldEpochsAndRefusesRaces) {
  PML_NEW_URL(url);
  const std::string dir = TempDir();
  auto store = OpenUrl(url);
  auto keys = RootKeys::Open(dir, *store, "n1");
  ASSERT_THAT(keys, IsOk());
  const std::string e1 = EnvPub(**keys, 1, kApp);
  auto r = (*keys)->Rotate(1u, "test", "spiffe://pml/operator/t");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ((*r)->secret.epoch, 2u);
  EXPECT_EQ(EnvPub(**keys, 1, kApp), e1);
  EXPECT_NE(EnvPub(**keys, 2, kApp), e1);
  EXPECT_EQ((*keys)->Rotate(1u, "stale", "x").status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ((*keys)->Get(9).status().code(), absl::StatusCode::kNotFound);
  // A second node object on the same store (a replica) sees the rotation.
  auto again = RootKeys::Open(dir, *store, "n2");
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ((*(*again)->Current())->secret.epoch, 2u);
  EXPECT_EQ(EnvPub(**again, 2, kApp), EnvPub(**keys, 2, kApp));
}

TEST_P(BackendTest, StoreWithoutKeyOrWithAnotherClustersKeyIsRefused) {
  PML_NEW_URL(url);
  const std::string dir = TempDir();
  {
    auto store = OpenUrl(url);
    ASSERT_THAT(RootKeys::Open(dir, *store, "n1"), IsOk());
  }
  // Another node on the same store, without the cluster key: it must join.
  const std::string other = TempDir();
  auto store = OpenUrl(url);
  auto missing = RootKeys::Open(other, *store, "n2");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("--join"));
  ASSERT_THAT(core::WriteFileAtomic(other + "/cluster.key", std::string(32, 'x'), 0600), IsOk());
  auto wrong = RootKeys::Open(other, *store, "n2");
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(BackendTest, ExportJoinReproducesEveryEpoch) {
  PML_NEW_URL(url_a);
  PML_NEW_URL(url_b);
  PML_NEW_URL(url_c);
  const std::string a = TempDir(), b = TempDir();
  auto sa = OpenUrl(url_a);
  auto ka = RootKeys::Open(a, *sa, "a");
  ASSERT_THAT(ka, IsOk());
  ASSERT_THAT((*ka)->Rotate(std::nullopt, "", "x"), IsOk());
  auto secrets = (*ka)->Export();
  ASSERT_THAT(secrets, IsOk());
  auto sb = OpenUrl(url_b);
  auto kb = RootKeys::Join(b, *sb, "b", *secrets);
  ASSERT_THAT(kb, IsOk());
  for (uint32_t e : {1u, 2u})
    EXPECT_EQ(EnvPub(**kb, e, kApp), EnvPub(**ka, e, kApp));
  EXPECT_EQ((*(*kb)->Current())->key_provider_id(), (*(*ka)->Current())->key_provider_id());
  // Joining twice is refused; a tampered secret writes nothing.
  EXPECT_EQ(RootKeys::Join(b, *sb, "b", *secrets).status().code(),
            absl::StatusCode::kAlreadyExists);
  const std::string c = TempDir();
  auto sc = OpenUrl(url_c);
  v1::RootSecrets bad = *secrets;
  bad.mutable_epochs(1)->set_k256_key(std::string(31, 'x'));
  EXPECT_FALSE(RootKeys::Join(c, *sc, "c", bad).ok());
  EXPECT_FALSE(core::PathExists(c + "/cluster.key"));
  EXPECT_TRUE(sc->ListEpochs()->empty());
}

TEST_P(BackendTest, PoliciesAreVersionedAndTheAuditIsAppendOnly) {
  PML_NEW_URL(url);
  auto store = OpenUrl(url);
  v1::AppPolicy p;
  p.set_app_id(kApp);
  p.set_verifier_policy_id("app-x");
  EXPECT_EQ(store->PutAppPolicy(p, 0, "op").status().code(),
            absl::StatusCode::kFailedPrecondition);  // no cluster key yet: no MAC key
  store->SetPolicyMacKey(crypto::SecretBytes(std::vector<uint8_t>(32, 7)));
  p.Clear();
  p.set_app_id(kApp);
  p.set_verifier_policy_id("app-x");
  auto v1p = store->PutAppPolicy(p, 0, "op");
  ASSERT_THAT(v1p, IsOk());
  EXPECT_EQ(v1p->version(), 1u);
  EXPECT_EQ(store->PutAppPolicy(p, 5, "op").status().code(), absl::StatusCode::kAborted);
  auto v2p = store->PutAppPolicy(p, 1, "op");
  ASSERT_THAT(v2p, IsOk());
  EXPECT_EQ(v2p->version(), 2u);
  EXPECT_EQ(store->GetAppPolicy(std::string(20, 'z')).status().code(),
            absl::StatusCode::kNotFound);
  for (int i = 0; i < 3; ++i) {
    v1::AppPolicy q;
    q.set_app_id(std::string(19, 'b') + static_cast<char>('0' + i));
    q.set_inline_policy_json("{}");
    ASSERT_THAT(store->PutAppPolicy(q, 0, "op"), IsOk());
  }
  auto page1 = store->ListAppPolicies(2, "");
  ASSERT_THAT(page1, IsOk());
  EXPECT_EQ(page1->first.size(), 2u);
  auto page2 = store->ListAppPolicies(2, page1->second);
  ASSERT_THAT(page2, IsOk());
  EXPECT_EQ(page2->first.size(), 2u);
  EXPECT_TRUE(page2->second.empty());
  EXPECT_FALSE(store->ListAppPolicies(2, "zz").ok());
  ASSERT_THAT(store->DeleteAppPolicy(kApp, "op"), IsOk());
  EXPECT_EQ(store->DeleteAppPolicy(kApp, "op").code(), absl::StatusCode::kNotFound);
  v1::ListAuditEventsRequest r;
  r.set_app_id(kApp);
  auto audit = store->ListAudit(r);
  ASSERT_THAT(audit, IsOk());
  ASSERT_EQ(audit->first.size(), 3u);  // put, put, delete
  EXPECT_EQ(audit->first[2].action(), v1::AUDIT_ACTION_POLICY_DELETE);
  EXPECT_LT(audit->first[0].sequence(), audit->first[1].sequence());
  // Append-only: the database itself refuses to change or drop audit rows.
  auto db = store::OpenSqlDb(url);
  ASSERT_THAT(db, IsOk());
  EXPECT_FALSE((*db)->Query("UPDATE kms_audit SET outcome = 0").ok());
  EXPECT_FALSE((*db)->Query("DELETE FROM kms_audit").ok());
}

// App-policy rows are authenticated with a key derived from the cluster key: a row written or
// changed by anyone else is refused by name (kDataLoss), never used.
TEST_P(BackendTest, PolicyRowsWrittenOutsideTheClusterAreRefused) {
  PML_NEW_URL(url);
  auto store = OpenUrl(url);
  store->SetPolicyMacKey(crypto::SecretBytes(std::vector<uint8_t>(32, 7)));
  const std::string other_app(20, '\xb2');
  for (const std::string& app : {kApp, other_app}) {
    v1::AppPolicy p;
    p.set_app_id(app);
    p.set_verifier_policy_id(app == kApp ? "strict" : "anything-goes");
    ASSERT_THAT(store->PutAppPolicy(p, 0, "op"), IsOk());
  }
  ASSERT_THAT(store->GetAppPolicy(kApp), IsOk());
  auto db = store::OpenSqlDb(url);
  ASSERT_THAT(db, IsOk());
  auto row = (*db)->Query("SELECT body, mac FROM kms_app_policy WHERE app_id = ?",
                          {store::Blob{other_app}});
  ASSERT_THAT(row, IsOk());
  ASSERT_EQ(row->size(), 1u);
  auto bytes = [](const store::SqlValue& v) { return std::get<store::Blob>(v).bytes; };
  // 1. Another app's row (body and MAC) copied over this app's.
  ASSERT_THAT((*db)->Query("UPDATE kms_app_policy SET body = ?, mac = ? WHERE app_id = ?",
                           {store::Blob{bytes((*row)[0][0])}, store::Blob{bytes((*row)[0][1])},
                            store::Blob{kApp}}),
              IsOk());
  EXPECT_THAT(store->GetAppPolicy(kApp),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr(core::HexEncode(core::AsBytes(kApp)))));
  // 2. A body of the attacker's choosing, MAC kept or dropped.
  v1::AppPolicy evil;
  evil.set_app_id(kApp);
  evil.set_inline_policy_json(R"({"allow_any_os":true,"allow_any_app":true})");
  evil.set_version(9);
  ASSERT_THAT((*db)->Query("UPDATE kms_app_policy SET body = ? WHERE app_id = ?",
                           {store::Blob{evil.SerializeAsString()}, store::Blob{kApp}}),
              IsOk());
  EXPECT_EQ(store->GetAppPolicy(kApp).status().code(), absl::StatusCode::kDataLoss);
  ASSERT_THAT((*db)->Query("UPDATE kms_app_policy SET mac = NULL WHERE app_id = ?",
                           {store::Blob{kApp}}),
              IsOk());
  EXPECT_EQ(store->GetAppPolicy(kApp).status().code(), absl::StatusCode::kDataLoss);
  auto listed = store->ListAppPolicies(10, "");
  ASSERT_THAT(listed, IsOk());
  ASSERT_EQ(listed->first.size(), 2u);
  for (const v1::AppPolicy& lp : listed->first) {
    EXPECT_EQ(lp.unauthenticated(), lp.app_id() == kApp) << core::HexEncode(core::AsBytes(lp.app_id()));
    if (lp.unauthenticated()) {
      EXPECT_FALSE(lp.has_inline_policy_json());  // nothing of the row is passed on
      EXPECT_EQ(lp.version(), 0u);
    }
  }
  // 3. Another cluster's key does not verify this cluster's rows.
  auto foreign = OpenUrl(url);
  foreign->SetPolicyMacKey(crypto::SecretBytes(std::vector<uint8_t>(32, 8)));
  EXPECT_EQ(foreign->GetAppPolicy(other_app).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(store->GetAppPolicy(other_app), IsOk());
  // Putting it again (as the operator is told to) restores the app.
  v1::AppPolicy again;
  again.set_app_id(kApp);
  again.set_verifier_policy_id("strict");
  ASSERT_THAT(store->PutAppPolicy(again, 0, "op"), IsOk());
  auto got = store->GetAppPolicy(kApp);
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->verifier_policy_id(), "strict");
}

// Group commit: concurrent appends each get their own sequence once durable; none is lost or
// duplicated.
TEST_P(BackendTest, ConcurrentAuditAppendsAreEachCommittedOnce) {
  PML_NEW_URL(url);
  auto store = OpenUrl(url);
  store->SetAuditChain(crypto::SecretBytes(std::vector<uint8_t>(32, 7)), "node-a");
  constexpr int kThreads = 8, kEach = 25;
  std::vector<std::vector<uint64_t>> seqs(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        v1::AuditEvent e;
        e.set_action(v1::AUDIT_ACTION_KEY_RELEASE);
        e.set_outcome(v1::AUDIT_OUTCOME_REFUSED);
        e.set_app_id(kApp);
        e.set_reason(absl::StrCat("thread ", t, " event ", i));
        auto seq = store->AppendAudit(e);
        ASSERT_THAT(seq, IsOk());
        seqs[t].push_back(*seq);
      }
    });
  }
  for (std::thread& t : threads)
    t.join();
  std::set<uint64_t> all;
  for (const auto& v : seqs) {
    EXPECT_TRUE(std::is_sorted(v.begin(), v.end()));  // one thread's events stay in order
    all.insert(v.begin(), v.end());
  }
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kEach));
  std::set<std::string> reasons;
  std::set<uint64_t> chain;  // group commits still give one unbroken chain
  std::string token;
  do {
    v1::ListAuditEventsRequest r;
    r.set_app_id(kApp);
    r.set_page_size(100);
    r.set_page_token(token);
    auto page = store->ListAudit(r);
    ASSERT_THAT(page, IsOk());
    for (const v1::AuditEvent& e : page->first) {
      EXPECT_TRUE(all.count(e.sequence())) << e.sequence();
      EXPECT_FALSE(e.unauthenticated()) << e.unauthenticated_reason();
      EXPECT_EQ(e.node(), "node-a");
      chain.insert(e.node_sequence());
      reasons.insert(e.reason());
    }
    token = page->second;
  } while (!token.empty());
  EXPECT_EQ(reasons.size(), static_cast<size_t>(kThreads * kEach));
  ASSERT_EQ(chain.size(), static_cast<size_t>(kThreads * kEach));
  EXPECT_EQ(*chain.begin(), 1u);
  EXPECT_EQ(*chain.rbegin(), static_cast<uint64_t>(kThreads * kEach));
}

// What the audit lists, by sequence: whether each row verified, and why not.
std::map<uint64_t, v1::AuditEvent> ListAll(KmsStore& store) {
  std::map<uint64_t, v1::AuditEvent> out;
  std::string token;
  do {
    v1::ListAuditEventsRequest r;
    r.set_page_size(3);  // several pages: the check must not depend on the page
    r.set_page_token(token);
    auto page = store.ListAudit(r);
    EXPECT_THAT(page, IsOk());
    if (!page.ok())
      break;
    for (const v1::AuditEvent& e : page->first)
      out[e.sequence()] = e;
    token = page->second;
  } while (!token.empty());
  return out;
}

// A writer of the database who is not a KMS node (and so lacks the cluster key) drops the
// append-only triggers, as a database owner can, and changes, deletes and forges audit rows:
// every such row, and the row after a deleted one, lists as unauthenticated with the reason; the
// rest still verify, and the nodes' chains go on.
TEST_P(BackendTest, AuditRowsAreChainedPerNodeAndTamperingIsListed) {
  PML_NEW_URL(url);
  const crypto::SecretBytes cluster(std::vector<uint8_t>(32, 7));
  auto a = OpenUrl(url);
  auto b = OpenUrl(url);  // a second node on the same database
  a->SetAuditChain(cluster, "node-a");
  b->SetAuditChain(cluster, "node-b");
  auto append = [](KmsStore& s, const std::string& reason) {
    v1::AuditEvent e;
    e.set_action(v1::AUDIT_ACTION_KEY_RELEASE);
    e.set_outcome(v1::AUDIT_OUTCOME_ALLOWED);
    e.set_app_id(kApp);
    e.set_reason(reason);
    auto seq = s.AppendAudit(e);
    EXPECT_THAT(seq, IsOk());
    return seq.ok() ? *seq : 0;
  };
  std::map<std::string, uint64_t> seq;  // "a3" -> sequence of node-a's 3rd row
  for (int i = 1; i <= 6; ++i) {
    seq[absl::StrCat("a", i)] = append(*a, absl::StrCat("a", i));
    if (i <= 2)
      seq[absl::StrCat("b", i)] = append(*b, absl::StrCat("b", i));
  }
  auto listed = ListAll(*a);
  ASSERT_EQ(listed.size(), 8u);
  for (const auto& [s, e] : listed) {
    EXPECT_FALSE(e.unauthenticated()) << s << ": " << e.unauthenticated_reason();
    EXPECT_EQ(e.reason(), absl::StrCat(e.node() == "node-a" ? "a" : "b", e.node_sequence()));
  }

  auto db = store::OpenSqlDb(url);
  ASSERT_THAT(db, IsOk());
  const bool pg = GetParam() == Backend::kPostgres;
  ASSERT_THAT((*db)->Exec(pg ? "DROP TRIGGER kms_audit_append_only ON kms_audit"
                             : "DROP TRIGGER kms_audit_no_update; DROP TRIGGER kms_audit_no_delete"),
              IsOk());
  // a2: a refusal turned into a release (an indexed column).
  ASSERT_THAT((*db)->Query("UPDATE kms_audit SET outcome = ? WHERE seq = ?",
                           {int64_t{v1::AUDIT_OUTCOME_REFUSED}, int64_t(seq["a2"])}),
              IsOk());
  // a4: the event itself rewritten.
  v1::AuditEvent rewritten;
  rewritten.set_action(v1::AUDIT_ACTION_KEY_RELEASE);
  rewritten.set_outcome(v1::AUDIT_OUTCOME_ALLOWED);
  rewritten.set_app_id(kApp);
  rewritten.set_reason("nothing happened");
  ASSERT_THAT((*db)->Query("UPDATE kms_audit SET event = ? WHERE seq = ?",
                           {store::Blob{rewritten.SerializeAsString()}, int64_t(seq["a4"])}),
              IsOk());
  // a5 deleted: a6 has lost its predecessor.
  ASSERT_THAT((*db)->Query("DELETE FROM kms_audit WHERE seq = ?", {int64_t(seq["a5"])}), IsOk());
  // Forged rows: one without a MAC, one with node-b's last MAC copied as node-b's next row.
  ASSERT_THAT((*db)->Query("INSERT INTO kms_audit (time_unix, app_id, action, outcome, event) "
                           "VALUES (1, ?, 1, 1, ?)",
                           {store::Blob{kApp}, store::Blob{rewritten.SerializeAsString()}}),
              IsOk());
  auto b2 = (*db)->Query("SELECT mac FROM kms_audit WHERE seq = ?", {int64_t(seq["b2"])});
  ASSERT_THAT(b2, IsOk());
  ASSERT_EQ(b2->size(), 1u);
  ASSERT_THAT((*db)->Query("INSERT INTO kms_audit (time_unix, app_id, action, outcome, event, "
                           "node, node_seq, mac) VALUES (1, ?, 1, 1, ?, 'node-b', 3, ?)",
                           {store::Blob{kApp}, store::Blob{rewritten.SerializeAsString()},
                            (*b2)[0][0]}),
              IsOk());

  listed = ListAll(*a);
  ASSERT_EQ(listed.size(), 9u);  // 8 - a5 + 2 forged
  std::map<std::string, std::string> why;  // by label: "a2", ..., "forged-nomac", "forged-b3"
  for (const auto& [s, e] : listed) {
    std::string label = e.node().empty() ? "forged-nomac"
                        : e.node() == "node-b" && e.node_sequence() == 3
                            ? "forged-b3"
                            : absl::StrCat(e.node() == "node-a" ? "a" : "b", e.node_sequence());
    if (e.unauthenticated())
      why[label] = e.unauthenticated_reason();
  }
  EXPECT_THAT(why, ::testing::ElementsAre(
                       ::testing::Pair("a2", HasSubstr("MAC does not verify")),
                       ::testing::Pair("a4", HasSubstr("MAC does not verify")),
                       ::testing::Pair("a6", HasSubstr("#5) is missing")),
                       ::testing::Pair("forged-b3", HasSubstr("MAC does not verify")),
                       ::testing::Pair("forged-nomac", HasSubstr("no MAC"))));
  // The untouched rows (a1, a3, b1, b2) still verify: a3's MAC covers a2's MAC, not its content.

  // Another cluster's key verifies nothing; a store without the key checks nothing.
  auto foreign = OpenUrl(url);
  foreign->SetAuditChain(crypto::SecretBytes(std::vector<uint8_t>(32, 8)), "node-a");
  for (const auto& [s, e] : ListAll(*foreign))
    EXPECT_TRUE(e.unauthenticated()) << s;
  auto keyless = OpenUrl(url);
  for (const auto& [s, e] : ListAll(*keyless)) {
    EXPECT_TRUE(e.unauthenticated()) << s;
    if (!e.node().empty()) {
      EXPECT_THAT(e.unauthenticated_reason(), HasSubstr("not checked"));
    }
  }

  // The nodes go on from their newest rows: node-a from a6. node-b's next append collides with the
  // forged #3 (one row per chain position), is refused by name (so that release would be
  // refused: no audit, no release), and the one after continues after the forged row, which
  // stays flagged.
  const uint64_t a7 = append(*a, "a7");
  v1::AuditEvent collide;
  collide.set_reason("b3");
  EXPECT_THAT(b->AppendAudit(collide),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("#3 of node node-b is taken")));
  const uint64_t b4 = append(*b, "b4");
  listed = ListAll(*a);
  ASSERT_TRUE(listed.count(a7) && listed.count(b4));
  EXPECT_FALSE(listed[a7].unauthenticated()) << listed[a7].unauthenticated_reason();
  EXPECT_EQ(listed[a7].node_sequence(), 7u);
  EXPECT_FALSE(listed[b4].unauthenticated()) << listed[b4].unauthenticated_reason();
  EXPECT_EQ(listed[b4].node_sequence(), 4u);
  size_t flagged = 0;
  for (const auto& [s, e] : listed)
    flagged += e.unauthenticated() ? 1 : 0;
  EXPECT_EQ(flagged, 5u);
  // One row per chain position: a second writer of node-a's chain position is refused.
  EXPECT_FALSE((*db)->Query("INSERT INTO kms_audit (time_unix, app_id, action, outcome, event, "
                            "node, node_seq) VALUES (1, ?, 1, 1, ?, 'node-a', 7)",
                            {store::Blob{kApp}, store::Blob{rewritten.SerializeAsString()}})
                   .ok());
}

// Subtler changes: a row moved in the global order (its sequence number is not in its MAC, but
// its successor's predecessor must come before it), and (SQLite) an app id rewritten as TEXT, which
// hides the row from app-filtered listings.
TEST_P(BackendTest, RenumberedOrRetypedAuditRowsAreListed) {
  PML_NEW_URL(url);
  auto s = OpenUrl(url);
  s->SetAuditChain(crypto::SecretBytes(std::vector<uint8_t>(32, 7)), "node-a");
  std::vector<uint64_t> seq;
  for (int i = 1; i <= 4; ++i) {
    v1::AuditEvent e;
    e.set_app_id(kApp);
    e.set_reason(absl::StrCat("a", i));
    auto r = s->AppendAudit(e);
    ASSERT_THAT(r, IsOk());
    seq.push_back(*r);
  }
  auto db = store::OpenSqlDb(url);
  ASSERT_THAT(db, IsOk());
  const bool pg = GetParam() == Backend::kPostgres;
  ASSERT_THAT((*db)->Exec(pg ? "DROP TRIGGER kms_audit_append_only ON kms_audit"
                             : "DROP TRIGGER kms_audit_no_update"),
              IsOk());
  // a2 moved after everything: a3's predecessor now comes after it.
  ASSERT_THAT((*db)->Query("UPDATE kms_audit SET seq = ? WHERE seq = ?",
                           {int64_t(seq[3] + 100), int64_t(seq[1])}),
              IsOk());
  if (!pg) {
    ASSERT_THAT((*db)->Query("UPDATE kms_audit SET app_id = CAST(app_id AS TEXT) WHERE seq = ?",
                             {int64_t(seq[3])}),
                IsOk());
  }
  std::map<std::string, std::string> why;
  for (const auto& [n, e] : ListAll(*s)) {
    if (e.unauthenticated())
      why[absl::StrCat("a", e.node_sequence())] = e.unauthenticated_reason();
  }
  EXPECT_THAT(why["a3"], HasSubstr("renumbered"));
  if (!pg) {
    EXPECT_THAT(why["a4"], HasSubstr("wrong type"));
    EXPECT_EQ(why.size(), 2u);
  } else {
    EXPECT_EQ(why.size(), 1u);
  }
}

// A store from before audit rows were chained: opening it adds the columns, its old rows list as
// unauthenticated ("no MAC"), and new rows chain from 1.
TEST_P(BackendTest, AuditRowsFromBeforeTheChainListAsUnauthenticated) {
  PML_NEW_URL(url);
  const bool pg = GetParam() == Backend::kPostgres;
  v1::AuditEvent old;
  old.set_action(v1::AUDIT_ACTION_KEY_RELEASE);
  old.set_app_id(kApp);
  old.set_reason("from an older pml-kms");
  {
    auto db = store::OpenSqlDb(url);
    ASSERT_THAT(db, IsOk());
    ASSERT_THAT((*db)->Exec(pg ? "CREATE TABLE kms_audit (seq BIGSERIAL PRIMARY KEY, time_unix "
                                 "BIGINT NOT NULL, app_id BYTEA NOT NULL, action BIGINT NOT NULL, "
                                 "outcome BIGINT NOT NULL, event BYTEA NOT NULL)"
                               : "CREATE TABLE kms_audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                                 "time_unix INTEGER NOT NULL, app_id BLOB NOT NULL, action "
                                 "INTEGER NOT NULL, outcome INTEGER NOT NULL, event BLOB NOT NULL)"),
                IsOk());
    ASSERT_THAT((*db)->Query("INSERT INTO kms_audit (time_unix, app_id, action, outcome, event) "
                             "VALUES (1, ?, 1, 0, ?)",
                             {store::Blob{kApp}, store::Blob{old.SerializeAsString()}}),
                IsOk());
  }
  auto s = OpenUrl(url);
  s->SetAuditChain(crypto::SecretBytes(std::vector<uint8_t>(32, 7)), "node-a");
  v1::AuditEvent now;
  now.set_reason("new");
  ASSERT_THAT(s->AppendAudit(now), IsOk());
  auto listed = ListAll(*s);
  ASSERT_EQ(listed.size(), 2u);
  const v1::AuditEvent& first = listed.begin()->second;
  EXPECT_EQ(first.reason(), "from an older pml-kms");
  EXPECT_TRUE(first.unauthenticated());
  EXPECT_THAT(first.unauthenticated_reason(), HasSubstr("no MAC"));
  const v1::AuditEvent& second = listed.rbegin()->second;
  EXPECT_FALSE(second.unauthenticated()) << second.unauthenticated_reason();
  EXPECT_EQ(second.node_sequence(), 1u);
}

TEST_F(PostgresKmsTest, TwoNodesShareEpochsRotationsAndTheAudit) {
  const std::string a = TempDir(), b = TempDir();
  auto sa = OpenUrl(url_);
  auto ka = RootKeys::Open(a, *sa, "a");
  ASSERT_THAT(ka, IsOk());
  EXPECT_EQ(sa->kind(), "postgres");
  // Node b shares the store: without the cluster key it must join; with it, it reads the epochs.
  auto sb = OpenUrl(url_);
  EXPECT_EQ(RootKeys::Open(b, *sb, "b").status().code(), absl::StatusCode::kFailedPrecondition);
  auto secrets = (*ka)->Export();
  ASSERT_THAT(secrets, IsOk());
  auto kb = RootKeys::Join(b, *sb, "b", *secrets);
  ASSERT_THAT(kb, IsOk());
  EXPECT_EQ(EnvPub(**kb, 1, kApp), EnvPub(**ka, 1, kApp));
  // A rotation on a is seen by b; racing rotations from both: exactly one wins.
  ASSERT_THAT((*ka)->Rotate(1u, "", "op"), IsOk());
  EXPECT_EQ((*(*kb)->Current())->secret.epoch, 2u);
  EXPECT_EQ(EnvPub(**kb, 2, kApp), EnvPub(**ka, 2, kApp));
  auto ra = (*ka)->Rotate(2u, "", "op");
  auto rb = (*kb)->Rotate(2u, "", "op");
  EXPECT_NE(ra.ok(), rb.ok());
  EXPECT_EQ((ra.ok() ? rb : ra).status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(EnvPub(**kb, 3, kApp), EnvPub(**ka, 3, kApp));
  // Policies and audit are shared, append-only there too.
  v1::AppPolicy p;
  p.set_app_id(kApp);
  p.set_verifier_policy_id("x");
  ASSERT_THAT(sa->PutAppPolicy(p, 0, "op"), IsOk());
  EXPECT_EQ(sb->GetAppPolicy(kApp)->version(), 1u);
  EXPECT_EQ(sb->PutAppPolicy(p, 5, "op").status().code(), absl::StatusCode::kAborted);
  auto audit = sb->ListAudit({});
  ASSERT_THAT(audit, IsOk());
  EXPECT_GE(audit->first.size(), 4u);
  auto raw = store::OpenSqlDb(url_);
  ASSERT_THAT(raw, IsOk());
  EXPECT_FALSE((*raw)->Query("DELETE FROM kms_audit").ok());
  ASSERT_THAT(sa->UpsertReplica("a", "x:1", 1, 2), IsOk());
  ASSERT_THAT(sb->UpsertReplica("b", "x:2", 1, 2), IsOk());
  EXPECT_EQ(sa->ListReplicas()->size(), 2u);
}

// A verifier that answers from a script (the real one runs in the integration test), checking the
// report-data binding the KMS asks for against the quote, as pml-verifier does.
class ScriptedVerifier final : public VerifierClient {
 public:
  bool allow = true;
  std::string app_id_in_log = kApp;
  std::string instance_id = std::string(20, '\x11');
  int calls = 0;
  absl::StatusOr<av1::AppraiseResponse> Appraise(const av1::AppraiseRequest& req) override {
    ++calls;
    av1::AppraiseResponse r;
    auto purpose = req.binding().purpose() == av1::REPORT_DATA_PURPOSE_KMS_KEY_RELEASE
                       ? ratls::ReportDataPurpose::kKmsKeyRelease
                       : ratls::ReportDataPurpose::kKmsReplicaJoin;
    auto want = ratls::ComputeReportData(purpose, core::AsBytes(req.binding().value()));
    const std::string& q = req.evidence().tdx_quote();
    const bool bound = want.ok() && q.size() > 632 &&
                       q.compare(568, 64, std::string(want->begin(), want->end())) == 0;
    r.set_allowed(allow && bound);
    r.set_status(r.allowed() ? av1::EAR_STATUS_AFFIRMING : av1::EAR_STATUS_CONTRAINDICATED);
    if (!bound) {
      auto* f = r.add_failed_checks();
      f->set_check(av1::APPRAISAL_CHECK_REPORT_DATA_BINDING);
      f->set_detail("report data does not commit to the binding");
    }
    r.set_policy_id(req.policy_id().empty() ? "inline:x" : req.policy_id());
    r.mutable_app_info()->set_app_id(app_id_in_log);
    r.mutable_app_info()->set_instance_id(instance_id);
    r.set_simulated(true);
    r.set_token("header.payload.sig");
    return r;
  }
  std::string address() const override { return "scripted"; }
};

class KeyReleaseTest : public BackendTest {
 protected:
  void SetUp() override {
    dir_ = TempDir();
    const std::string url = NewUrl();
    if (skip_)
      GTEST_SKIP() << "PostgreSQL is not installed";
    url_ = url;
    store_ = OpenUrl(url);
    keys_ = *RootKeys::Open(dir_, *store_, "n1");
    const auto token = crypto::Sha256(std::string("operator-join-token"));
    core_ = std::make_unique<KeyReleaseCore>(
        *keys_, *store_, verifier_,
        KeyReleaseOptions{.node_name = "n1",
                          .replica_policy_id = "kms-replica",
                          .replica_join_token_sha256 = std::string(token.begin(), token.end())});
    sim_ = *tee::TdxSimulator::Create({});
    v1::AppPolicy p;
    p.set_app_id(kApp);
    p.set_verifier_policy_id("app-x");
    ASSERT_THAT(store_->PutAppPolicy(p, 0, "op"), IsOk());
  }

  // A request whose quote commits to a fresh ephemeral key.
  v1::GetAppKeysRequest Request(crypto::X25519KeyPair& eph, bool bind = true) {
    eph = *crypto::GenerateX25519();
    auto rd = *ratls::ComputeReportData(ratls::ReportDataPurpose::kKmsKeyRelease,
                                        eph.public_key);
    if (!bind)
      rd[0] ^= 1;
    v1::GetAppKeysRequest r;
    r.mutable_evidence()->set_tdx_quote(core::ToString(*sim_->GetQuote(rd)));
    r.mutable_evidence()->mutable_app_info()->set_app_id(kApp);
    r.set_ephemeral_public_key(std::string(eph.public_key.begin(), eph.public_key.end()));
    return r;
  }

  v1::AppKeys OpenKeys(const v1::GetAppKeysResponse& resp, const crypto::X25519KeyPair& eph) {
    crypto::SealedBox box;
    const auto& s = resp.sealed_keys();
    std::copy(s.kms_ephemeral_public_key().begin(), s.kms_ephemeral_public_key().end(),
              box.ephemeral_public_key.begin());
    std::copy(s.nonce().begin(), s.nonce().end(), box.nonce.begin());
    box.ciphertext.assign(s.ciphertext().begin(), s.ciphertext().end());
    auto plain = crypto::Open(eph.private_key.span(), box, core::AsBytes(kApp), kAppKeysSealLabel);
    EXPECT_THAT(plain, IsOk());
    v1::AppKeys k;
    EXPECT_TRUE(k.ParseFromArray(plain->span().data(), static_cast<int>(plain->size())));
    return k;
  }

  std::string dir_;
  std::string url_;
  std::unique_ptr<KmsStore> store_;
  std::unique_ptr<RootKeys> keys_;
  ScriptedVerifier verifier_;
  std::unique_ptr<KeyReleaseCore> core_;
  std::unique_ptr<tee::TdxSimulator> sim_;
};

// A node with a TEE (here the simulator) serves an RA-TLS certificate: its quote's report data
// binds the certificate's key, and GetPublicInfo answers the same evidence. Without a TEE: neither.
TEST_P(KeyReleaseTest, WithATeeTheGuestCertificateIsRaTlsAndPublicInfoCarriesTheEvidence) {
  auto identity = keys_->Identity();
  ASSERT_THAT(identity, IsOk());
  auto leaf_of = [](const GuestTls& tls) {
    auto certs = crypto::ParsePemCertificates(tls.chain_pem);
    EXPECT_THAT(certs, IsOk());
    return std::move((*certs)[0]);
  };
  auto plain = IssueGuestTls(**identity, "n1", {"127.0.0.1"});
  ASSERT_THAT(plain, IsOk());
  EXPECT_TRUE(plain->evidence.tdx_quote().empty());
  auto plain_claims = ratls::ParseRaTlsClaims(*leaf_of(*plain));
  ASSERT_THAT(plain_claims, IsOk());
  EXPECT_TRUE(plain_claims->quote.empty());
  EXPECT_EQ(plain_claims->usage, "kms:rpc");
  auto info = core_->GetPublicInfo();
  ASSERT_THAT(info, IsOk());
  EXPECT_FALSE(info->has_kms_evidence());

  auto tls = IssueGuestTls(**identity, "n1", {"127.0.0.1"}, sim_.get());
  ASSERT_THAT(tls, IsOk());
  crypto::X509Ptr leaf = leaf_of(*tls);
  auto claims = ratls::ParseRaTlsClaims(*leaf);
  ASSERT_THAT(claims, IsOk());
  EXPECT_EQ(claims->usage, "kms:rpc");
  ASSERT_FALSE(claims->quote.empty());
  auto quote = tdx::ParseQuote(claims->quote);
  ASSERT_THAT(quote, IsOk());
  ASSERT_TRUE(quote->td_report.has_value());
  EXPECT_THAT(ratls::CheckBinding(*leaf, quote->td_report->report_data), IsOk());
  EXPECT_EQ(tls->evidence.tdx_quote(), core::ToString(claims->quote));
  EXPECT_EQ(tls->evidence.report_data(), core::ToString(quote->td_report->report_data));
  EXPECT_TRUE(tls->evidence.simulated());
  EXPECT_EQ(tls->evidence.tee_provider(), common::v1::TEE_PROVIDER_SIMULATOR);
  // Another certificate's key is not bound by this quote.
  auto other = IssueGuestTls(**identity, "n1", {"127.0.0.1"});
  ASSERT_THAT(other, IsOk());
  EXPECT_FALSE(ratls::CheckBinding(*leaf_of(*other), quote->td_report->report_data).ok());

  KeyReleaseOptions o;
  o.kms_evidence = tls->evidence;
  KeyReleaseCore attested(*keys_, *store_, verifier_, o);
  info = attested.GetPublicInfo();
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->kms_evidence().tdx_quote(), tls->evidence.tdx_quote());
  EXPECT_TRUE(info->kms_evidence().simulated());
}

TEST_P(KeyReleaseTest, ReleasesSealedKeysThatAreStableAndChainToTheRoot) {
  crypto::X25519KeyPair eph;
  auto resp = core_->GetAppKeys(Request(eph));
  ASSERT_THAT(resp, IsOk());
  EXPECT_EQ(resp->epoch(), 1u);
  EXPECT_EQ(resp->attestation_token(), "header.payload.sig");
  v1::AppKeys k = OpenKeys(*resp, eph);
  EXPECT_EQ(k.k256_key().size(), 32u);
  EXPECT_EQ(k.disk_crypt_key().size(), 32u);
  // Same app and instance: same keys, under a new ephemeral key.
  crypto::X25519KeyPair eph2;
  auto again = core_->GetAppKeys(Request(eph2));
  ASSERT_THAT(again, IsOk());
  v1::AppKeys k2 = OpenKeys(*again, eph2);
  EXPECT_EQ(k2.k256_key(), k.k256_key());
  EXPECT_EQ(k2.disk_crypt_key(), k.disk_crypt_key());
  EXPECT_EQ(k2.env_crypt_key(), k.env_crypt_key());
  // The app CA chains to the epoch's root CA; the k256 signature recovers to the root k256 key.
  auto ca = crypto::ParseDerCertificate(core::AsBytes(k.app_ca_cert()));
  auto root = crypto::ParseDerCertificate(core::AsBytes(k.kms_root_ca_cert()));
  ASSERT_THAT(ca, IsOk());
  ASSERT_THAT(root, IsOk());
  EXPECT_THAT(crypto::VerifyCertificateSignature(**ca, **crypto::CertificatePublicKey(**root)),
              IsOk());
  EXPECT_EQ(ratls::ParseRaTlsClaims(**ca)->usage, "app:ca");
  auto app_key = crypto::PrivateKeyFromScalar(crypto::Curve::kSecp256k1,
                                              core::AsBytes(k.k256_key()));
  ASSERT_THAT(app_key, IsOk());
  const auto msg = KmsIssuedMessage(core::AsBytes(kApp),
                                    *crypto::Secp256k1CompressedPublicKey(**app_key));
  EXPECT_EQ(core::ToString(*crypto::RecoverSecp256k1PublicKey(crypto::Keccak256(msg),
                                                              core::AsBytes(k.k256_signature()))),
            k.kms_k256_public_key());
  // Another instance of the app: same app keys, another disk key.
  verifier_.instance_id = std::string(20, '\x22');
  crypto::X25519KeyPair eph3;
  v1::AppKeys k3 = OpenKeys(*core_->GetAppKeys(Request(eph3)), eph3);
  EXPECT_EQ(k3.k256_key(), k.k256_key());
  EXPECT_NE(k3.disk_crypt_key(), k.disk_crypt_key());
  // The audit records the releases with the verifier's verdict.
  v1::ListAuditEventsRequest lr;
  lr.set_action(v1::AUDIT_ACTION_KEY_RELEASE);
  auto audit = store_->ListAudit(lr);
  ASSERT_THAT(audit, IsOk());
  ASSERT_EQ(audit->first.size(), 3u);
  EXPECT_EQ(audit->first[0].outcome(), v1::AUDIT_OUTCOME_ALLOWED);
  EXPECT_EQ(audit->first[0].verifier_status(), "affirming");
  EXPECT_EQ(audit->first[0].measurements().rtmr3().size(), 48u);
}

TEST_P(KeyReleaseTest, RefusalsAreFailedPreconditionAndAudited) {
  crypto::X25519KeyPair eph;
  // The quote does not commit to the ephemeral key.
  auto unbound = core_->GetAppKeys(Request(eph, /*bind=*/false));
  EXPECT_EQ(unbound.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(unbound.status().message()), HasSubstr("REPORT_DATA_BINDING"));
  // A replayed request with another ephemeral key.
  auto replay = Request(eph);
  auto other = *crypto::GenerateX25519();
  replay.set_ephemeral_public_key(std::string(other.public_key.begin(), other.public_key.end()));
  EXPECT_EQ(core_->GetAppKeys(replay).status().code(), absl::StatusCode::kFailedPrecondition);
  // Evidence the policy refuses.
  verifier_.allow = false;
  EXPECT_EQ(core_->GetAppKeys(Request(eph)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  verifier_.allow = true;
  // An unknown app (never reaches the verifier).
  auto unknown = Request(eph);
  unknown.mutable_evidence()->mutable_app_info()->set_app_id(std::string(20, 'q'));
  const int calls = verifier_.calls;
  auto u = core_->GetAppKeys(unknown);
  EXPECT_EQ(u.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(u.status().message()), HasSubstr("unknown app"));
  EXPECT_EQ(verifier_.calls, calls);
  // An event log stating another app than claimed.
  verifier_.app_id_in_log = std::string(20, 'q');
  EXPECT_EQ(core_->GetAppKeys(Request(eph)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  verifier_.app_id_in_log = kApp;
  // Bad input.
  auto bad = Request(eph);
  bad.set_ephemeral_public_key("short");
  EXPECT_EQ(core_->GetAppKeys(bad).status().code(), absl::StatusCode::kInvalidArgument);
  auto bad_epoch = Request(eph);
  bad_epoch.set_epoch(7);
  EXPECT_EQ(core_->GetAppKeys(bad_epoch).status().code(), absl::StatusCode::kNotFound);
  v1::ListAuditEventsRequest lr;
  lr.set_outcome(v1::AUDIT_OUTCOME_REFUSED);
  auto audit = store_->ListAudit(lr);
  ASSERT_THAT(audit, IsOk());
  EXPECT_EQ(audit->first.size(), 5u);
  for (const auto& e : audit->first)
    EXPECT_FALSE(e.reason().empty());
}

// A policy row changed behind the KMS's back releases nothing: the guest is told only that the
// policy cannot be used; the audit log has the reason.
TEST_P(KeyReleaseTest, ATamperedPolicyRowReleasesNothingAndTheAuditSaysWhy) {
  auto db = store::OpenSqlDb(url_);
  ASSERT_THAT(db, IsOk());
  v1::AppPolicy evil;
  evil.set_app_id(kApp);
  evil.set_inline_policy_json(R"({"allow_any_os":true,"allow_any_app":true})");
  ASSERT_THAT((*db)->Query("UPDATE kms_app_policy SET body = ? WHERE app_id = ?",
                           {store::Blob{evil.SerializeAsString()}, store::Blob{kApp}}),
              IsOk());
  crypto::X25519KeyPair eph;
  const int calls = verifier_.calls;
  auto r = core_->GetAppKeys(Request(eph));
  EXPECT_THAT(r.status(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                   AllOf(HasSubstr("cannot be used"), Not(HasSubstr("MAC")))));
  EXPECT_EQ(verifier_.calls, calls);
  v1::GetAppEnvEncryptPubKeyRequest env;
  env.set_app_id(kApp);
  EXPECT_EQ(core_->GetAppEnvEncryptPubKey(env).status().code(),
            absl::StatusCode::kFailedPrecondition);
  v1::ListAuditEventsRequest lr;
  lr.set_outcome(v1::AUDIT_OUTCOME_ERROR);
  auto audit = store_->ListAudit(lr);
  ASSERT_THAT(audit, IsOk());
  ASSERT_EQ(audit->first.size(), 1u);
  EXPECT_THAT(audit->first[0].reason(), HasSubstr("MAC"));
}

TEST_P(KeyReleaseTest, EpochsGiveDifferentKeysAndOldOnesStayAvailable) {
  crypto::X25519KeyPair eph;
  v1::AppKeys e1 = OpenKeys(*core_->GetAppKeys(Request(eph)), eph);
  ASSERT_THAT(keys_->Rotate(std::nullopt, "", "op"), IsOk());
  crypto::X25519KeyPair eph2;
  auto cur = core_->GetAppKeys(Request(eph2));
  ASSERT_THAT(cur, IsOk());
  EXPECT_EQ(cur->epoch(), 2u);
  EXPECT_NE(OpenKeys(*cur, eph2).k256_key(), e1.k256_key());
  crypto::X25519KeyPair eph3;
  auto old_req = Request(eph3);
  old_req.set_epoch(1);
  EXPECT_EQ(OpenKeys(*core_->GetAppKeys(old_req), eph3).k256_key(), e1.k256_key());
}

TEST_P(KeyReleaseTest, JoinClusterSealsTheRootSecretsToTheJoiner) {
  auto eph = *crypto::GenerateX25519();
  auto rd = *ratls::ComputeReportData(ratls::ReportDataPurpose::kKmsReplicaJoin, eph.public_key);
  v1::JoinClusterRequest r;
  r.mutable_evidence()->set_tdx_quote(core::ToString(*sim_->GetQuote(rd)));
  r.set_ephemeral_public_key(std::string(eph.public_key.begin(), eph.public_key.end()));
  r.set_node_name("n2");
  EXPECT_EQ(core_->JoinCluster(r).status().code(), absl::StatusCode::kFailedPrecondition);
  r.set_join_token("wrong-token");
  EXPECT_EQ(core_->JoinCluster(r).status().code(), absl::StatusCode::kFailedPrecondition);
  r.set_join_token("operator-join-token");
  auto resp = core_->JoinCluster(r);
  ASSERT_THAT(resp, IsOk());
  crypto::SealedBox box;
  const auto& s = resp->sealed_root_secrets();
  std::copy(s.kms_ephemeral_public_key().begin(), s.kms_ephemeral_public_key().end(),
            box.ephemeral_public_key.begin());
  std::copy(s.nonce().begin(), s.nonce().end(), box.nonce.begin());
  box.ciphertext.assign(s.ciphertext().begin(), s.ciphertext().end());
  EXPECT_FALSE(crypto::Open(eph.private_key.span(), box, core::AsBytes("n3"),
                            kRootSecretsSealLabel).ok());
  auto plain = crypto::Open(eph.private_key.span(), box, core::AsBytes("n2"),
                            kRootSecretsSealLabel);
  ASSERT_THAT(plain, IsOk());
  v1::RootSecrets secrets;
  ASSERT_TRUE(secrets.ParseFromArray(plain->span().data(), static_cast<int>(plain->size())));
  EXPECT_EQ(secrets.epochs_size(), 1);
  EXPECT_EQ(secrets.cluster_key().size(), 32u);
  // A joiner whose evidence fails the replica policy gets nothing.
  verifier_.allow = false;
  EXPECT_EQ(core_->JoinCluster(r).status().code(), absl::StatusCode::kFailedPrecondition);
  r.set_node_name("Bad Name");
  EXPECT_EQ(core_->JoinCluster(r).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(KeyReleaseTest, EnvPubKeyIsSignedByTheRootK256) {
  v1::GetAppEnvEncryptPubKeyRequest r;
  r.set_app_id(kApp);
  auto resp = core_->GetAppEnvEncryptPubKey(r);
  ASSERT_THAT(resp, IsOk());
  auto info = core_->GetPublicInfo();
  ASSERT_THAT(info, IsOk());
  const auto msg = EnvPubKeyMessage(core::AsBytes(kApp), resp->timestamp(),
                                    core::AsBytes(resp->public_key()));
  EXPECT_EQ(core::ToString(*crypto::RecoverSecp256k1PublicKey(crypto::Keccak256(msg),
                                                              core::AsBytes(resp->signature()))),
            info->epochs(0).k256_public_key());
  r.set_app_id("short");
  EXPECT_EQ(core_->GetAppEnvEncryptPubKey(r).status().code(), absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Stores, BackendTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres), BackendName);
INSTANTIATE_TEST_SUITE_P(Stores, KeyReleaseTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres), BackendName);

}  // namespace
}  // namespace pml::kms
