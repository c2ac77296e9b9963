#include "block/rate_limiter.h"

#include <algorithm>
#include <numeric>

namespace kindling::block {

namespace {

constexpr uint64_t kNsPerMs = 1'000'000;

uint64_t div_ceil(uint64_t a, uint64_t b) {
  return a / b + (a % b != 0);
}

}  // namespace

TokenBucket::TokenBucket(const TokenBucketConfig& config, uint64_t now_ns)
    : size_(config.size),
      burst_(config.one_time_burst),
      // Saturates instead of wrapping: a refill time of 584 years is as good as forever.
      refill_ns_(config.refill_time_ms > UINT64_MAX / kNsPerMs ? UINT64_MAX
                                                               : config.refill_time_ms * kNsPerMs),
      budget_(config.size),
      last_ns_(now_ns) {
  const uint64_t g = std::gcd(size_, refill_ns_);
  unit_tokens_ = size_ / g;
  unit_ns_ = refill_ns_ / g;
}

void TokenBucket::refill(uint64_t now_ns) {
  if (now_ns <= last_ns_) return;  // no time passed, or blocked until last_ns_
  const uint64_t elapsed = now_ns - last_ns_;
  if (elapsed >= refill_ns_) {
    budget_ = size_;
    last_ns_ = now_ns;
    return;
  }
  // elapsed < refill_ns_ = gcd * unit_ns_, so units * unit_tokens_ < size_: no overflow.
  const uint64_t units = elapsed / unit_ns_;
  budget_ = std::min(size_, budget_ + units * unit_tokens_);
  last_ns_ += units * unit_ns_;
}

BucketResult TokenBucket::check(uint64_t tokens, uint64_t now_ns) {
  refill(now_ns);
  if (tokens <= burst_) return BucketResult::kSuccess;
  const uint64_t n = tokens - burst_;
  if (now_ns < last_ns_) return BucketResult::kFailure;  // paying back an over-consumption
  if (n <= budget_) return BucketResult::kSuccess;
  if (n > size_) return BucketResult::kOverConsumption;
  return BucketResult::kFailure;
}

BucketResult TokenBucket::reduce(uint64_t tokens, uint64_t now_ns) {
  const BucketResult r = check(tokens, now_ns);
  if (r == BucketResult::kFailure) return r;
  if (tokens <= burst_) {
    burst_ -= tokens;
    return r;
  }
  const uint64_t n = tokens - burst_;
  burst_ = 0;
  if (r == BucketResult::kSuccess) {
    budget_ -= n;
    return r;
  }
  // Over-consumption: the budget pays what it can, the rest is paid back in time, during which
  // the bucket earns nothing and lets nothing through.
  const uint64_t excess = n - budget_;
  budget_ = 0;
  const unsigned __int128 pay =
      (static_cast<unsigned __int128>(excess) * refill_ns_ + size_ - 1) / size_;
  const unsigned __int128 until = static_cast<unsigned __int128>(now_ns) + pay;
  last_ns_ = until > UINT64_MAX ? UINT64_MAX : static_cast<uint64_t>(until);
  return r;
}

uint64_t TokenBucket::ready_at(uint64_t tokens, uint64_t now_ns) const {
  TokenBucket b = *this;
  b.refill(now_ns);
  if (tokens <= b.burst_) return now_ns;
  const uint64_t n = tokens - b.burst_;
  const uint64_t start = std::max(now_ns, b.last_ns_);
  if (n > b.size_ || n <= b.budget_) return start;
  const uint64_t units = div_ceil(n - b.budget_, b.unit_tokens_);
  // units * unit_ns_ <= refill_ns_, as in refill(); a full refill is there after refill_ns_.
  const uint64_t enough = b.last_ns_ + std::min(units * b.unit_ns_, b.refill_ns_);
  return std::max(now_ns, enough);
}

RateLimiter::RateLimiter(const RateLimiterConfig& config, uint64_t now_ns) {
  if (config.bandwidth && limits(*config.bandwidth)) bandwidth_.emplace(*config.bandwidth, now_ns);
  if (config.ops && limits(*config.ops)) ops_.emplace(*config.ops, now_ns);
}

bool RateLimiter::consume(uint64_t bytes, uint64_t now_ns) {
  // Both buckets are asked before either is charged, so a refusal takes nothing.
  if (ops_ && ops_->check(1, now_ns) == BucketResult::kFailure) return false;
  const bool charge_bytes = bandwidth_ && bytes > 0;
  if (charge_bytes && bandwidth_->check(bytes, now_ns) == BucketResult::kFailure) return false;
  if (ops_) (void)ops_->reduce(1, now_ns);
  if (charge_bytes) (void)bandwidth_->reduce(bytes, now_ns);
  return true;
}

uint64_t RateLimiter::ready_at(uint64_t bytes, uint64_t now_ns) const {
  uint64_t at = now_ns;
  if (ops_) at = std::max(at, ops_->ready_at(1, now_ns));
  if (bandwidth_ && bytes > 0) at = std::max(at, bandwidth_->ready_at(bytes, now_ns));
  return at;
}

}  // namespace kindling::block
