#include "proxykv/mapper/hybrid_loss.h"

#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include "mapper_test_util.h"

namespace proxykv::mapper {
namespace {

using scoring::SelectionLevel;
using testing::make_gen;

constexpr const char* kTerms[] = {"binary", "mse", "intra_rank", "mass_rank", "cosine"};

struct Case {
  at::Tensor label, valid;
};

// Two samples, Q = 4 target rows (2 layers x 2 heads), T = 50; the second sample has 12 padded tokens.
Case make_case(uint64_t seed) {
  Case c;
  c.label = testing::heavy_tailed({2, 4, 50}, make_gen(seed));
  c.valid = at::ones({2, 50}, at::kBool);
  c.valid[1].slice(0, 38).fill_(false);
  return c;
}

// A prediction with the valid entries of each sample permuted among themselves (ranking destroyed).
at::Tensor shuffled(const at::Tensor& x, const at::Tensor& valid, uint64_t seed) {
  at::Generator gen = make_gen(seed);
  at::Tensor out = x.clone();
  for (int64_t b = 0; b < x.size(0); ++b) {
    at::Tensor keep = valid[b].unsqueeze(0).expand_as(x[b]).reshape({-1});
    at::Tensor flat = out[b].reshape({-1});
    at::Tensor idx = keep.nonzero().squeeze(1);
    at::Tensor perm = at::randperm(idx.size(0), gen, at::TensorOptions().dtype(at::kLong));
    at::Tensor values = flat.index_select(0, idx).index_select(0, perm);
    out[b] = flat.index_copy(0, idx, values).view(x[b].sizes());
  }
  return out;
}

std::map<std::string, double> loss_values(const at::Tensor& pred, const Case& c, const HybridLossConfig& config,
                                          uint64_t seed = 7) {
  return hybrid_loss(pred, c.label, c.valid, config, make_gen(seed)).values();
}

HybridLossConfig config_at(SelectionLevel level, const std::string& transform = "log",
                           const std::string& cosine = "minmax") {
  HybridLossConfig config;
  config.level = level;
  config.heads_per_layer = 2;
  config.label_transform = transform;
  config.cosine_norm = cosine;
  return config;
}

TEST(HybridLoss, PerfectPredictionBeatsShuffledForEveryTerm) {
  at::NoGradGuard no_grad;
  for (SelectionLevel level : {SelectionLevel::kGlobal, SelectionLevel::kLayer, SelectionLevel::kHead}) {
    for (const char* transform : {"log", "rank"}) {
      for (const char* cosine : {"minmax", "softmax"}) {
        const HybridLossConfig config = config_at(level, transform, cosine);
        for (uint64_t seed = 1; seed <= 3; ++seed) {
          const Case c = make_case(seed);
          // Monotone but not affine transforms of the label: perfect rankings at two different scales.
          for (const at::Tensor& perfect : {at::sqrt(c.label) * 3 - 1, at::log(c.label) * 2}) {
            const auto good = loss_values(perfect, c, config);
            const auto bad = loss_values(shuffled(perfect, c.valid, seed + 100), c, config);
            for (const char* term : kTerms) {
              EXPECT_LT(good.at(term), bad.at(term))
                  << term << " level " << scoring::selection_level_name(level) << " " << transform << " " << cosine;
            }
            EXPECT_LT(good.at("total"), bad.at("total"));
          }
        }
      }
    }
  }
}

TEST(HybridLoss, RankAndBinaryTermsVanishForAPerfectRankingAtLargeScale) {
  at::NoGradGuard no_grad;
  for (SelectionLevel level : {SelectionLevel::kGlobal, SelectionLevel::kHead}) {
    const Case c = make_case(11);
    // Perfect order with large gaps between consecutive entries: RankNet and BCE at their infimum (0). Padded
    // entries rank lowest so that the swaps below touch valid entries only.
    at::Tensor masked = at::where(c.valid.unsqueeze(1).expand_as(c.label), c.label, at::full({}, -1.0f));
    at::Tensor ranks = std::get<1>(std::get<1>(masked.reshape({2, -1}).sort(1)).sort(1)).to(at::kFloat);
    at::Tensor perfect = (ranks * 50).view(c.label.sizes());
    const auto v = loss_values(perfect, c, config_at(level));
    EXPECT_LT(v.at("intra_rank"), 1e-6);
    EXPECT_LT(v.at("mass_rank"), 1e-6);
    EXPECT_LT(v.at("binary"), 1e-6);

    // And any disturbance of a perfect ranking costs: swapping the top entry of each sample with the one ranked
    // 61st (just outside the top 30%) raises both rank terms (the same pairs are drawn: same generator seed).
    at::Tensor swapped = perfect.clone().view({2, -1});
    for (int64_t b = 0; b < 2; ++b) {
      const int64_t top = ranks[b].argmax().item<int64_t>();
      const int64_t mid = ranks[b].eq(ranks[b].max().item<float>() - 60).nonzero()[0][0].item<int64_t>();
      at::Tensor a = swapped[b][top].clone();
      swapped[b][top] = swapped[b][mid];
      swapped[b][mid] = a;
    }
    const auto w = loss_values(swapped.view(c.label.sizes()), c, config_at(level));
    EXPECT_GT(w.at("mass_rank"), v.at("mass_rank") + 1e-3);
    EXPECT_GT(w.at("intra_rank"), v.at("intra_rank"));
  }
}

TEST(HybridLoss, MseAndCosineAreZeroForAnAffineImageOfTheTarget) {
  at::NoGradGuard no_grad;
  const Case c = make_case(3);
  HybridLossConfig config = config_at(SelectionLevel::kGlobal);
  const auto v = loss_values(at::log(c.label + config.label_eps) * 0.25 + 3, c, config);
  EXPECT_NEAR(v.at("mse"), 0.0, 1e-5);
  EXPECT_NEAR(v.at("cosine"), 0.0, 1e-5);
}

TEST(HybridLoss, EachTermCanBeSwitchedOff) {
  const Case c = make_case(5);
  at::Tensor pred = at::randn(c.label.sizes(), make_gen(6)).requires_grad_(true);
  const auto all = loss_values(pred.detach(), c, HybridLossConfig{});
  double sum = 0;
  for (const char* term : kTerms) sum += all.at(term);
  EXPECT_NEAR(all.at("total"), sum, 1e-5);

  for (const char* off : kTerms) {
    HybridLossConfig config;
    if (std::string(off) == "binary") config.binary_weight = 0;
    if (std::string(off) == "mse") config.mse_weight = 0;
    if (std::string(off) == "intra_rank") config.intra_rank_weight = 0;
    if (std::string(off) == "mass_rank") config.mass_rank_weight = 0;
    if (std::string(off) == "cosine") config.cosine_weight = 0;
    HybridLossTerms terms = hybrid_loss(pred, c.label, c.valid, config, make_gen(7));
    const auto v = terms.values();
    EXPECT_EQ(v.count(off), 0u) << off;
    EXPECT_NEAR(v.at("total"), all.at("total") - all.at(off), 1e-5) << off;
    pred.mutable_grad() = at::Tensor();
    terms.total.backward();
    EXPECT_TRUE(pred.grad().defined() && pred.grad().isfinite().all().item<bool>()) << off;
  }

  // Every term off: total is 0 and still differentiable.
  HybridLossConfig none;
  none.binary_weight = none.mse_weight = none.intra_rank_weight = none.mass_rank_weight = none.cosine_weight = 0;
  HybridLossTerms terms = hybrid_loss(pred, c.label, c.valid, none, make_gen(7));
  EXPECT_EQ(terms.values().size(), 1u);
  EXPECT_EQ(terms.total.item<double>(), 0.0);
  terms.total.backward();

  // Weights scale their term.
  HybridLossConfig doubled;
  doubled.cosine_weight = 2;
  EXPECT_NEAR(loss_values(pred.detach(), c, doubled).at("total"), all.at("total") + all.at("cosine"), 1e-5);
}

TEST(HybridLoss, PaddedEntriesAreIgnored) {
  at::NoGradGuard no_grad;
  const Case c = make_case(8);
  at::Tensor pred = at::randn(c.label.sizes(), make_gen(9));
  // Garbage in the padded tail of sample 1 (label and pred) must not change anything.
  at::Tensor label2 = c.label.clone(), pred2 = pred.clone();
  label2[1].slice(1, 38).fill_(1.0);
  pred2[1].slice(1, 38).fill_(-1e3);
  Case c2{label2, c.valid};
  for (SelectionLevel level : {SelectionLevel::kGlobal, SelectionLevel::kHead}) {
    const auto a = loss_values(pred, c, config_at(level));
    const auto b = loss_values(pred2, c2, config_at(level));
    for (const auto& [name, value] : a) EXPECT_NEAR(value, b.at(name), 1e-6) << name;
  }
}

TEST(HybridLoss, GradientsAreFiniteAndSamplingIsDeterministic) {
  const Case c = make_case(12);
  at::Tensor pred = at::zeros(c.label.sizes()).requires_grad_(true);  // constant prediction: degenerate norms
  HybridLossTerms t = hybrid_loss(pred, c.label, c.valid, HybridLossConfig{}, make_gen(1));
  t.total.backward();
  EXPECT_TRUE(pred.grad().isfinite().all().item<bool>());
  EXPECT_TRUE(t.total.isfinite().item<bool>());

  at::Tensor p = at::randn(c.label.sizes(), make_gen(2));
  EXPECT_EQ(loss_values(p, c, HybridLossConfig{}, 5), loss_values(p, c, HybridLossConfig{}, 5));
}

TEST(HybridLossConfig, JsonRoundTripAndValidation) {
  HybridLossConfig c;
  c.level = SelectionLevel::kHead;
  c.ratios = {0.2, 0.4};
  c.mse_value_weighted = false;
  Result<HybridLossConfig> back = HybridLossConfig::from_json(c.to_json(), "test");
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(back->to_json(), c.to_json());

  nlohmann::json j = c.to_json();
  j["level"] = "row";
  EXPECT_FALSE(HybridLossConfig::from_json(j, "loss.json").is_ok());
  j = c.to_json();
  j["ratios"] = {0.0};
  EXPECT_FALSE(HybridLossConfig::from_json(j, "loss.json").is_ok());
  j = c.to_json();
  j["mse_wieght"] = 1;
  EXPECT_FALSE(HybridLossConfig::from_json(j, "loss.json").is_ok());
  j = c.to_json();
  j["level"] = "layer";
  j["heads_per_layer"] = 0;
  EXPECT_FALSE(HybridLossConfig::from_json(j, "loss.json").is_ok());
  j = c.to_json();
  j["level"] = "token";  // a selection rule with no per-entry groups: refused by name
  Result<HybridLossConfig> token = HybridLossConfig::from_json(j, "loss.json");
  ASSERT_FALSE(token.is_ok());
  EXPECT_NE(token.status().message().find("token"), std::string::npos);
}

}  // namespace
}  // namespace proxykv::mapper
