#include "block/fault_engine.h"

#include <sys/epoll.h>

#include <charconv>

namespace kindling::block {
namespace {

constexpr uint64_t kSector = 512;

uint64_t total_bytes(std::span<const iovec> iov) {
  uint64_t n = 0;
  for (const iovec& v : iov) n += v.iov_len;
  return n;
}

// Reads a decimal number at the front of `s` and drops it; false when there is none.
bool take_number(std::string_view& s, uint64_t& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  if (ec != std::errc() || end == s.data()) return false;
  s.remove_prefix(static_cast<size_t>(end - s.data()));
  return true;
}

Unexpected<BlockErr> bad_rule(std::string_view spec, const char* why) {
  return fail(BlockError::kBadFaultRule, 0, "fault rule \"" + std::string(spec) + "\": " + why);
}

}  // namespace

Result<FaultRule, BlockErr> parse_fault_rule(std::string_view spec) {
  const std::string_view whole = spec;
  FaultRule r;
  size_t kind_end = spec.find_first_of(":@/");
  std::string_view kind = spec.substr(0, kind_end);
  if (kind == "eio") {
    r.kind = FaultKind::kEio;
  } else if (kind == "enospc") {
    r.kind = FaultKind::kEnospc;
  } else if (kind == "short") {
    r.kind = FaultKind::kShort;
  } else {
    return bad_rule(whole, "the kind must be eio, enospc or short");
  }
  spec.remove_prefix(kind.size());
  if (!spec.empty() && spec.front() == ':') {
    spec.remove_prefix(1);
    r.ops = 0;
    while (!spec.empty() && spec.front() != '@' && spec.front() != '/') {
      switch (spec.front()) {
        case 'r':
          r.ops |= kFaultRead;
          break;
        case 'w':
          r.ops |= kFaultWrite;
          break;
        case 'f':
          r.ops |= kFaultFlush;
          break;
        default:
          return bad_rule(whole, "operations are letters of r, w, f");
      }
      spec.remove_prefix(1);
    }
    if (r.ops == 0) return bad_rule(whole, "no operation after ':'");
  }
  if (!spec.empty() && spec.front() == '@') {
    spec.remove_prefix(1);
    if (!take_number(spec, r.first_sector) || spec.empty() || spec.front() != '+') {
      return bad_rule(whole, "the range is @FIRST+COUNT (sectors)");
    }
    spec.remove_prefix(1);
    if (!take_number(spec, r.sectors) || r.sectors == 0) {
      return bad_rule(whole, "the range is @FIRST+COUNT with COUNT > 0");
    }
  }
  if (!spec.empty() && spec.front() == '/') {
    spec.remove_prefix(1);
    if (!take_number(spec, r.every) || r.every == 0) return bad_rule(whole, "/N needs N > 0");
  }
  if (!spec.empty()) return bad_rule(whole, "expected KIND[:OPS][@FIRST+COUNT][/N]");
  return r;
}

std::string to_string(const FaultRule& rule) {
  std::string s = rule.kind == FaultKind::kEio      ? "eio"
                  : rule.kind == FaultKind::kEnospc ? "enospc"
                                                    : "short";
  s += ':';
  if (rule.ops & kFaultRead) s += 'r';
  if (rule.ops & kFaultWrite) s += 'w';
  if (rule.ops & kFaultFlush) s += 'f';
  if (rule.first_sector != 0 || rule.sectors != UINT64_MAX) {
    s += '@' + std::to_string(rule.first_sector) + '+' + std::to_string(rule.sectors);
  }
  if (rule.every != 1) s += '/' + std::to_string(rule.every);
  return s;
}

Result<std::unique_ptr<FaultEngine>, BlockErr> FaultEngine::create(std::unique_ptr<IoEngine> inner,
                                                                   std::vector<FaultRule> rules) {
  if (!inner) return fail(BlockError::kEngineSetup, EINVAL, "fault engine without an engine");
  auto ready = EventFd::create();
  if (!ready) return fail(BlockError::kEngineSetup, ready.error().sys_errno, "fault eventfd");
  UniqueFd ep(epoll_create1(EPOLL_CLOEXEC));
  if (!ep) return fail(BlockError::kEngineSetup, errno, "fault engine epoll");
  for (int fd : {inner->notifier_fd(), ready->fd()}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
      return fail(BlockError::kEngineSetup, errno, "fault engine epoll_ctl");
    }
  }
  return std::unique_ptr<FaultEngine>(
      new FaultEngine(std::move(inner), std::move(rules), std::move(*ready), std::move(ep)));
}

FaultEngine::FaultEngine(std::unique_ptr<IoEngine> inner, std::vector<FaultRule> rules,
                         EventFd ready, UniqueFd epoll)
    : inner_(std::move(inner)),
      rules_(std::move(rules)),
      matches_(rules_.size(), 0),
      ready_(std::move(ready)),
      epoll_(std::move(epoll)) {}

Result<void, BlockErr> FaultEngine::read(uint64_t offset, std::span<const iovec> iov,
                                         uint64_t cookie) {
  return submit(Op::kRead, offset, iov, cookie);
}

Result<void, BlockErr> FaultEngine::write(uint64_t offset, std::span<const iovec> iov,
                                          uint64_t cookie) {
  return submit(Op::kWrite, offset, iov, cookie);
}

Result<void, BlockErr> FaultEngine::flush(uint64_t cookie) {
  return submit(Op::kFlush, 0, {}, cookie);
}

const FaultRule* FaultEngine::match(Op op, uint64_t offset, std::span<const iovec> iov) {
  const uint8_t bit = op == Op::kRead ? kFaultRead : op == Op::kWrite ? kFaultWrite : kFaultFlush;
  const uint64_t first = offset / kSector;
  const uint64_t count = (total_bytes(iov) + kSector - 1) / kSector;
  for (size_t i = 0; i < rules_.size(); ++i) {
    const FaultRule& r = rules_[i];
    if ((r.ops & bit) == 0) continue;
    if (op != Op::kFlush) {
      // Overlap of [first, first + count) and [r.first_sector, r.first_sector + r.sectors),
      // written without sums that could wrap.
      if (first < r.first_sector && r.first_sector - first >= count) continue;
      if (first >= r.first_sector && first - r.first_sector >= r.sectors) continue;
    }
    if (++matches_[i] % r.every == 0) return &r;
  }
  return nullptr;
}

Result<void, BlockErr> FaultEngine::submit(Op op, uint64_t offset, std::span<const iovec> iov,
                                           uint64_t cookie) {
  if (in_flight() >= max_in_flight()) return fail(BlockError::kQueueFull);
  const FaultRule* rule = match(op, offset, iov);
  if (rule == nullptr) return forward(op, offset, iov, cookie);
  ++faults_;
  switch (rule->kind) {
    case FaultKind::kEio:
      return inject(cookie, -EIO);
    case FaultKind::kEnospc:
      return inject(cookie, -ENOSPC);
    case FaultKind::kShort:
      break;
  }
  // A flush has nothing to cut: it fails (a completed flush must mean a sync happened).
  if (op == Op::kFlush) return inject(cookie, -EIO);
  // Half of the request, in whole sectors, reaches the image; the inner engine's result then
  // tells the truth about it. Nothing left (a one-sector request): a zero-byte transfer.
  uint64_t keep = total_bytes(iov) / 2 / kSector * kSector;
  if (keep == 0) return inject(cookie, 0);
  std::vector<iovec> cut;
  for (const iovec& v : iov) {
    if (keep == 0) break;
    const uint64_t n = std::min<uint64_t>(v.iov_len, keep);
    cut.push_back({v.iov_base, n});
    keep -= n;
  }
  auto& stored = cut_[cookie] = std::move(cut);
  auto r = forward(op, offset, stored, cookie);
  if (!r) cut_.erase(cookie);
  return r;
}

Result<void, BlockErr> FaultEngine::forward(Op op, uint64_t offset, std::span<const iovec> iov,
                                            uint64_t cookie) {
  switch (op) {
    case Op::kRead:
      return inner_->read(offset, iov, cookie);
    case Op::kWrite:
      return inner_->write(offset, iov, cookie);
    case Op::kFlush:
      return inner_->flush(cookie);
  }
  return fail(BlockError::kSubmit, EINVAL, "fault engine: unknown operation");
}

Result<void, BlockErr> FaultEngine::inject(uint64_t cookie, int64_t result) {
  injected_.push_back({cookie, result});
  (void)ready_.signal();
  return {};
}

size_t FaultEngine::reap(std::span<Completion> out) {
  size_t n = inner_->reap(out);
  for (size_t i = 0; i < n && !cut_.empty(); ++i) cut_.erase(out[i].cookie);
  (void)ready_.consume();
  while (n < out.size() && !injected_.empty()) {
    out[n++] = injected_.front();
    injected_.pop_front();
  }
  if (!injected_.empty()) (void)ready_.signal();
  return n;
}

EngineStats FaultEngine::stats() const {
  EngineStats s = inner_->stats();
  s.faults_injected += faults_;
  return s;
}

}  // namespace kindling::block
