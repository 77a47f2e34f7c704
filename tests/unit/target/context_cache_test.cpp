#include "proxykv/target/context_cache.h"

#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace proxykv::target {
namespace {

struct Blob {
  int value = 0;
};

TEST(ContextCache, IdsAreRandomHexAndUnique) {
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    std::string id = random_context_id();
    ASSERT_EQ(id.size(), 4u + 32u);
    EXPECT_EQ(id.rfind("ctx_", 0), 0u);
    for (char c : id.substr(4)) EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << id;
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 1000u);
}

TEST(ContextCache, EvictsLeastRecentlyUsedByBytes) {
  ContextCache<Blob> cache(100);
  auto a = cache.insert(std::make_shared<Blob>(Blob{1}), 40);
  auto b = cache.insert(std::make_shared<Blob>(Blob{2}), 40);
  ASSERT_TRUE(a.is_ok() && b.is_ok());
  EXPECT_EQ(cache.stats().bytes, 80);
  ASSERT_NE(cache.find(*a), nullptr);  // a is now the most recently used: b goes first
  auto c = cache.insert(std::make_shared<Blob>(Blob{3}), 40);
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(cache.find(*b), nullptr);
  ASSERT_NE(cache.find(*a), nullptr);
  EXPECT_EQ(cache.find(*a)->value, 1);
  EXPECT_EQ(cache.find(*c)->value, 3);
  ContextCacheStats s = cache.stats();
  EXPECT_EQ(s.entries, 2);
  EXPECT_EQ(s.bytes, 80);
  EXPECT_EQ(s.evictions, 1);
  EXPECT_EQ(s.misses, 1);
  EXPECT_EQ(s.hits, 4);

  // One big entry pushes out everything older.
  auto d = cache.insert(std::make_shared<Blob>(Blob{4}), 100);
  ASSERT_TRUE(d.is_ok());
  EXPECT_EQ(cache.stats().entries, 1);
  EXPECT_EQ(cache.stats().bytes, 100);
  EXPECT_EQ(cache.stats().evictions, 3);
}

TEST(ContextCache, RefusesWhatCannotFitAndKeepsTheRest) {
  ContextCache<Blob> cache(100);
  auto a = cache.insert(std::make_shared<Blob>(), 60);
  ASSERT_TRUE(a.is_ok());
  auto big = cache.insert(std::make_shared<Blob>(), 101);
  ASSERT_FALSE(big.is_ok());
  EXPECT_EQ(big.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(cache.find(*a), nullptr);  // nothing was evicted for a refused entry
}

TEST(ContextCache, EraseFreesBytesAndEvictedEntriesStayAliveForTheirUsers) {
  ContextCache<Blob> cache(50);
  auto a = cache.insert(std::make_shared<Blob>(Blob{7}), 50);
  ASSERT_TRUE(a.is_ok());
  std::shared_ptr<Blob> in_use = cache.find(*a);
  auto b = cache.insert(std::make_shared<Blob>(Blob{8}), 50);  // evicts a
  ASSERT_TRUE(b.is_ok());
  EXPECT_EQ(cache.find(*a), nullptr);
  EXPECT_EQ(in_use->value, 7);  // a request still answering from it is unaffected
  EXPECT_TRUE(cache.erase(*b));
  EXPECT_FALSE(cache.erase(*b));
  EXPECT_EQ(cache.stats().bytes, 0);
  EXPECT_EQ(cache.stats().entries, 0);
}

TEST(ContextCache, ConcurrentUseKeepsTheAccountingExact) {
  ContextCache<Blob> cache(1000);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&cache] {
      for (int i = 0; i < 200; ++i) {
        auto id = cache.insert(std::make_shared<Blob>(Blob{i}), 10);
        ASSERT_TRUE(id.is_ok());
        cache.find(*id);
        if (i % 2) cache.erase(*id);
      }
    });
  }
  for (auto& t : threads) t.join();
  ContextCacheStats s = cache.stats();
  EXPECT_EQ(s.bytes, s.entries * 10);
  EXPECT_LE(s.bytes, 1000);
  EXPECT_EQ(s.hits + s.misses, 800);
}

}  // namespace
}  // namespace proxykv::target
