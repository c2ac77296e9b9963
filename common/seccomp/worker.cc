#include "common/seccomp/worker.h"

namespace kindling::seccomp {

Result<std::unique_ptr<Worker>, SeccompErr> Worker::start(ThreadKind kind, std::string name,
                                                          bool confine) {
  auto w = launch(kind, std::move(name), confine);
  if (!w) return w;
  if (auto ok = (*w)->confined(); !ok) {
    return Unexpected{ok.error()};  // the destructor joins the thread, which has returned
  }
  return w;
}

Result<std::unique_ptr<Worker>, SeccompErr> Worker::launch(ThreadKind kind, std::string name,
                                                           bool confine) {
  std::unique_ptr<Worker> w(new Worker());
  w->name_ = std::move(name);
  try {
    w->thread_ = std::thread([p = w.get(), kind, confine] { p->loop(kind, confine); });
  } catch (const std::system_error& e) {
    return fail(SeccompError::kLoad, e.code().value(), "thread '" + w->name_ + "'");
  }
  return w;
}

Result<void, SeccompErr> Worker::confined() const {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return ready_; });
  if (error_) return Unexpected{*error_};
  return {};
}

Worker::~Worker() {
  wait();
  {
    std::lock_guard lock(mu_);
    exit_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Worker::loop(ThreadKind kind, bool confine) {
  std::optional<SeccompErr> err;
  if (confine) {
    if (auto ok = install(kind, name_); !ok) err = ok.error();
  }
  std::unique_lock lock(mu_);
  ready_ = true;
  error_ = err;
  cv_.notify_all();
  if (err) return;
  while (true) {
    cv_.wait(lock, [&] { return exit_ || (has_job_ && !job_done_); });
    if (exit_) return;
    std::function<void()> job = std::move(job_);
    lock.unlock();
    job();
    lock.lock();
    job_done_ = true;
    cv_.notify_all();
  }
}

bool Worker::run(std::function<void()> job) {
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return ready_; });
    if (has_job_ || error_) return false;
    job_ = std::move(job);
    has_job_ = true;
    job_done_ = false;
  }
  cv_.notify_all();
  return true;
}

void Worker::wait() {
  std::unique_lock lock(mu_);
  if (!has_job_) return;
  cv_.wait(lock, [&] { return job_done_; });
  has_job_ = false;
  job_done_ = false;
}

bool Worker::has_job() const {
  std::lock_guard lock(mu_);
  return has_job_;
}

}  // namespace kindling::seccomp
