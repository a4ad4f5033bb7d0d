#include "lib/core/file.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/testing/status_matchers.h"

namespace pml::core {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::IsOkAndHolds;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;

class FileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "pml_file_testXXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(FileTest, AtomicWriteReplacesContentAndSetsMode) {
  const std::string path = dir_ + "/key.pem";
  ASSERT_THAT(WriteFileAtomic(path, "old", 0600), IsOk());
  ASSERT_THAT(WriteFileAtomic(path, "new", 0600), IsOk());
  EXPECT_THAT(ReadFile(path), IsOkAndHolds(std::string("new")));
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // No temp files are left behind.
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

TEST_F(FileTest, MissingFileIsNotFoundAndNamesPath) {
  EXPECT_THAT(ReadFile(dir_ + "/nope"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
}

TEST_F(FileTest, OversizedFileIsRejected) {
  const std::string path = dir_ + "/big";
  ASSERT_THAT(WriteFileAtomic(path, std::string(100, 'x')), IsOk());
  EXPECT_THAT(ReadFile(path, 10), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("larger")));
}

TEST_F(FileTest, ReadRegularFileReadsARegularFileThroughASymlink) {
  const std::string path = dir_ + "/attr";
  ASSERT_THAT(WriteFileAtomic(path, "0x10de\n"), IsOk());
  std::filesystem::create_symlink(path, dir_ + "/link");
  EXPECT_THAT(ReadRegularFile(path, 64), IsOkAndHolds(std::string("0x10de\n")));
  EXPECT_THAT(ReadRegularFile(dir_ + "/link", 64), IsOkAndHolds(std::string("0x10de\n")));
}

TEST_F(FileTest, ReadRegularFileRefusesAFifoWithoutWaitingForAWriter) {
  const std::string path = dir_ + "/fifo";
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  EXPECT_THAT(ReadRegularFile(path, 64), StatusIs(absl::StatusCode::kFailedPrecondition,
                                                  HasSubstr("fifo is not a regular file")));
}

TEST_F(FileTest, ReadRegularFileRefusesADirectory) {
  EXPECT_THAT(ReadRegularFile(dir_, 64),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("is not a regular file")));
}

TEST_F(FileTest, ReadRegularFileKeepsReadFilesErrors) {
  EXPECT_THAT(ReadRegularFile(dir_ + "/nope", 64),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("cannot open")));
  const std::string path = dir_ + "/big";
  ASSERT_THAT(WriteFileAtomic(path, std::string(100, 'x')), IsOk());
  EXPECT_THAT(ReadRegularFile(path, 10),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is larger than 10 bytes")));
}

TEST_F(FileTest, MakeDirsCreatesParents) {
  const std::string path = dir_ + "/a/b/c";
  ASSERT_THAT(MakeDirs(path), IsOk());
  EXPECT_TRUE(PathExists(path));
  EXPECT_THAT(MakeDirs(path), IsOk());
}

}  // namespace
}  // namespace pml::core
