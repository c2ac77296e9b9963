// Firecracker's rate limiter: two token buckets (bytes and operations) per device.
//
// Pure: every call takes the time (CLOCK_MONOTONIC nanoseconds) as a parameter, so tests drive
// it with exact numbers and the device with the real clock. Semantics follow Firecracker's
// TokenBucket: a bucket starts full, refills in proportion to the time elapsed (`size` tokens
// per `refill_time_ms`), spends its `one_time_burst` first (never refilled), and lets a request
// bigger than `size` through by emptying itself; the excess is then paid back before anything
// else passes (no tokens accrue meanwhile, so the long-run rate stays exact).
#pragma once

#include <cstdint>
#include <optional>

namespace kindling::block {

// One token bucket as configured (Firecracker's TokenBucket object; `size` 0 or
// `refill_time_ms` 0 means no limit).
struct TokenBucketConfig {
  uint64_t size = 0;            // tokens (bytes or operations) of a full bucket
  uint64_t one_time_burst = 0;  // extra tokens spent first, never refilled
  uint64_t refill_time_ms = 0;  // time to refill an empty bucket completely
  bool operator==(const TokenBucketConfig&) const = default;
};

// A device's two buckets; an absent (or non-limiting) bucket imposes no limit.
struct RateLimiterConfig {
  std::optional<TokenBucketConfig> bandwidth;  // bytes
  std::optional<TokenBucketConfig> ops;        // requests
  bool operator==(const RateLimiterConfig&) const = default;
};

// Whether a bucket limits anything (Firecracker: both size and refill_time non-zero).
constexpr bool limits(const TokenBucketConfig& c) {
  return c.size != 0 && c.refill_time_ms != 0;
}
// Whether any bucket of `c` limits anything.
constexpr bool limits(const RateLimiterConfig& c) {
  return (c.bandwidth && limits(*c.bandwidth)) || (c.ops && limits(*c.ops));
}

// What taking tokens from a bucket did.
enum class BucketResult {
  kSuccess,          // taken
  kFailure,          // not enough tokens: nothing taken
  kOverConsumption,  // more than `size` asked: the bucket emptied and blocked, the caller goes on
};

// One token bucket.
class TokenBucket {
 public:
  // A full bucket at `now_ns`; `config` must limit (limits(config)).
  TokenBucket(const TokenBucketConfig& config, uint64_t now_ns);

  // What reduce(tokens, now_ns) would do, without taking anything (refills first).
  BucketResult check(uint64_t tokens, uint64_t now_ns);
  // Takes `tokens`: from the one-time burst first, then the budget.
  BucketResult reduce(uint64_t tokens, uint64_t now_ns);
  // The earliest time at which check(tokens) no longer fails (now_ns when it does not now).
  uint64_t ready_at(uint64_t tokens, uint64_t now_ns) const;

  uint64_t size() const { return size_; }
  uint64_t budget() const { return budget_; }
  uint64_t one_time_burst() const { return burst_; }

 private:
  // Adds the tokens earned since last_ns_, in whole refill units, and moves last_ns_ by exactly
  // the time they took (the remainder keeps counting).
  void refill(uint64_t now_ns);

  uint64_t size_;
  uint64_t burst_;
  uint64_t refill_ns_;
  // The refill rate as the smallest whole step: unit_tokens_ every unit_ns_ (size/refill
  // divided by their gcd), so that refills never lose a fraction.
  uint64_t unit_tokens_;
  uint64_t unit_ns_;
  uint64_t budget_;
  uint64_t last_ns_;  // tokens are earned from here on (in the future while blocked)
};

// A device's limiter: one operation and the request's bytes per request.
class RateLimiter {
 public:
  // `config`'s limiting buckets, full at `now_ns`; no buckets: everything passes.
  explicit RateLimiter(const RateLimiterConfig& config = {}, uint64_t now_ns = 0);

  // Whether no bucket limits anything.
  bool unlimited() const { return !bandwidth_ && !ops_; }
  // Takes one operation and `bytes` bytes; false (and nothing taken) when a bucket lacks
  // them. A request bigger than a bucket passes and leaves that bucket blocked.
  bool consume(uint64_t bytes, uint64_t now_ns);
  // When consume(bytes) can next succeed (now_ns when it can now).
  uint64_t ready_at(uint64_t bytes, uint64_t now_ns) const;

  const std::optional<TokenBucket>& bandwidth() const { return bandwidth_; }
  const std::optional<TokenBucket>& ops() const { return ops_; }

 private:
  std::optional<TokenBucket> bandwidth_;
  std::optional<TokenBucket> ops_;
};

}  // namespace kindling::block
