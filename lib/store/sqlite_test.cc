#include "lib/store/sqlite.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/status.h"
#include "lib/core/testing/status_matchers.h"

namespace pml::store {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::IsOkAndHolds;
using ::pml::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

class SqliteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "pml_sqlite_testXXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/test.db";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Reads a single integer, e.g. a PRAGMA value or COUNT(*).
  static absl::StatusOr<int64_t> QueryInt(Database& db, absl::string_view sql) {
    PML_ASSIGN_OR_RETURN(Statement stmt, db.Prepare(sql));
    PML_ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) {
      return absl::NotFoundError("no row");
    }
    return stmt.ColumnInt64(0);
  }
  static absl::StatusOr<std::string> QueryText(Database& db, absl::string_view sql) {
    PML_ASSIGN_OR_RETURN(Statement stmt, db.Prepare(sql));
    PML_ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) {
      return absl::NotFoundError("no row");
    }
    return stmt.ColumnText(0);
  }
  static absl::Status Insert(Database& db, int64_t id, absl::string_view name) {
    PML_ASSIGN_OR_RETURN(Statement stmt, db.Prepare("INSERT INTO t (id, name) VALUES (?, ?)"));
    PML_RETURN_IF_ERROR(stmt.Bind(1, id));
    PML_RETURN_IF_ERROR(stmt.Bind(2, name));
    return stmt.Step().status();
  }
  static mode_t FileMode(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      return 0;
    }
    return st.st_mode & 07777;
  }

  std::string dir_;
  std::string path_;
};

constexpr absl::string_view kTable =
    "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)";

TEST_F(SqliteTest, NewFileAndWalFilesAreCreatedWithMode0600) {
  PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(path_));
  ASSERT_THAT(db.Exec(kTable), IsOk());
  ASSERT_THAT(Insert(db, 1, "a"), IsOk());
  EXPECT_EQ(FileMode(path_), 0600u);
  ASSERT_TRUE(core::PathExists(path_ + "-wal"));
  EXPECT_EQ(FileMode(path_ + "-wal"), 0600u);
}

TEST_F(SqliteTest, ModeOptionIsAppliedExactly) {
  OpenOptions options;
  options.mode = 0640;
  PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(path_, options));
  EXPECT_EQ(FileMode(path_), 0640u);
}

TEST_F(SqliteTest, ExistingFileModeIsLeftAlone) {
  { PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(path_)); }
  ASSERT_EQ(::chmod(path_.c_str(), 0644), 0);
  PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(path_));
  EXPECT_EQ(FileMode(path_), 0644u);
}

TEST_F(SqliteTest, FileDatabaseUsesWalFullSyncAndForeignKeys) {
  PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(path_));
  EXPECT_THAT(QueryText(db, "PRAGMA journal_mode"), IsOkAndHolds(std::string("wal")));
  EXPECT_THAT(QueryInt(db, "PRAGMA synchronous"), IsOkAndHolds(2));  // FULL
  EXPECT_THAT(QueryInt(db, "PRAGMA foreign_keys"), IsOkAndHolds(1));
}

TEST_F(SqliteTest, InMemoryDatabaseWorksAndEnforcesForeignKeys) {
  PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(kInMemory));
  ASSERT_THAT(db.Exec("CREATE TABLE p (id INTEGER PRIMARY KEY);"
                      "CREATE TABLE c (p INTEGER NOT NULL REFERENCES p(id))"),
              IsOk());
  EXPECT_THAT(db.Exec("INSERT INTO c (p) VALUES (7)"),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("FOREIGN KEY")));
  EXPECT_FALSE(core::PathExists(std::string(kInMemory)));
}

TEST_F(SqliteTest, MissingFileWithoutCreateIsNotFound) {
  OpenOptions options;
  options.create = false;
  EXPECT_THAT(Database::Open(path_, options),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(path_)));
  EXPECT_FALSE(core::PathExists(path_));
}

TEST_F(SqliteTest, MissingDirectoryIsNotFound) {
  EXPECT_THAT(Database::Open(dir_ + "/no/such/dir.db"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("cannot create")));
}

TEST_F(SqliteTest, BadOpenArgumentsAreInvalidArgument) {
  EXPECT_THAT(Database::Open(""), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  OpenOptions options;
  options.busy_timeout = absl::Seconds(-1);
  EXPECT_THAT(Database::Open(path_, options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("busy_timeout")));
}

TEST_F(SqliteTest, FileThatIsNotADatabaseIsDataLoss) {
  ASSERT_THAT(core::WriteFileAtomic(path_, std::string(4096, 'x'), 0600), IsOk());
  EXPECT_THAT(Database::Open(path_), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("database")));
}

TEST_F(SqliteTest, BindsAndReadsBackEveryType) {
  PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(kInMemory));
  ASSERT_THAT(db.Exec("CREATE TABLE v (i INTEGER, t TEXT, b BLOB, n BLOB, e BLOB, s TEXT)"),
              IsOk());
  PML_ASSERT_OK_AND_ASSIGN(Statement ins, db.Prepare("INSERT INTO v VALUES (?, ?, ?, ?, ?, ?)"));
  const std::vector<uint8_t> blob = {0x00, 0xff, 0x10};
  ASSERT_THAT(ins.Bind(1, int64_t{-1} << 40), IsOk());
  ASSERT_THAT(ins.Bind(2, absl::string_view("h\xc3\xa9llo")), IsOk());
  ASSERT_THAT(ins.Bind(3, absl::Span<const uint8_t>(blob)), IsOk());
  ASSERT_THAT(ins.Bind(4, nullptr), IsOk());
  ASSERT_THAT(ins.Bind(5, absl::Span<const uint8_t>()), IsOk());  // empty, not NULL
  ASSERT_THAT(ins.Bind(6, absl::string_view()), IsOk());          // empty, not NULL
  ASSERT_THAT(ins.Step(), IsOkAndHolds(false));
  EXPECT_EQ(db.Changes(), 1);
  EXPECT_EQ(db.LastInsertRowId(), 1);

  PML_ASSERT_OK_AND_ASSIGN(Statement sel, db.Prepare("SELECT i, t, b, n, e, s FROM v"));
  ASSERT_THAT(sel.Step(), IsOkAndHolds(true));
  EXPECT_EQ(sel.ColumnCount(), 6);
  EXPECT_EQ(sel.ColumnInt64(0), int64_t{-1} << 40);
  EXPECT_EQ(sel.ColumnText(1), "h\xc3\xa9llo");
  EXPECT_THAT(sel.ColumnBlob(2), ElementsAre(0x00, 0xff, 0x10));
  EXPECT_TRUE(sel.ColumnIsNull(3));
  EXPECT_FALSE(sel.ColumnIsNull(4));
  EXPECT_TRUE(sel.ColumnBlob(4).empty());
  EXPECT_FALSE(sel.ColumnIsNull(5));
  EXPECT_EQ(sel.ColumnText(5), "");
  EXPECT_THAT(sel.Step(), IsOkAndHolds(false));
}

TEST_F(SqliteTest, OtherIntegerTypesBindThroughInt64) {
  PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(kInMemory));
  PML_ASSERT_OK_AND_ASSIGN(Statement stmt, db.Prepare("SELECT ?, ?, ?"));
  ASSERT_THAT(stmt.Bind(1, 0), IsOk());  // an int literal 0, not nullptr
  ASSERT_THAT(stmt.Bind(2, uint32_t{4000000000u}), IsOk());
  ASSERT_THAT(stmt.Bind(3, size_t{12}), IsOk());
  ASSERT_THAT(stmt.Step(), IsOkAndHolds(true));
  EXPECT_FALSE(stmt.ColumnIsNull(0));
  EXPECT_EQ(stmt.ColumnInt64(0), 0);
  EXPECT_EQ(stmt.ColumnInt64(1), 4000000000);
  EXPECT_EQ(stmt.ColumnInt64(2), 12);
}

TEST_F(SqliteTest, UnsignedValueOverInt64IsRefusedWithoutTheValue) {
  PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(kInMemory));
  PML_ASSERT_OK_AND_ASSIGN(Statement stmt, db.Prepare("SELECT ?"));
  EXPECT_THAT(stmt.Bind(1, uint64_t{18446744073709551615u}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("parameter 1"), Not(HasSubstr("18446744073709551615")))));
}

TEST_F(SqliteTest, BindOutOfRangeIndexIsInternal) {
  PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(kInMemory));
  PML_ASSERT_OK_AND_ASSIGN(Statement stmt, db.Prepare("SELECT ?"));
  EXPECT_THAT(stmt.Bind(2, int64_t{1}),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("parameter 2")));
}

TEST_F(SqliteTest, ResetClearsBindingsAndRunsAgain) {
  PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(kInMemory));
  PML_ASSERT_OK_AND_ASSIGN(Statement stmt, db.Prepare("SELECT ?"));
  ASSERT_THAT(stmt.Bind(1, int64_t{5}), IsOk());
  ASSERT_THAT(stmt.Step(), IsOkAndHolds(true));
  EXPECT_EQ(stmt.ColumnInt64(0), 5);
  stmt.Reset();
  ASSERT_THAT(stmt.Step(), IsOkAndHolds(true));
  EXPECT_TRUE(stmt.ColumnIsNull(0));
}

TEST_F(SqliteTest, ReusedStatementStartsOverUnbound) {
  PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(kInMemory));
  {
    PML_ASSERT_OK_AND_ASSIGN(Statement stmt, db.Prepare("SELECT ?"));
    ASSERT_THAT(stmt.Bind(1, int64_t{5}), IsOk());
    ASSERT_THAT(stmt.Step(), IsOkAndHolds(true));
    EXPECT_EQ(stmt.ColumnInt64(0), 5);
  }  // handed back mid-way, still bound
  PML_ASSERT_OK_AND_ASSIGN(Statement again, db.Prepare("SELECT ?"));
  ASSERT_THAT(again.Step(), IsOkAndHolds(true));
  EXPECT_TRUE(again.ColumnIsNull(0));
  // Two at once: the second is compiled anew, both work.
  PML_ASSERT_OK_AND_ASSIGN(Statement other, db.Prepare("SELECT ?"));
  ASSERT_THAT(other.Bind(1, int64_t{7}), IsOk());
  ASSERT_THAT(other.Step(), IsOkAndHolds(true));
  EXPECT_EQ(other.ColumnInt64(0), 7);
}

TEST_F(SqliteTest, StatementHandedBackMidWayHoldsNoSnapshot) {
  PML_ASSERT_OK_AND_ASSIGN(Database a, Database::Open(path_));
  PML_ASSERT_OK_AND_ASSIGN(Database b, Database::Open(path_));
  ASSERT_THAT(a.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)"), IsOk());
  ASSERT_THAT(Insert(a, 1, "one"), IsOk());
  ASSERT_THAT(Insert(a, 2, "two"), IsOk());
  {
    PML_ASSERT_OK_AND_ASSIGN(Statement stmt, a.Prepare("SELECT COUNT(*) FROM t"));
    ASSERT_THAT(stmt.Step(), IsOkAndHolds(true));
    EXPECT_EQ(stmt.ColumnInt64(0), 2);
  }  // cached, not finalized: it must not keep a's read snapshot open
  ASSERT_THAT(Insert(b, 3, "three"), IsOk());
  EXPECT_THAT(QueryInt(a, "SELECT COUNT(*) FROM t"), IsOkAndHolds(3));
}

TEST_F(SqliteTest, StatementOutlivingItsDatabaseIsHarmless) {
  std::optional<Statement> kept;
  {
    PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(kInMemory));
    PML_ASSERT_OK_AND_ASSIGN(Statement stmt, db.Prepare("SELECT 1"));
    kept.emplace(std::move(stmt));
  }
  kept.reset();  // the cache is gone: finalized, not handed back
}

TEST_F(SqliteTest, PrepareTakesExactlyOneStatement) {
  PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(kInMemory));
  EXPECT_THAT(db.Prepare("SELECT 1; SELECT 2"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exactly one")));
  EXPECT_THAT(db.Prepare("  -- nothing\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no statement")));
  EXPECT_THAT(db.Prepare("SELECT 1;  \n"), IsOk());
}

TEST_F(SqliteTest, SyntaxErrorIsInternalWithSqliteMessage) {
  PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(kInMemory));
  EXPECT_THAT(db.Prepare("SELEC 1"),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("syntax error")));
  EXPECT_THAT(db.Exec("CREATE TABLEX"),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("syntax error")));
}

TEST_F(SqliteTest, UniqueViolationIsAlreadyExistsWithoutTheBoundValue) {
  PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(kInMemory));
  ASSERT_THAT(db.Exec(kTable), IsOk());
  ASSERT_THAT(Insert(db, 1, "secret-name"), IsOk());
  EXPECT_THAT(Insert(db, 2, "secret-name"),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       AllOf(HasSubstr("UNIQUE constraint failed: t.name"),
                             Not(HasSubstr("secret-name")))));
}

TEST_F(SqliteTest, PrimaryKeyViolationIsAlreadyExists) {
  PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(kInMemory));
  ASSERT_THAT(db.Exec("CREATE TABLE k (a TEXT, b INTEGER, PRIMARY KEY (a, b))"), IsOk());
  ASSERT_THAT(db.Exec("INSERT INTO k VALUES ('x', 1)"), IsOk());
  EXPECT_THAT(db.Exec("INSERT INTO k VALUES ('x', 1)"),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("UNIQUE constraint")));
}

TEST_F(SqliteTest, OtherConstraintViolationIsInternal) {
  PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(kInMemory));
  ASSERT_THAT(db.Exec(kTable), IsOk());
  PML_ASSERT_OK_AND_ASSIGN(Statement stmt, db.Prepare("INSERT INTO t (id, name) VALUES (?, ?)"));
  ASSERT_THAT(stmt.Bind(1, int64_t{1}), IsOk());
  ASSERT_THAT(stmt.Bind(2, nullptr), IsOk());
  EXPECT_THAT(stmt.Step(), StatusIs(absl::StatusCode::kInternal, HasSubstr("NOT NULL")));
}

TEST_F(SqliteTest, TransactionRollsBackWhenDestroyedUncommitted) {
  PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(path_));
  ASSERT_THAT(db.Exec(kTable), IsOk());
  {
    PML_ASSERT_OK_AND_ASSIGN(Transaction txn, Transaction::Begin(db));
    EXPECT_TRUE(db.InTransaction());
    ASSERT_THAT(Insert(db, 1, "a"), IsOk());
    EXPECT_THAT(QueryInt(db, "SELECT COUNT(*) FROM t"), IsOkAndHolds(1));
  }
  EXPECT_FALSE(db.InTransaction());
  EXPECT_THAT(QueryInt(db, "SELECT COUNT(*) FROM t"), IsOkAndHolds(0));
}

TEST_F(SqliteTest, TransactionRollsBackAfterAFailedStatement) {
  PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(kInMemory));
  ASSERT_THAT(db.Exec(kTable), IsOk());
  {
    PML_ASSERT_OK_AND_ASSIGN(Transaction txn, Transaction::Begin(db));
    ASSERT_THAT(Insert(db, 1, "a"), IsOk());
    ASSERT_THAT(Insert(db, 2, "a"),
                StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("t.name")));
  }
  EXPECT_THAT(QueryInt(db, "SELECT COUNT(*) FROM t"), IsOkAndHolds(0));
}

TEST_F(SqliteTest, CommittedTransactionPersistsAndCommitsOnce) {
  {
    PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(path_));
    ASSERT_THAT(db.Exec(kTable), IsOk());
    PML_ASSERT_OK_AND_ASSIGN(Transaction txn, Transaction::Begin(db));
    ASSERT_THAT(Insert(db, 1, "a"), IsOk());
    ASSERT_THAT(txn.Commit(), IsOk());
    EXPECT_THAT(txn.Commit(), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("ended")));
  }
  PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(path_));
  EXPECT_THAT(QueryText(db, "SELECT name FROM t WHERE id = 1"), IsOkAndHolds(std::string("a")));
}

TEST_F(SqliteTest, TransactionsDoNotNest) {
  PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(kInMemory));
  PML_ASSERT_OK_AND_ASSIGN(Transaction outer, Transaction::Begin(db));
  EXPECT_THAT(Transaction::Begin(db),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("within a transaction")));
  EXPECT_TRUE(db.InTransaction());  // the failed Begin left the outer one alone
}

TEST_F(SqliteTest, MovedTransactionRollsBackOnce) {
  PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(kInMemory));
  ASSERT_THAT(db.Exec(kTable), IsOk());
  {
    PML_ASSERT_OK_AND_ASSIGN(Transaction first, Transaction::Begin(db));
    Transaction second(std::move(first));
    ASSERT_THAT(Insert(db, 1, "a"), IsOk());
    ASSERT_THAT(second.Commit(), IsOk());
  }  // `first` (moved from) must not roll back the committed work
  EXPECT_THAT(QueryInt(db, "SELECT COUNT(*) FROM t"), IsOkAndHolds(1));
}

TEST_F(SqliteTest, WriterLockHeldElsewhereIsUnavailable) {
  PML_ASSERT_OK_AND_ASSIGN(Database a, Database::Open(path_));
  OpenOptions no_wait;
  no_wait.busy_timeout = absl::ZeroDuration();
  PML_ASSERT_OK_AND_ASSIGN(Database b, Database::Open(path_, no_wait));
  PML_ASSERT_OK_AND_ASSIGN(Transaction txn, Transaction::Begin(a));
  EXPECT_THAT(Transaction::Begin(b), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("locked")));
}

TEST_F(SqliteTest, ReopenKeepsData) {
  {
    PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(path_));
    ASSERT_THAT(db.Exec(kTable), IsOk());
    ASSERT_THAT(Insert(db, 42, "kept"), IsOk());
  }
  OpenOptions existing;
  existing.create = false;
  PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(path_, existing));
  EXPECT_THAT(QueryText(db, "SELECT name FROM t WHERE id = 42"), IsOkAndHolds(std::string("kept")));
}

constexpr absl::string_view kStep1 = "CREATE TABLE a (x INTEGER)";
constexpr absl::string_view kStep2 = "CREATE TABLE b (y INTEGER); INSERT INTO b VALUES (1)";
constexpr absl::string_view kStep3 = "ALTER TABLE a ADD COLUMN z TEXT";

TEST_F(SqliteTest, MigrateAppliesStepsOnceAndIsIdempotent) {
  const absl::string_view two[] = {kStep1, kStep2};
  const absl::string_view three[] = {kStep1, kStep2, kStep3};
  {
    PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(path_));
    ASSERT_THAT(Migrate(db, two), IsOk());
    EXPECT_THAT(QueryInt(db, "PRAGMA user_version"), IsOkAndHolds(2));
    ASSERT_THAT(Migrate(db, two), IsOk());  // a second run applies nothing (would duplicate b)
    EXPECT_THAT(QueryInt(db, "SELECT COUNT(*) FROM b"), IsOkAndHolds(1));
  }
  // A later binary with one more step, after a reopen, applies only that step.
  PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(path_));
  ASSERT_THAT(Migrate(db, three), IsOk());
  EXPECT_THAT(QueryInt(db, "PRAGMA user_version"), IsOkAndHolds(3));
  EXPECT_THAT(QueryInt(db, "SELECT COUNT(*) FROM b"), IsOkAndHolds(1));
  EXPECT_THAT(db.Exec("INSERT INTO a (x, z) VALUES (1, 'z')"), IsOk());
}

TEST_F(SqliteTest, MigrateRefusesSchemaFromNewerBinary) {
  PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(kInMemory));
  const absl::string_view three[] = {kStep1, kStep2, kStep3};
  ASSERT_THAT(Migrate(db, three), IsOk());
  const absl::string_view one[] = {kStep1};
  EXPECT_THAT(Migrate(db, one),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("schema version 3")));
}

TEST_F(SqliteTest, FailedMigrationStepKeepsEarlierStepsAndRollsItselfBack) {
  PML_ASSERT_OK_AND_ASSIGN(Database db, Database::Open(kInMemory));
  const absl::string_view steps[] = {kStep1, "CREATE TABLE c (q INTEGER); SELEC oops"};
  EXPECT_THAT(Migrate(db, steps),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("migration step 2")));
  EXPECT_THAT(QueryInt(db, "PRAGMA user_version"), IsOkAndHolds(1));
  EXPECT_FALSE(db.InTransaction());
  EXPECT_THAT(QueryInt(db, "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'c'"), IsOkAndHolds(0));
}

}  // namespace
}  // namespace pml::store
