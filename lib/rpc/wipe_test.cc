#include "lib/rpc/wipe.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "pml/kms/v1/kms.pb.h"

namespace pml::rpc {
namespace {

// Where a string field's bytes live. Clear() keeps a string's buffer (libstdc++'s clear() and
// protobuf's ClearToEmpty keep the capacity; a cleared repeated message stays allocated for
// reuse), so the bytes can be read back after WipeMessage from the very same place.
struct Buffer {
  const char* data;
  size_t size;
};

bool AllZero(const Buffer& b) {
  for (size_t i = 0; i < b.size; ++i) {
    if (b.data[i] != 0) return false;
  }
  return true;
}

std::string Secret(char c) { return std::string(48, c); }  // longer than SSO: on the heap

TEST(WipeMessageTest, ZeroesEveryBytesFieldOfAppKeysAndClearsIt) {
  kms::v1::AppKeys keys;
  keys.set_app_ca_key(Secret('a'));
  keys.set_disk_crypt_key(Secret('d'));
  keys.set_env_crypt_key(Secret('e'));
  keys.set_k256_key(Secret('k'));
  keys.set_epoch(7);
  const std::vector<Buffer> buffers = {
      {keys.app_ca_key().data(), keys.app_ca_key().size()},
      {keys.disk_crypt_key().data(), keys.disk_crypt_key().size()},
      {keys.env_crypt_key().data(), keys.env_crypt_key().size()},
      {keys.k256_key().data(), keys.k256_key().size()},
  };
  for (const Buffer& b : buffers) ASSERT_FALSE(AllZero(b));

  WipeMessage(keys);

  for (const Buffer& b : buffers) EXPECT_TRUE(AllZero(b));
  EXPECT_EQ(keys.ByteSizeLong(), 0u);
  EXPECT_TRUE(keys.app_ca_key().empty());
  EXPECT_EQ(keys.epoch(), 0u);
}

TEST(WipeMessageTest, ReachesRepeatedNestedMessages) {
  kms::v1::RootSecrets secrets;
  secrets.set_cluster_key(Secret('c'));
  std::vector<Buffer> buffers = {{secrets.cluster_key().data(), secrets.cluster_key().size()}};
  for (int i = 0; i < 3; ++i) {
    kms::v1::EpochRootSecrets* e = secrets.add_epochs();
    e->set_epoch(static_cast<uint32_t>(i + 1));
    e->set_ca_key(Secret(static_cast<char>('0' + i)));
    e->set_k256_key(Secret(static_cast<char>('5' + i)));
    e->mutable_create_time()->set_seconds(1700000000);
    buffers.push_back({e->ca_key().data(), e->ca_key().size()});
    buffers.push_back({e->k256_key().data(), e->k256_key().size()});
  }

  WipeMessage(secrets);

  for (const Buffer& b : buffers) EXPECT_TRUE(AllZero(b));
  EXPECT_EQ(secrets.epochs_size(), 0);
  EXPECT_TRUE(secrets.cluster_key().empty());
}

TEST(WipeMessageTest, ReachesRepeatedBytes) {
  kms::v1::SignCertResponse resp;
  resp.add_certificate_chain(Secret('x'));
  resp.add_certificate_chain(Secret('y'));
  const std::vector<Buffer> buffers = {
      {resp.certificate_chain(0).data(), resp.certificate_chain(0).size()},
      {resp.certificate_chain(1).data(), resp.certificate_chain(1).size()},
  };

  WipeMessage(resp);

  for (const Buffer& b : buffers) EXPECT_TRUE(AllZero(b));
  EXPECT_EQ(resp.certificate_chain_size(), 0);
}

TEST(WipeMessageTest, ReachesUnknownFields) {
  // A newer peer's AppKeys with a secret in field 99, which this build does not know.
  kms::v1::AppKeys newer;
  newer.set_k256_key(Secret('k'));
  std::string wire = newer.SerializeAsString();
  const std::string extra = Secret('u');
  wire.push_back(static_cast<char>(((99 << 3 | 2) & 0x7f) | 0x80));  // tag 99, length-delimited
  wire.push_back(static_cast<char>((99 << 3 | 2) >> 7));
  wire.push_back(static_cast<char>(extra.size()));
  wire += extra;
  kms::v1::AppKeys keys;
  ASSERT_TRUE(keys.ParseFromString(wire));
  const auto& unknown = keys.GetReflection()->GetUnknownFields(keys);
  ASSERT_EQ(unknown.field_count(), 1);
  const std::string& stored = unknown.field(0).length_delimited();
  ASSERT_EQ(stored, extra);
  // Clear() frees unknown fields, so look at them after ZeroMessage (WipeMessage's first half).
  ZeroMessage(keys);
  ASSERT_EQ(unknown.field_count(), 1);
  EXPECT_EQ(stored, std::string(extra.size(), '\0'));
  EXPECT_EQ(keys.k256_key(), std::string(48, '\0'));  // sizes kept, bytes zero
  WipeMessage(keys);
  EXPECT_EQ(keys.GetReflection()->GetUnknownFields(keys).field_count(), 0);
}

TEST(WipeMessageTest, EmptyAndPartlySetMessagesAreFine) {
  kms::v1::AppKeys empty;
  WipeMessage(empty);
  EXPECT_EQ(empty.ByteSizeLong(), 0u);

  kms::v1::AppKeys partial;
  partial.set_k256_key("short");  // inline (SSO) storage is wiped too
  const Buffer b{partial.k256_key().data(), partial.k256_key().size()};
  WipeMessage(partial);
  EXPECT_TRUE(AllZero(b));
  // The message stays usable.
  partial.set_k256_key(Secret('z'));
  EXPECT_EQ(partial.k256_key(), Secret('z'));
}

}  // namespace
}  // namespace pml::rpc
