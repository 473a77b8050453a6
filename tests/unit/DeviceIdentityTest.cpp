#include "agent/DeviceIdentity.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "TempDir.h"
#include "platform/Pki.h"

namespace tether::agent {
namespace {

using testing::mode_of;
using testing::slurp;
using testing::TempDir;

TEST(DeviceIdentityTest, FirstStartMakesKeyAndSelfSignedCertificate) {
  TempDir tmp;
  StatePaths paths(tmp / "state");
  auto id = DeviceIdentity::load_or_create(paths);
  ASSERT_TRUE(id.ok()) << id.error().message;
  EXPECT_EQ(mode_of(paths.dir), 0700u);
  EXPECT_EQ(mode_of(paths.key), 0600u);
  EXPECT_TRUE(id->self_signed());
  EXPECT_EQ(id->device_id().size(), 64u);
  // The id is the SHA-256 of the key's SPKI, and the certificate's CN.
  EXPECT_EQ(id->device_id(), pki::to_hex(*pki::spki_sha256(id->key())));
  EXPECT_EQ(pki::describe(id->certificate())->common_name, id->device_id());

  auto again = DeviceIdentity::load_or_create(paths);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->device_id(), id->device_id());  // loaded, not regenerated
}

TEST(DeviceIdentityTest, RefusesAKeyOthersCanRead) {
  TempDir tmp;
  StatePaths paths(tmp / "state");
  ASSERT_TRUE(DeviceIdentity::load_or_create(paths).ok());
  ::chmod(paths.key.c_str(), 0644);
  auto id = DeviceIdentity::load(paths);
  ASSERT_FALSE(id.ok());
  EXPECT_NE(id.error().message.find(paths.key), std::string::npos) << id.error().message;
  // load_or_create must not replace it either.
  const std::string before = slurp(paths.key);
  EXPECT_FALSE(DeviceIdentity::load_or_create(paths).ok());
  EXPECT_EQ(slurp(paths.key), before);
}

TEST(DeviceIdentityTest, RefusesCorruptFilesNamingThem) {
  TempDir tmp;
  StatePaths paths(tmp / "state");
  ASSERT_TRUE(DeviceIdentity::load_or_create(paths).ok());
  const std::string key = slurp(paths.key);

  tmp.write("state/device.crt", "garbage");
  auto id = DeviceIdentity::load_or_create(paths);
  ASSERT_FALSE(id.ok());
  EXPECT_NE(id.error().message.find("device.crt is corrupt"), std::string::npos);
  EXPECT_EQ(slurp(paths.key), key);  // the key is kept

  tmp.write("state/device.key", "-----BEGIN PRIVATE KEY-----\ntruncated");
  ::chmod(paths.key.c_str(), 0600);
  id = DeviceIdentity::load(paths);
  ASSERT_FALSE(id.ok());
  EXPECT_NE(id.error().message.find("device.key is corrupt"), std::string::npos);
}

TEST(DeviceIdentityTest, RefusesACertificateForAnotherKey) {
  TempDir tmp;
  StatePaths a(tmp / "a");
  StatePaths b(tmp / "b");
  ASSERT_TRUE(DeviceIdentity::load_or_create(a).ok());
  ASSERT_TRUE(DeviceIdentity::load_or_create(b).ok());
  tmp.write("a/device.crt", slurp(b.cert));
  auto id = DeviceIdentity::load(a);
  ASSERT_FALSE(id.ok());
  EXPECT_NE(id.error().message.find("does not belong to the key"), std::string::npos);
}

TEST(DeviceIdentityTest, RefusesSymlinkedKey) {
  TempDir tmp;
  StatePaths paths(tmp / "state");
  ASSERT_TRUE(DeviceIdentity::load_or_create(paths).ok());
  const std::string real = tmp / "elsewhere.key";
  ASSERT_EQ(::rename(paths.key.c_str(), real.c_str()), 0);
  ASSERT_EQ(::symlink(real.c_str(), paths.key.c_str()), 0);
  auto id = DeviceIdentity::load(paths);
  ASSERT_FALSE(id.ok());
  EXPECT_NE(id.error().message.find("symlink"), std::string::npos) << id.error().message;
}

TEST(DeviceIdentityTest, GenerateWritesNothingUntilStored) {
  TempDir tmp;
  StatePaths paths(tmp / "state");
  auto id = DeviceIdentity::generate();
  ASSERT_TRUE(id.ok());
  EXPECT_FALSE(std::filesystem::exists(paths.dir));
  ssl::X509Ptr copy(X509_dup(id->certificate()));
  ASSERT_TRUE(id->store(paths, std::move(copy)).ok());
  EXPECT_EQ(mode_of(paths.key), 0600u);
  EXPECT_EQ(DeviceIdentity::load(paths)->device_id(), id->device_id());
}

TEST(DeviceIdentityTest, EnrollmentAndTrustRecordsRoundTrip) {
  TempDir tmp;
  StatePaths paths(tmp.path());
  EXPECT_FALSE(load_enrollment(paths)->has_value());
  EXPECT_TRUE(load_trust(paths)->empty());
  EnrollmentRecord r{"wss://ums.example:8443", std::string(64, 'a'), std::string(64, 'b'), 1234};
  ASSERT_TRUE(save_enrollment(paths, r).ok());
  auto loaded = load_enrollment(paths);
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ((*loaded)->server_url, r.server_url);
  EXPECT_EQ((*loaded)->enrolled_at, 1234);

  ASSERT_TRUE(
      save_trust(paths, {std::string(64, 'c'), std::string(64, 'b'), std::string(64, 'c')}).ok());
  auto trust = load_trust(paths);
  ASSERT_TRUE(trust.ok());
  EXPECT_EQ(*trust, (std::vector<std::string>{std::string(64, 'b'), std::string(64, 'c')}));

  tmp.write("enrollment.json", "{\"server_url\": 5}");
  auto bad = load_enrollment(paths);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("enrollment.json is corrupt"), std::string::npos);
  tmp.write("trust.json", "{\"ca_fingerprints\": []}");
  EXPECT_FALSE(load_trust(paths).ok());
  tmp.write("trust.json", "not json");
  EXPECT_FALSE(load_trust(paths).ok());
}

}  // namespace
}  // namespace tether::agent
