#include "lib/store/sql.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/status.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/store/postgres.h"
#include "lib/store/testing/local_postgres.h"

namespace pml::store {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::IsOkAndHolds;
using ::pml::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

using Rows = std::vector<SqlRow>;

SqlValue Text(absl::string_view s) { return SqlValue(std::string(s.data(), s.size())); }
SqlValue Bytes(absl::string_view s) { return SqlValue(Blob{std::string(s.data(), s.size())}); }
SqlValue Int(int64_t v) { return SqlValue(v); }
SqlValue Null() { return SqlValue(std::monostate()); }

// One PostgreSQL cluster per test suite: the suite's first PostgreSQL test starts it, and
// TearDownTestSuite stops it. Without the server binaries the PostgreSQL tests skip; any other
// failure to start fails them.
class PostgresServer {
 public:
  static void Stop() {
    State& state = GetState();
    state.server.reset();
    state.start_error.reset();
  }

 protected:
  // Sets `url` to the suite's server, starting it on first use.
  static void GetUrl(std::string* url) {
    State& state = GetState();
    if (state.server == nullptr && !state.start_error.has_value()) {
      absl::StatusOr<std::unique_ptr<LocalPostgres>> pg = LocalPostgres::Start();
      if (pg.ok()) {
        state.server = std::move(pg).value();
      } else {
        state.start_error = pg.status();
      }
    }
    if (state.start_error.has_value()) {
      if (state.start_error->code() == absl::StatusCode::kUnavailable) {
        GTEST_SKIP() << *state.start_error;
      }
      FAIL() << *state.start_error;
    }
    *url = state.server->url();
  }

 private:
  struct State {
    std::unique_ptr<LocalPostgres> server;
    std::optional<absl::Status> start_error;
  };
  static State& GetState() {
    static State state;
    return state;
  }
};

std::string DialectName(const ::testing::TestParamInfo<SqlDialect>& info) {
  return info.param == SqlDialect::kSqlite ? "Sqlite" : "Postgres";
}

// Runs against both backends, each test on an empty database.
class SqlDbTest : public ::testing::TestWithParam<SqlDialect>, protected PostgresServer {
 protected:
  static void TearDownTestSuite() { Stop(); }

  void SetUp() override {
    if (GetParam() == SqlDialect::kPostgres) {
      GetUrl(&url_);
      if (IsSkipped() || HasFatalFailure()) {
        return;
      }
      PML_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqlDb> db, OpenSqlDb(url_));
      ASSERT_THAT(db->Exec("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public"), IsOk());
    } else {
      std::string tmpl = (std::filesystem::temp_directory_path() / "pml_sql_testXXXXXX").string();
      ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
      dir_ = tmpl;
      url_ = "sqlite:" + dir_ + "/test.db";
    }
    PML_ASSERT_OK_AND_ASSIGN(db_, OpenSqlDb(url_));
  }

  void TearDown() override {
    db_.reset();
    if (!dir_.empty()) {
      std::filesystem::remove_all(dir_);
    }
  }

  bool IsPostgres() const { return GetParam() == SqlDialect::kPostgres; }
  // The blob column type of the dialect: the one DDL difference these tests need.
  std::string BlobType() const { return IsPostgres() ? "BYTEA" : "BLOB"; }

  absl::StatusOr<int64_t> Count(SqlDb& db, absl::string_view table) {
    PML_ASSIGN_OR_RETURN(Rows rows, db.Query(absl::StrCat("SELECT COUNT(*) FROM ", table)));
    if (rows.size() != 1 || rows[0].size() != 1 || !std::holds_alternative<int64_t>(rows[0][0])) {
      return absl::InternalError("COUNT(*) did not return one integer");
    }
    return std::get<int64_t>(rows[0][0]);
  }

  void CreateKeys(SqlDb& db) {
    ASSERT_THAT(db.Exec(absl::StrCat("CREATE TABLE keys (id TEXT PRIMARY KEY, gen BIGINT NOT NULL, "
                                     "material ",
                                     BlobType(), ")")),
                IsOk());
  }

  std::string url_;
  std::string dir_;
  std::unique_ptr<SqlDb> db_;
};

INSTANTIATE_TEST_SUITE_P(Backends, SqlDbTest,
                         ::testing::Values(SqlDialect::kSqlite, SqlDialect::kPostgres),
                         DialectName);

TEST_P(SqlDbTest, ReportsItsKindAndDialect) {
  EXPECT_EQ(db_->dialect(), GetParam());
  EXPECT_EQ(db_->kind(), IsPostgres() ? "postgres" : "sqlite");
}

TEST_P(SqlDbTest, RoundTripsEveryValueType) {
  ASSERT_THAT(db_->Exec(absl::StrCat("CREATE TABLE v (id BIGINT PRIMARY KEY, i BIGINT, t TEXT, b ",
                                     BlobType(), ")")),
              IsOk());
  const std::string binary("\0\xff\x00\x01\xfe\x80 ?'", 9);
  const std::vector<SqlRow> want = {
      {Int(1), Int(std::numeric_limits<int64_t>::min()), Text(""), Bytes(binary)},
      {Int(2), Int(std::numeric_limits<int64_t>::max()), Text("h\xc3\xa9llo \xe2\x9c\x93 'q' ?"),
       Bytes("")},
      {Int(3), Int(0), Text("x"), Bytes(std::string(1, '\0'))},
      {Int(4), Int(-1), Text("y"), Bytes(std::string(4096, '\xff'))},
      {Int(5), Null(), Null(), Null()},
  };
  for (const SqlRow& row : want) {
    ASSERT_THAT(db_->Query("INSERT INTO v (id, i, t, b) VALUES (?, ?, ?, ?)", row),
                IsOkAndHolds(IsEmpty()));
  }
  EXPECT_THAT(db_->Query("SELECT id, i, t, b FROM v ORDER BY id"), IsOkAndHolds(want));
  // An empty text and an empty blob are values, not NULL.
  EXPECT_THAT(db_->Query("SELECT id FROM v WHERE t IS NULL OR b IS NULL"),
              IsOkAndHolds(ElementsAre(ElementsAre(Int(5)))));
  // Parameters compare as the types they were bound with.
  EXPECT_THAT(db_->Query("SELECT id FROM v WHERE b = ? AND i = ?",
                         {Bytes(binary), Int(std::numeric_limits<int64_t>::min())}),
              IsOkAndHolds(ElementsAre(ElementsAre(Int(1)))));
}

TEST_P(SqlDbTest, SelectsParametersBackAsTheirOwnTypes) {
  EXPECT_THAT(
      db_->Query("SELECT ?, ?, ?", {Int(-7), Text("t"), Bytes(std::string("\0\xff", 2))}),
      IsOkAndHolds(ElementsAre(ElementsAre(Int(-7), Text("t"), Bytes(std::string("\0\xff", 2))))));
}

TEST_P(SqlDbTest, DecodesIntegerColumnsOfEveryWidthAndBooleans) {
  ASSERT_THAT(db_->Exec("CREATE TABLE w (s SMALLINT, i INTEGER, b BOOLEAN)"), IsOk());
  ASSERT_THAT(db_->Query("INSERT INTO w VALUES (-32768, 2147483647, TRUE), (?, ?, FALSE)",
                         {Int(32767), Int(-2147483648LL)}),
              IsOk());
  EXPECT_THAT(db_->Query("SELECT s, i, b FROM w ORDER BY s"),
              IsOkAndHolds(ElementsAre(ElementsAre(Int(-32768), Int(2147483647), Int(1)),
                                       ElementsAre(Int(32767), Int(-2147483648LL), Int(0)))));
  EXPECT_THAT(Count(*db_, "w"), IsOkAndHolds(2));
}

TEST_P(SqlDbTest, RewritesOnlyPlaceholdersOutsideLiteralsAndComments) {
  EXPECT_THAT(
      db_->Query("SELECT '?' || ?, 'it''s ?' AS \"what?\" -- and?\n /* or ? */ ;", {Text("x")}),
      IsOkAndHolds(ElementsAre(ElementsAre(Text("?x"), Text("it's ?")))));
}

TEST_P(SqlDbTest, PlaceholderCountMismatchIsInvalidArgument) {
  EXPECT_THAT(db_->Query("SELECT ?, ?", {Int(1)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("2 placeholders but 1")));
  EXPECT_THAT(db_->Query("SELECT 1", {Int(1)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("0 placeholders but 1")));
}

TEST_P(SqlDbTest, QueryTakesExactlyOneStatement) {
  EXPECT_THAT(db_->Query("SELECT 1; SELECT 2"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exactly one statement")));
  EXPECT_THAT(db_->Query("  -- nothing\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no statement")));
  EXPECT_THAT(db_->Query("SELECT 1;  -- done\n"), IsOkAndHolds(ElementsAre(ElementsAre(Int(1)))));
}

TEST_P(SqlDbTest, TextWithNulIsInvalidArgument) {
  EXPECT_THAT(db_->Query("SELECT ?", {Text(std::string("a\0b", 3))}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("parameter 1"), HasSubstr("NUL"))));
}

TEST_P(SqlDbTest, UniqueViolationIsAlreadyExistsWithoutTheValue) {
  CreateKeys(*db_);
  const std::vector<SqlValue> row = {Text("key-id-0123456789"), Int(1), Bytes("k")};
  ASSERT_THAT(db_->Query("INSERT INTO keys (id, gen, material) VALUES (?, ?, ?)", row), IsOk());
  EXPECT_THAT(db_->Query("INSERT INTO keys (id, gen, material) VALUES (?, ?, ?)", row),
              StatusIs(absl::StatusCode::kAlreadyExists, Not(HasSubstr("key-id-0123456789"))));
  // The connection stays usable, and the first row is there once.
  EXPECT_THAT(Count(*db_, "keys"), IsOkAndHolds(1));
}

TEST_P(SqlDbTest, InsertOnConflictDoNothingWorksInBothDialects) {
  CreateKeys(*db_);
  for (int i = 0; i < 2; ++i) {
    EXPECT_THAT(db_->Query("INSERT INTO keys (id, gen) VALUES (?, ?) ON CONFLICT (id) DO NOTHING "
                           "RETURNING gen",
                           {Text("a"), Int(7)}),
                IsOkAndHolds(i == 0 ? Rows{{Int(7)}} : Rows{}));
  }
}

TEST_P(SqlDbTest, SyntaxErrorIsInternal) {
  EXPECT_THAT(db_->Query("SELEKT 1"), StatusIs(absl::StatusCode::kInternal, HasSubstr("SELEKT")));
  EXPECT_THAT(db_->Exec("CREATE TABLE"), StatusIs(absl::StatusCode::kInternal, ::testing::_));
}

TEST_P(SqlDbTest, UnsupportedResultTypeIsInternal) {
  // SQLite REAL; PostgreSQL numeric.
  EXPECT_THAT(db_->Query("SELECT 1.5"),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("cast it")));
  EXPECT_THAT(db_->Query("SELECT CAST(1.5 * 2 AS BIGINT)"),
              IsOkAndHolds(ElementsAre(ElementsAre(Int(3)))));
}

TEST_P(SqlDbTest, ExecRunsSeveralStatements) {
  ASSERT_THAT(db_->Exec("CREATE TABLE a (x BIGINT); CREATE TABLE b (y BIGINT);\n"
                        "INSERT INTO a VALUES (1); INSERT INTO b VALUES (2), (3);"),
              IsOk());
  EXPECT_THAT(Count(*db_, "a"), IsOkAndHolds(1));
  EXPECT_THAT(Count(*db_, "b"), IsOkAndHolds(2));
}

TEST_P(SqlDbTest, CommittedTransactionIsVisibleToAnotherConnection) {
  CreateKeys(*db_);
  PML_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqlDb> other, OpenSqlDb(url_));
  PML_ASSERT_OK_AND_ASSIGN(SqlTransaction txn, SqlTransaction::Start(*db_));
  ASSERT_THAT(db_->Query("INSERT INTO keys (id, gen) VALUES (?, ?)", {Text("a"), Int(1)}), IsOk());
  EXPECT_THAT(Count(*other, "keys"), IsOkAndHolds(0));
  ASSERT_THAT(txn.Commit(), IsOk());
  EXPECT_THAT(Count(*other, "keys"), IsOkAndHolds(1));
  EXPECT_THAT(txn.Commit(), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already")));
}

TEST_P(SqlDbTest, RollbackDiscardsTheTransaction) {
  CreateKeys(*db_);
  ASSERT_THAT(db_->Begin(), IsOk());
  ASSERT_THAT(db_->Query("INSERT INTO keys (id, gen) VALUES ('a', 1)"), IsOk());
  ASSERT_THAT(db_->Rollback(), IsOk());
  EXPECT_THAT(Count(*db_, "keys"), IsOkAndHolds(0));
  // Rolling back with no transaction open is a no-op.
  EXPECT_THAT(db_->Rollback(), IsOk());
}

TEST_P(SqlDbTest, TransactionRollsBackWhenDestroyedUncommitted) {
  CreateKeys(*db_);
  {
    PML_ASSERT_OK_AND_ASSIGN(SqlTransaction txn, SqlTransaction::Start(*db_));
    ASSERT_THAT(db_->Query("INSERT INTO keys (id, gen) VALUES ('a', 1)"), IsOk());
    SqlTransaction moved(std::move(txn));  // the moved-from one does nothing when destroyed
    ASSERT_THAT(db_->Query("INSERT INTO keys (id, gen) VALUES ('b', 1)"), IsOk());
  }
  EXPECT_THAT(Count(*db_, "keys"), IsOkAndHolds(0));
  // The connection is out of the transaction: a new one can start.
  PML_ASSERT_OK_AND_ASSIGN(SqlTransaction txn, SqlTransaction::Start(*db_));
  EXPECT_THAT(txn.Commit(), IsOk());
}

TEST_P(SqlDbTest, TransactionsDoNotNestAndCommitNeedsOne) {
  EXPECT_THAT(db_->Commit(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("without an open")));
  ASSERT_THAT(db_->Begin(), IsOk());
  EXPECT_THAT(db_->Begin(), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("nest")));
  EXPECT_THAT(db_->Commit(), IsOk());
}

TEST_P(SqlDbTest, AnErrorDoomsTheTransaction) {
  CreateKeys(*db_);
  ASSERT_THAT(db_->Query("INSERT INTO keys (id, gen) VALUES ('a', 1)"), IsOk());
  ASSERT_THAT(db_->Begin(), IsOk());
  ASSERT_THAT(db_->Query("INSERT INTO keys (id, gen) VALUES ('b', 1)"), IsOk());
  EXPECT_THAT(db_->Query("INSERT INTO keys (id, gen) VALUES ('a', 2)"),
              StatusIs(absl::StatusCode::kAlreadyExists, ::testing::_));
  EXPECT_THAT(db_->Query("SELECT 1"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("aborted")));
  EXPECT_THAT(db_->Commit(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("rolled back")));
  // 'b' was rolled back with the transaction; the connection works again.
  EXPECT_THAT(db_->Query("SELECT id FROM keys ORDER BY id"),
              IsOkAndHolds(ElementsAre(ElementsAre(Text("a")))));
  // A bad call (caught before the database sees it) does not doom a transaction.
  ASSERT_THAT(db_->Begin(), IsOk());
  EXPECT_THAT(db_->Query("SELECT ?"), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  ASSERT_THAT(db_->Query("INSERT INTO keys (id, gen) VALUES ('c', 1)"), IsOk());
  EXPECT_THAT(db_->Commit(), IsOk());
  EXPECT_THAT(Count(*db_, "keys"), IsOkAndHolds(2));
}

// PostgreSQL only: serializable conflicts and lost connections.
class PostgresSqlDbTest : public ::testing::Test, protected PostgresServer {
 protected:
  static void TearDownTestSuite() { Stop(); }

  void SetUp() override {
    GetUrl(&url_);
    if (IsSkipped() || HasFatalFailure()) {
      return;
    }
    PML_ASSERT_OK_AND_ASSIGN(a_, OpenSqlDb(url_));
    PML_ASSERT_OK_AND_ASSIGN(b_, OpenSqlDb(url_));
    ASSERT_THAT(a_->Exec("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;"
                         "CREATE TABLE counter (id BIGINT PRIMARY KEY, n BIGINT NOT NULL);"
                         "INSERT INTO counter VALUES (1, 0)"),
                IsOk());
  }

  // Terminates `victim`'s server process, as a server restart or a network cut would.
  void Kill(SqlDb& victim) {
    PML_ASSERT_OK_AND_ASSIGN(Rows pid, victim.Query("SELECT pg_backend_pid()"));
    ASSERT_EQ(pid.size(), 1u);
    // The timeout makes pg_terminate_backend wait until the process is gone.
    EXPECT_THAT(b_->Query("SELECT pg_terminate_backend(CAST(? AS INTEGER), 5000)", {pid[0][0]}),
                IsOkAndHolds(ElementsAre(ElementsAre(Int(1)))));
  }

  std::string url_;
  std::unique_ptr<SqlDb> a_;
  std::unique_ptr<SqlDb> b_;
};

TEST_F(PostgresSqlDbTest, SerializationConflictIsAborted) {
  ASSERT_THAT(a_->Begin(), IsOk());
  ASSERT_THAT(b_->Begin(), IsOk());
  // Both read the row, then both write it: the second writer cannot be serialized.
  ASSERT_THAT(a_->Query("SELECT n FROM counter WHERE id = 1"),
              IsOkAndHolds(ElementsAre(ElementsAre(Int(0)))));
  ASSERT_THAT(b_->Query("SELECT n FROM counter WHERE id = 1"),
              IsOkAndHolds(ElementsAre(ElementsAre(Int(0)))));
  ASSERT_THAT(a_->Query("UPDATE counter SET n = ? WHERE id = 1", {Int(1)}), IsOk());
  ASSERT_THAT(a_->Commit(), IsOk());
  EXPECT_THAT(b_->Query("UPDATE counter SET n = ? WHERE id = 1", {Int(1)}),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("40001")));
  EXPECT_THAT(b_->Commit(), StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
  // The retry sees the committed value and succeeds.
  PML_ASSERT_OK_AND_ASSIGN(SqlTransaction retry, SqlTransaction::Start(*b_));
  ASSERT_THAT(b_->Query("UPDATE counter SET n = n + 1 WHERE id = 1 RETURNING n"),
              IsOkAndHolds(ElementsAre(ElementsAre(Int(2)))));
  EXPECT_THAT(retry.Commit(), IsOk());
}

TEST_F(PostgresSqlDbTest, WriteSkewIsAbortedAtCommit) {
  ASSERT_THAT(a_->Query("INSERT INTO counter VALUES (2, 0)"), IsOk());
  ASSERT_THAT(a_->Begin(), IsOk());
  ASSERT_THAT(b_->Begin(), IsOk());
  // Each reads both rows and writes the one the other read: only SERIALIZABLE catches this.
  ASSERT_THAT(a_->Query("SELECT SUM(n)::bigint FROM counter"), IsOk());
  ASSERT_THAT(b_->Query("SELECT SUM(n)::bigint FROM counter"), IsOk());
  ASSERT_THAT(a_->Query("UPDATE counter SET n = 1 WHERE id = 1"), IsOk());
  ASSERT_THAT(b_->Query("UPDATE counter SET n = 1 WHERE id = 2"), IsOk());
  ASSERT_THAT(a_->Commit(), IsOk());
  EXPECT_THAT(b_->Commit(), StatusIs(absl::StatusCode::kAborted, HasSubstr("40001")));
  EXPECT_THAT(b_->Query("SELECT n FROM counter ORDER BY id"),
              IsOkAndHolds(ElementsAre(ElementsAre(Int(1)), ElementsAre(Int(0)))));
}

TEST_F(PostgresSqlDbTest, LostConnectionIsUnavailableAndTheNextCallReconnects) {
  ASSERT_NO_FATAL_FAILURE(Kill(*a_));
  EXPECT_THAT(a_->Query("SELECT n FROM counter"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("lost")));
  EXPECT_THAT(a_->Query("SELECT n FROM counter"), IsOkAndHolds(ElementsAre(ElementsAre(Int(0)))));
}

TEST_F(PostgresSqlDbTest, LostConnectionInATransactionFailsUntilRollback) {
  ASSERT_THAT(a_->Begin(), IsOk());
  ASSERT_THAT(a_->Query("UPDATE counter SET n = 5 WHERE id = 1"), IsOk());
  ASSERT_NO_FATAL_FAILURE(Kill(*a_));
  EXPECT_THAT(a_->Query("SELECT 1"), StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  // No silent reconnect in the middle of a transaction.
  EXPECT_THAT(a_->Query("SELECT 1"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("during a transaction")));
  EXPECT_THAT(a_->Commit(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("rolled back")));
  EXPECT_THAT(a_->Rollback(), IsOk());
  EXPECT_THAT(a_->Query("SELECT n FROM counter"), IsOkAndHolds(ElementsAre(ElementsAre(Int(0)))));
}

TEST_F(PostgresSqlDbTest, UnsupportedColumnTypeNamesTheColumn) {
  EXPECT_THAT(
      a_->Query("SELECT now() AS created"),
      StatusIs(absl::StatusCode::kInternal, AllOf(HasSubstr("created"), HasSubstr("1184"))));
  EXPECT_THAT(a_->Query("SELECT CAST(extract(epoch FROM now()) AS BIGINT) > 0"),
              IsOkAndHolds(ElementsAre(ElementsAre(Int(1)))));
}

TEST_F(PostgresSqlDbTest, InvalidValueMessageDoesNotQuoteIt) {
  // The server's message would be: invalid input syntax for type bigint: "not-a-number-secret".
  EXPECT_THAT(
      a_->Query("SELECT CAST(? AS BIGINT)", {Text("not-a-number-secret")}),
      StatusIs(absl::StatusCode::kInternal, AllOf(HasSubstr("22P02"), Not(HasSubstr("secret")))));
}

TEST_F(PostgresSqlDbTest, JsonbAndDollarQuotedTextKeepTheirQuestionMarks) {
  EXPECT_THAT(a_->Query("SELECT $$a?b$$ || ?, E'c\\'?' , jsonb_exists('{\"k?\":1}', ?)",
                        {Text("!"), Text("k?")}),
              IsOkAndHolds(ElementsAre(ElementsAre(Text("a?b!"), Text("c'?"), Int(1)))));
}

// ---------------------------------------------------------------------------------------------
// Opening and URLs

class OpenSqlDbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "pml_sql_testXXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(OpenSqlDbTest, OpensSqliteFromASchemeOrABarePathWithMode0600) {
  for (const std::string& url : {"sqlite:" + dir_ + "/a.db", dir_ + "/b.db",
                                 std::string(":memory:"), std::string("sqlite::memory:")}) {
    SCOPED_TRACE(url);
    PML_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqlDb> db, OpenSqlDb(url));
    EXPECT_EQ(db->kind(), "sqlite");
    EXPECT_THAT(db->Query("SELECT 1"), IsOkAndHolds(ElementsAre(ElementsAre(Int(1)))));
  }
  struct stat st {};
  ASSERT_EQ(::stat((dir_ + "/a.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  // The file persists: a second connection sees the first one's table.
  {
    PML_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqlDb> db, OpenSqlDb(dir_ + "/a.db"));
    ASSERT_THAT(db->Exec("CREATE TABLE t (x BIGINT)"), IsOk());
  }
  PML_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqlDb> db, OpenSqlDb("sqlite:" + dir_ + "/a.db"));
  EXPECT_THAT(db->Query("SELECT COUNT(*) FROM t"), IsOkAndHolds(ElementsAre(ElementsAre(Int(0)))));
}

TEST_F(OpenSqlDbTest, BadUrlsAreInvalidArgument) {
  EXPECT_THAT(OpenSqlDb("mysql://kms:hunter2@db/kms"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("unknown database URL scheme \"mysql\""),
                             Not(HasSubstr("hunter2")))));
  EXPECT_THAT(OpenSqlDb("host=db user=kms password=hunter2"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("keyword=value"), Not(HasSubstr("hunter2")))));
  EXPECT_THAT(OpenSqlDb("postgres:db"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("postgres://")));
  EXPECT_THAT(OpenSqlDb("postgresql://kms:hunter2@db/kms?no_such_option=1"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("malformed"), Not(HasSubstr("hunter2")))));
  EXPECT_THAT(OpenSqlDb("postgresql://kms:hunter2%zz@db/kms"),
              StatusIs(absl::StatusCode::kInvalidArgument, Not(HasSubstr("hunter2"))));
  EXPECT_THAT(OpenSqlDb("sqlite:"), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST_F(OpenSqlDbTest, UnreachablePostgresIsUnavailableWithoutThePassword) {
  struct Case {
    std::string url;
    std::string where;
  };
  const Case cases[] = {
      // Nothing listens on port 1 of loopback: refused at once.
      {"postgresql://kms:hunter2-secret@127.0.0.1:1/kms?connect_timeout=5",
       "host=127.0.0.1 port=1"},
      {"postgres://kms:hunter2-secret@/kms?host=" + dir_ + "&port=5999",
       "host=" + dir_ + " port=5999"},
      {"postgresql:///kms?host=" + dir_ + "&password=hunter2-secret", "port=5432"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.where);
    EXPECT_THAT(OpenSqlDb(c.url), StatusIs(absl::StatusCode::kUnavailable,
                                           AllOf(HasSubstr("cannot connect to"), HasSubstr(c.where),
                                                 Not(HasSubstr("hunter2")))));
  }
}

TEST(RedactDbUrlTest, ReplacesPasswordsOnly) {
  struct Case {
    const char* in;
    const char* want;
  };
  const Case cases[] = {
      {"postgresql://kms:s3cret@db:5432/kms", "postgresql://kms:***@db:5432/kms"},
      {"postgres://kms:s%40cret@db1:5432,db2/kms?sslmode=verify-full",
       "postgres://kms:***@db1:5432,db2/kms?sslmode=verify-full"},
      {"postgresql://kms@db/kms?password=s3cret&sslmode=require",
       "postgresql://kms@db/kms?password=***&sslmode=require"},
      {"postgresql:///kms?host=/run/pg&pass%77ord=s3cret&sslpassword=k3y",
       "postgresql:///kms?host=/run/pg&pass%77ord=***&sslpassword=***"},
      {"postgresql://db/kms", "postgresql://db/kms"},
      {"postgresql://kms:p@ss/w0rd@db/kms?user=a@b", "postgresql://kms:***@db/kms?user=a@b"},
      {"mysql://root:s3cret@db/x", "mysql://root:***@db/x"},
      {"host=db password='s3 cret' user=kms", "host=db password=*** user=kms"},
      {"sqlite:/var/lib/pml/kms.db", "sqlite:/var/lib/pml/kms.db"},
      {"/var/lib/pml/kms:1.db", "/var/lib/pml/kms:1.db"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(RedactDbUrl(c.in), c.want) << c.in;
  }
}

// ---------------------------------------------------------------------------------------------
// Placeholder scanning

TEST(ParseSqlStatementTest, CountsAndRewritesPlaceholders) {
  struct Case {
    const char* name;
    const char* sql;
    SqlDialect dialect;
    const char* want_sql;
    int64_t want_count;  // int64_t: no padding after `dialect`
  };
  constexpr SqlDialect kPg = SqlDialect::kPostgres;
  constexpr SqlDialect kLite = SqlDialect::kSqlite;
  const Case cases[] = {
      {"numbered in order", "INSERT INTO t VALUES (?, ?,?)", kPg,
       "INSERT INTO t VALUES ($1, $2,$3)", 3},
      {"sqlite keeps ?", "SELECT ? + ?", kLite, "SELECT ? + ?", 2},
      {"string literal", "SELECT 'a?''?', ?", kPg, "SELECT 'a?''?', $1", 1},
      {"quoted identifier", "SELECT \"c?\"\"?\" FROM t WHERE x = ?", kPg,
       "SELECT \"c?\"\"?\" FROM t WHERE x = $1", 1},
      {"line comment", "SELECT ? -- what?\n, ?", kPg, "SELECT $1 -- what?\n, $2", 2},
      {"nested block comment (pg)", "SELECT /* a /* ? */ ? */ ?", kPg,
       "SELECT /* a /* ? */ ? */ $1", 1},
      {"block comment (sqlite, not nested)", "SELECT /* a /* ? */ ?", kLite,
       "SELECT /* a /* ? */ ?", 1},
      {"E string with backslash quote", "SELECT E'\\'?', ?", kPg, "SELECT E'\\'?', $1", 1},
      {"not an E string", "SELECT name'?'", kPg, "SELECT name'?'", 0},
      {"dollar quote", "SELECT $$?$$, $q$ ? $ $q$, ?", kPg, "SELECT $$?$$, $q$ ? $ $q$, $1", 1},
      {"dollar in identifier", "SELECT a$b, ?", kPg, "SELECT a$b, $1", 1},
      {"sqlite backticks and brackets", "SELECT `a?`, [b?], ?", kLite, "SELECT `a?`, [b?], ?", 1},
      {"trailing semicolon and comment dropped", "SELECT ?; -- bye?\n", kPg, "SELECT $1", 1},
      {"unterminated literal left to the server", "SELECT '?", kPg, "SELECT '?", 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    PML_ASSERT_OK_AND_ASSIGN(internal::ParsedStatement parsed,
                             internal::ParseSqlStatement(c.sql, c.dialect));
    EXPECT_EQ(parsed.sql, c.want_sql);
    EXPECT_EQ(parsed.placeholders, c.want_count);
  }
}

TEST(ParseSqlStatementTest, RejectsNoneOrSeveralStatements) {
  for (const char* sql :
       {"", "  \n", "-- only a comment", "/* x */ ;", "SELECT 1; SELECT 2", "SELECT 1;;x"}) {
    SCOPED_TRACE(sql);
    EXPECT_THAT(internal::ParseSqlStatement(sql, SqlDialect::kPostgres),
                StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  }
  // A `;` inside a literal does not end the statement.
  EXPECT_THAT(internal::ParseSqlStatement("SELECT ';x'", SqlDialect::kSqlite), IsOk());
}

}  // namespace
}  // namespace pml::store
