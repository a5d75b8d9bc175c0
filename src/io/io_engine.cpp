#include "io/io_engine.h"

#include <liburing.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "core/error.h"

namespace sluice {
namespace {

// Reads may complete short (e.g. buffered reads across a page-cache boundary); both
// engines finish a request before reporting it.
int64_t pread_full(const ReadRequest& r) {
    uint64_t done = 0;
    while (done < r.length) {
        const ssize_t n =
            ::pread(r.fd, (uint8_t*)r.dst + done, r.length - done, (off_t)(r.offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        if (n == 0) return (int64_t)done;
        done += (uint64_t)n;
    }
    return (int64_t)done;
}

class ThreadEngine final : public IoEngine {
  public:
    explicit ThreadEngine(unsigned n_threads) {
        for (unsigned i = 0; i < n_threads; ++i) threads_.emplace_back([this] { loop(); });
    }
    ~ThreadEngine() override {
        {
            std::lock_guard<std::mutex> lk(mu_);
            stop_ = true;
        }
        cv_work_.notify_all();
        for (auto& t : threads_) t.join();
    }
    void submit(const ReadRequest* reqs, size_t n) override {
        {
            std::lock_guard<std::mutex> lk(mu_);
            for (size_t i = 0; i < n; ++i) queue_.push_back(reqs[i]);
            in_flight_ += n;
        }
        cv_work_.notify_all();
    }
    size_t reap(std::vector<ReadCompletion>& out, bool block) override {
        std::unique_lock<std::mutex> lk(mu_);
        if (block) cv_done_.wait(lk, [&] { return !done_.empty() || in_flight_ == 0; });
        const size_t n = done_.size();
        for (auto& c : done_) out.push_back(c);
        done_.clear();
        in_flight_ -= n;
        return n;
    }
    size_t in_flight() const override {
        std::lock_guard<std::mutex> lk(mu_);
        return in_flight_;
    }
    const char* name() const override { return "threads"; }

  private:
    void loop() {
        for (;;) {
            ReadRequest r;
            {
                std::unique_lock<std::mutex> lk(mu_);
                cv_work_.wait(lk, [&] { return stop_ || !queue_.empty(); });
                if (stop_) return;
                r = queue_.front();
                queue_.pop_front();
            }
            const int64_t res = pread_full(r);
            {
                std::lock_guard<std::mutex> lk(mu_);
                done_.push_back({r.tag, res});
            }
            cv_done_.notify_all();
        }
    }
    mutable std::mutex mu_;
    std::condition_variable cv_work_, cv_done_;
    std::deque<ReadRequest> queue_;
    std::vector<ReadCompletion> done_;
    size_t in_flight_ = 0;
    bool stop_ = false;
    std::vector<std::thread> threads_;
};

class UringEngine final : public IoEngine {
  public:
    explicit UringEngine(unsigned depth) : depth_(depth) {
        const int rc = io_uring_queue_init(depth, &ring_, 0);
        if (rc < 0) throw Error(std::string("io_uring_queue_init: ") + std::strerror(-rc));
    }
    ~UringEngine() override {
        std::vector<ReadCompletion> sink;
        while (in_flight_ > 0) reap(sink, true);
        io_uring_queue_exit(&ring_);
    }
    void submit(const ReadRequest* reqs, size_t n) override {
        for (size_t i = 0; i < n; ++i) pending_.push_back(reqs[i]);
        in_flight_ += n;  // queued requests count until they complete
        push();
    }
    size_t reap(std::vector<ReadCompletion>& out, bool block) override {
        size_t got = 0;
        for (;;) {
            io_uring_cqe* cqe = nullptr;
            int rc = block && got == 0 && in_ring_ > 0 ? io_uring_wait_cqe(&ring_, &cqe)
                                                       : io_uring_peek_cqe(&ring_, &cqe);
            if (rc == -EINTR) continue;
            if (rc < 0 || !cqe) break;
            Inflight* f = (Inflight*)io_uring_cqe_get_data(cqe);
            const int res = cqe->res;
            io_uring_cqe_seen(&ring_, cqe);
            --in_ring_;
            if (res > 0 && (uint64_t)res < f->req.length - f->done) {  // short read: continue it
                f->done += (uint64_t)res;
                resubmit(f);
            } else {
                const int64_t total = res < 0 ? res : (int64_t)(f->done + (uint64_t)res);
                out.push_back({f->req.tag, total});
                delete f;
                --in_flight_;
                ++got;
            }
            push();
        }
        return got;
    }
    size_t in_flight() const override { return in_flight_; }
    const char* name() const override { return "io_uring"; }

  private:
    struct Inflight {
        ReadRequest req;
        uint64_t done = 0;
    };
    void resubmit(Inflight* f) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
        io_uring_prep_read(sqe, f->req.fd, (uint8_t*)f->req.dst + f->done,
                           (unsigned)(f->req.length - f->done), f->req.offset + f->done);
        io_uring_sqe_set_data(sqe, f);
        ++in_ring_;
        io_uring_submit(&ring_);
    }
    // Moves queued requests into the ring while there is room.
    void push() {
        bool any = false;
        while (!pending_.empty() && in_ring_ < depth_) {
            io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
            if (!sqe) break;
            Inflight* f = new Inflight{pending_.front()};
            pending_.pop_front();
            io_uring_prep_read(sqe, f->req.fd, f->req.dst, (unsigned)f->req.length, f->req.offset);
            io_uring_sqe_set_data(sqe, f);
            ++in_ring_;
            any = true;
        }
        if (any) io_uring_submit(&ring_);
    }
    io_uring ring_{};
    unsigned depth_;
    unsigned in_ring_ = 0;
    size_t in_flight_ = 0;
    std::deque<ReadRequest> pending_;
};

}  // namespace

std::unique_ptr<IoEngine> make_io_engine(const std::string& kind, unsigned depth) {
    depth = std::max(1u, depth);
    if (kind == "threads") return std::make_unique<ThreadEngine>(std::min(depth, 16u));
    if (kind == "uring" || kind == "auto") {
        try {
            return std::make_unique<UringEngine>(depth);
        } catch (const Error& e) {
            if (kind == "uring") fail(std::string("io_uring unavailable: ") + e.what());
        }
        return std::make_unique<ThreadEngine>(std::min(depth, 16u));
    }
    fail("unknown I/O engine '" + kind + "' (use auto, uring or threads)");
}

}  // namespace sluice
