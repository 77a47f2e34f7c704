#include "proxykv/scoring/selection.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <tuple>

#include <gtest/gtest.h>

namespace proxykv::scoring {
namespace {

// Slow, obvious top-k over a list of (score, flat index): higher score first, then lower index.
std::vector<int64_t> reference_top(const std::vector<float>& scores, int64_t k) {
  std::vector<int64_t> idx(scores.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(),
            [&](int64_t a, int64_t b) { return std::make_tuple(-scores[a], a) < std::make_tuple(-scores[b], b); });
  idx.resize(k);
  std::sort(idx.begin(), idx.end());
  return idx;
}

int64_t round_budget(double rho, int64_t n) {
  return std::max<int64_t>(1, std::llround(rho * n));
}

class SelectionCounts : public ::testing::TestWithParam<std::tuple<SelectionLevel, double>> {};

TEST_P(SelectionCounts, ExactPerLevelAndEqualToReference) {
  const auto [level, rho] = GetParam();
  const int64_t L = 3, H = 2, T = 50, sinks = 2;
  at::manual_seed(17);
  // Scores with many ties (rounded), to exercise the tie rule.
  at::Tensor scores = (at::rand({L, H, T}) * 8).floor();
  auto sel = select_entries(scores, rho, level, sinks);
  ASSERT_TRUE(sel.is_ok()) << sel.status().to_string();
  at::Tensor mask = sel->mask(T);
  for (int64_t l = 0; l < L; ++l) {
    for (int64_t h = 0; h < H; ++h) {
      EXPECT_TRUE(mask[l][h].narrow(0, 0, sinks).all().item<bool>()) << "sinks always kept";
    }
  }
  // The reference: sinks get +inf, then plain sorting within each selection group.
  at::Tensor s = scores.clone();
  s.narrow(2, 0, sinks).fill_(std::numeric_limits<float>::infinity());
  std::vector<std::vector<int64_t>> groups;  // flat indices of each group
  if (level == SelectionLevel::kGlobal) {
    groups.emplace_back(L * H * T);
    std::iota(groups[0].begin(), groups[0].end(), 0);
  } else if (level == SelectionLevel::kLayer) {
    for (int64_t l = 0; l < L; ++l) {
      groups.emplace_back(H * T);
      std::iota(groups.back().begin(), groups.back().end(), l * H * T);
    }
  } else {
    for (int64_t g = 0; g < L * H; ++g) {
      groups.emplace_back(T);
      std::iota(groups.back().begin(), groups.back().end(), g * T);
    }
  }
  at::Tensor flat_s = s.reshape({-1});
  at::Tensor flat_m = mask.reshape({-1});
  int64_t total_kept = 0;
  for (const auto& g : groups) {
    std::vector<float> gs;
    for (int64_t i : g) gs.push_back(flat_s[i].item<float>());
    const int64_t k = round_budget(rho, static_cast<int64_t>(g.size()));
    std::vector<int64_t> want = reference_top(gs, k);
    std::vector<int64_t> got;
    for (size_t j = 0; j < g.size(); ++j) {
      if (flat_m[g[j]].item<bool>()) got.push_back(static_cast<int64_t>(j));
    }
    EXPECT_EQ(got, want);
    EXPECT_EQ(static_cast<int64_t>(got.size()), k);  // exact count per group
    total_kept += k;
  }
  EXPECT_EQ(sel->kept, total_kept);
  EXPECT_EQ(sel->total, L * H * T);
}

INSTANTIATE_TEST_SUITE_P(Levels, SelectionCounts,
                         ::testing::Combine(::testing::Values(SelectionLevel::kGlobal, SelectionLevel::kLayer,
                                                              SelectionLevel::kHead),
                                            ::testing::Values(0.1, 0.3, 0.5, 1.0)));

TEST(Selection, TokenLevelKeepsTheSameBestTokensInEveryHead) {
  const int64_t L = 3, H = 2, T = 40, sinks = 2;
  at::manual_seed(23);
  at::Tensor scores = (at::rand({L, H, T}) * 6).floor();  // ties
  for (double rho : {0.1, 0.3, 0.5, 1.0}) {
    auto sel = select_entries(scores, rho, SelectionLevel::kToken, sinks);
    ASSERT_TRUE(sel.is_ok()) << sel.status().to_string();
    // Reference: a token's best score over every (layer, head), sinks +inf, then the plain top-k.
    std::vector<float> best(T, -std::numeric_limits<float>::infinity());
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t l = 0; l < L; ++l) {
        for (int64_t h = 0; h < H; ++h) best[t] = std::max(best[t], scores[l][h][t].item<float>());
      }
      if (t < sinks) best[t] = std::numeric_limits<float>::infinity();
    }
    const int64_t k = round_budget(rho, T);
    const std::vector<int64_t> want = reference_top(best, k);
    for (int64_t l = 0; l < L; ++l) {
      for (int64_t h = 0; h < H; ++h) {
        const at::Tensor got = sel->keep[l][h];
        EXPECT_EQ(std::vector<int64_t>(got.data_ptr<int64_t>(), got.data_ptr<int64_t>() + got.numel()), want)
            << "rho " << rho << " layer " << l << " head " << h;
      }
    }
    EXPECT_EQ(sel->kept, L * H * k);
  }
  EXPECT_EQ(selection_level_name(*parse_selection_level("token")), std::string("token"));
}

TEST(Selection, TiesKeepEarlierTokens) {
  auto sel = select_entries(at::zeros({1, 1, 10}), 0.3, SelectionLevel::kHead, 0);
  ASSERT_TRUE(sel.is_ok());
  EXPECT_TRUE(at::equal(sel->keep[0][0], at::tensor({0, 1, 2}, at::kLong)));
}

TEST(Selection, SinksWinEvenWhenTheBudgetIsSmaller) {
  auto sel = select_entries(at::rand({1, 2, 100}), 0.01, SelectionLevel::kHead, 4);
  ASSERT_TRUE(sel.is_ok());
  EXPECT_EQ(sel->keep[0][0].numel(), 4);
}

TEST(Selection, GlobalLevelIsNonUniformAcrossHeads) {
  at::Tensor scores = at::zeros({1, 2, 10});
  scores[0][1].fill_(1.0);  // head 1 dominates
  auto sel = select_entries(scores, 0.5, SelectionLevel::kGlobal, 0);
  ASSERT_TRUE(sel.is_ok());
  EXPECT_EQ(sel->keep[0][0].numel(), 0);
  EXPECT_EQ(sel->keep[0][1].numel(), 10);
}

// The head floor against a slow reference: per group (the whole cache at global level, a layer at layer level),
// each head first takes its own best floor(f * k / heads), then the group's best remaining entries fill k.
TEST(Selection, HeadFloorEqualsTheSlowReference) {
  const int64_t L = 3, H = 2, T = 50, sinks = 2;
  at::manual_seed(29);
  const at::Tensor scores = (at::rand({L, H, T}) * 8).floor();  // ties
  at::Tensor s = scores.clone();
  s.narrow(2, 0, sinks).fill_(std::numeric_limits<float>::infinity());
  for (SelectionLevel level : {SelectionLevel::kGlobal, SelectionLevel::kLayer}) {
    for (double rho : {0.1, 0.3, 0.5}) {
      for (double floor_share : {0.0, 0.25, 0.5, 1.0}) {
        auto sel = select_entries(scores, rho, level, sinks, floor_share);
        ASSERT_TRUE(sel.is_ok()) << sel.status().to_string();
        const at::Tensor mask = sel->mask(T);
        const int64_t groups = level == SelectionLevel::kGlobal ? 1 : L;
        const int64_t layers_per_group = L / groups;
        int64_t total = 0;
        for (int64_t g = 0; g < groups; ++g) {
          const int64_t heads = layers_per_group * H;
          const int64_t k = std::max(round_budget(rho, heads * T), sinks * heads);
          const int64_t per_head = static_cast<int64_t>(std::floor(floor_share * static_cast<double>(k) / heads));
          std::vector<char> want(heads * T, 0);  // the group's entries, (layer, head, token) order
          for (int64_t gh = 0; gh < heads; ++gh) {
            const int64_t l = g * layers_per_group + gh / H, h = gh % H;
            std::vector<float> hs(T);
            for (int64_t t = 0; t < T; ++t) hs[t] = s[l][h][t].item<float>();
            for (int64_t t : reference_top(hs, per_head)) want[gh * T + t] = 1;
          }
          std::vector<int64_t> open;
          std::vector<float> open_scores;
          for (int64_t i = 0; i < heads * T; ++i) {
            if (want[i]) continue;
            open.push_back(i);
            const int64_t gh = i / T;
            open_scores.push_back(s[g * layers_per_group + gh / H][gh % H][i % T].item<float>());
          }
          for (int64_t j : reference_top(open_scores, k - per_head * heads)) want[open[j]] = 1;
          for (int64_t i = 0; i < heads * T; ++i) {
            const int64_t gh = i / T;
            ASSERT_EQ(mask[g * layers_per_group + gh / H][gh % H][i % T].item<bool>(), want[i] != 0)
                << selection_level_name(level) << " rho " << rho << " floor " << floor_share << " entry " << i;
          }
          total += k;
        }
        EXPECT_EQ(sel->kept, total) << "the floor moves entries between heads, never changes the count";
      }
    }
  }
}

TEST(Selection, HeadFloorFeedsAStarvedHead) {
  at::Tensor scores = at::zeros({1, 2, 10});
  scores[0][1].fill_(1.0);  // head 1 dominates; without a floor head 0 keeps nothing (GlobalLevelIsNonUniform...)
  auto sel = select_entries(scores, 0.5, SelectionLevel::kGlobal, 0, 0.5);
  ASSERT_TRUE(sel.is_ok());
  EXPECT_EQ(sel->keep[0][0].numel(), 2);  // floor(0.5 * 10 / 2)
  EXPECT_EQ(sel->keep[0][1].numel(), 8);
  // A full floor is head level where the budget divides evenly.
  const at::Tensor r = at::rand({2, 2, 20});
  auto full_floor = select_entries(r, 0.5, SelectionLevel::kGlobal, 1, 1.0);
  auto head = select_entries(r, 0.5, SelectionLevel::kHead, 1);
  ASSERT_TRUE(full_floor.is_ok() && head.is_ok());
  EXPECT_TRUE(at::equal(full_floor->mask(20), head->mask(20)));
}

TEST(Selection, HeadFloorOutsideItsRangeOrLevelIsRefused) {
  const at::Tensor r = at::rand({1, 2, 10});
  for (double bad : {-0.1, 1.5, std::nan("")}) {
    auto sel = select_entries(r, 0.5, SelectionLevel::kGlobal, 0, bad);
    ASSERT_FALSE(sel.is_ok());
    EXPECT_NE(sel.status().message().find("head floor"), std::string::npos) << sel.status().message();
  }
  for (SelectionLevel level : {SelectionLevel::kHead, SelectionLevel::kToken}) {
    auto sel = select_entries(r, 0.5, level, 0, 0.5);
    ASSERT_FALSE(sel.is_ok());
    EXPECT_NE(sel.status().message().find("global and layer"), std::string::npos) << sel.status().message();
  }
  EXPECT_TRUE(select_entries(r, 0.5, SelectionLevel::kHead, 0, 0.0).is_ok());
}

TEST(Selection, RejectsBadInput) {
  EXPECT_FALSE(select_entries(at::rand({1, 1, 10}), 0.0, SelectionLevel::kHead, 0).is_ok());
  EXPECT_FALSE(select_entries(at::rand({1, 1, 10}), 1.5, SelectionLevel::kHead, 0).is_ok());
  EXPECT_FALSE(select_entries(at::rand({10}), 0.5, SelectionLevel::kHead, 0).is_ok());
  EXPECT_FALSE(parse_selection_level("uniform").is_ok());
}

TEST(Selection, RecallAgainstItselfIsOne) {
  at::Tensor scores = at::rand({2, 2, 30});
  auto a = select_entries(scores, 0.3, SelectionLevel::kGlobal, 1);
  ASSERT_TRUE(a.is_ok());
  EXPECT_DOUBLE_EQ(keep_recall(*a, *a, 30), 1.0);
  auto b = select_entries(-scores, 0.3, SelectionLevel::kGlobal, 1);
  EXPECT_LT(keep_recall(*b, *a, 30), 0.5);
}

}  // namespace
}  // namespace proxykv::scoring
