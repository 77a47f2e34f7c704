#include "proxykv/mapper/mapper_metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include "mapper_test_util.h"

namespace proxykv::mapper {
namespace {

using scoring::SelectionLevel;
using testing::make_gen;

// ---- slow, obvious references (plain loops over std::vector) ----

// Indices of the k largest values, ties to the earlier index.
std::set<int64_t> top_k(const std::vector<float>& values, int64_t k) {
  std::vector<int64_t> idx(values.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return values[a] > values[b]; });
  return {idx.begin(), idx.begin() + k};
}

double reference_recall(const at::Tensor& pred, const at::Tensor& label, const at::Tensor& valid, double rho,
                        SelectionLevel level, int64_t heads_per_layer, int64_t b) {
  const int64_t q = pred.size(1), t = pred.size(2);
  const int64_t rows_per_group = level == SelectionLevel::kGlobal  ? q
                                 : level == SelectionLevel::kLayer ? heads_per_layer
                                                                   : 1;
  int64_t hits = 0, wanted = 0;
  for (int64_t first = 0; first < q; first += rows_per_group) {
    std::vector<float> p, l;
    for (int64_t r = first; r < first + rows_per_group; ++r) {
      for (int64_t i = 0; i < t; ++i) {
        if (!valid[b][i].item<bool>()) continue;
        p.push_back(pred[b][r][i].item<float>());
        l.push_back(label[b][r][i].item<float>());
      }
    }
    if (p.empty()) continue;
    const int64_t n = static_cast<int64_t>(p.size());
    const int64_t k = std::clamp<int64_t>(std::llround(rho * static_cast<double>(n)), 1, n);
    const std::set<int64_t> sp = top_k(p, k), sl = top_k(l, k);
    for (int64_t i : sl) hits += sp.count(i);
    wanted += k;
  }
  return static_cast<double>(hits) / static_cast<double>(wanted);
}

std::vector<double> average_ranks(const std::vector<double>& x) {
  std::vector<double> r(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    double less = 0, equal = 0;
    for (double y : x) {
      less += y < x[i];
      equal += y == x[i];
    }
    r[i] = less + (equal - 1) / 2;
  }
  return r;
}

double reference_spearman(const at::Tensor& pred, const at::Tensor& label, const at::Tensor& valid, int64_t b) {
  std::vector<double> p, l;
  for (int64_t r = 0; r < pred.size(1); ++r) {
    for (int64_t i = 0; i < pred.size(2); ++i) {
      if (!valid[b][i].item<bool>()) continue;
      p.push_back(pred[b][r][i].item<float>());
      l.push_back(label[b][r][i].item<float>());
    }
  }
  const std::vector<double> rp = average_ranks(p), rl = average_ranks(l);
  const double mp = std::accumulate(rp.begin(), rp.end(), 0.0) / rp.size();
  const double ml = std::accumulate(rl.begin(), rl.end(), 0.0) / rl.size();
  double num = 0, dp = 0, dl = 0;
  for (size_t i = 0; i < rp.size(); ++i) {
    num += (rp[i] - mp) * (rl[i] - ml);
    dp += (rp[i] - mp) * (rp[i] - mp);
    dl += (rl[i] - ml) * (rl[i] - ml);
  }
  return num / std::sqrt(dp * dl);
}

TEST(MapperMetrics, TopkRecallMatchesSlowReference) {
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    at::Generator gen = make_gen(seed);
    const int64_t b = 3, q = 6, t = 17;
    at::Tensor label = at::rand({b, q, t}, gen);
    at::Tensor pred = label + 0.3 * at::randn({b, q, t}, gen);  // correlated but imperfect
    // Ties: a block of equal label and pred values exercises the earlier-entry rule.
    label[0].slice(1, 0, 4).fill_(0.5);
    pred[0].slice(1, 0, 4).fill_(0.5);
    at::Tensor valid = at::ones({b, t}, at::kBool);
    valid[1].slice(0, 11).fill_(false);
    valid[2].slice(0, 3, 6).fill_(false);
    for (SelectionLevel level : {SelectionLevel::kGlobal, SelectionLevel::kLayer, SelectionLevel::kHead}) {
      for (double rho : {0.05, 0.1, 0.3, 0.5, 0.7, 1.0}) {
        at::Tensor got = topk_recall(pred, label, rho, valid, level, /*heads_per_layer=*/3);
        ASSERT_EQ(got.sizes(), (std::vector<int64_t>{b}));
        for (int64_t i = 0; i < b; ++i) {
          EXPECT_NEAR(got[i].item<double>(), reference_recall(pred, label, valid, rho, level, 3, i), 1e-12)
              << "seed " << seed << " level " << scoring::selection_level_name(level) << " rho " << rho;
        }
      }
    }
  }
}

TEST(MapperMetrics, TopkRecallEdgeCases) {
  at::Tensor label = at::rand({4, 20}, make_gen(3));
  EXPECT_DOUBLE_EQ(topk_recall(label, label, 0.3).item<double>(), 1.0);   // [Q, T] input, perfect prediction
  EXPECT_DOUBLE_EQ(topk_recall(-label, label, 0.3).item<double>(), 0.0);  // reversed
  EXPECT_DOUBLE_EQ(topk_recall(-label, label, 1.0).item<double>(), 1.0);  // keeping everything
  at::Tensor none = at::zeros({1, 20}, at::kBool);
  EXPECT_TRUE(std::isnan(topk_recall(label.unsqueeze(0), label.unsqueeze(0), 0.3, none).item<double>()));
}

TEST(MapperMetrics, SpearmanMatchesSlowReference) {
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    at::Generator gen = make_gen(seed);
    const int64_t b = 3, q = 4, t = 15;
    at::Tensor label = at::rand({b, q, t}, gen);
    at::Tensor pred = label * label + 0.2 * at::randn({b, q, t}, gen);
    label[1].slice(1, 0, 5).fill_(0.25);  // ties get average ranks
    pred[2] = at::round(pred[2] * 3);     // many ties in pred
    at::Tensor valid = at::ones({b, t}, at::kBool);
    valid[0].slice(0, 9).fill_(false);
    at::Tensor got = spearman(pred, label, valid);
    for (int64_t i = 0; i < b; ++i) {
      EXPECT_NEAR(got[i].item<double>(), reference_spearman(pred, label, valid, i), 1e-9) << "seed " << seed;
    }
  }
  at::Tensor x = at::rand({2, 30}, make_gen(9));
  EXPECT_NEAR(spearman(at::exp(x * 4), x).item<double>(), 1.0, 1e-12);  // any monotone transform
  EXPECT_NEAR(spearman(-x, x).item<double>(), -1.0, 1e-12);
  EXPECT_EQ(spearman(at::ones({2, 30}), x).item<double>(), 0.0);  // undefined -> 0
}

}  // namespace
}  // namespace proxykv::mapper
