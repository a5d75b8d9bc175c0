#include "backend/cpu/thread_pool.h"

#include <algorithm>

#if defined(__x86_64__)
#include <immintrin.h>
#define SLUICE_PAUSE() _mm_pause()
#else
#define SLUICE_PAUSE() std::this_thread::yield()
#endif

namespace sluice {
namespace {
constexpr int kSpinIters = 1 << 15;  // ~0.5 ms of pause instructions before sleeping
}

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
    for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
}

void ThreadPool::work(int id) {
    for (;;) {
        const int64_t t = next_.fetch_add(1, std::memory_order_relaxed);
        if (t >= n_tasks_) break;
        (*job_)(t, id);
    }
}

void ThreadPool::worker(int id) {
    uint64_t seen = 0;
    for (;;) {
        int spins = 0;
        while (generation_.load() == seen && !stop_.load()) {
            if (++spins < kSpinIters) {
                SLUICE_PAUSE();
                if ((spins & 1023) == 0)
                    std::this_thread::yield();  // let a waiting thread in on a busy machine
                continue;
            }
            std::unique_lock<std::mutex> lk(mu_);
            ++sleeping_;
            cv_.wait(lk, [&] { return generation_.load() != seen || stop_.load(); });
            --sleeping_;
        }
        if (stop_.load()) return;
        seen = generation_.load();
        work(id);
        busy_.fetch_sub(1);
    }
}

void ThreadPool::run(int64_t n_tasks, const std::function<void(int64_t, int)>& fn) {
    if (n_tasks <= 0) return;
    if (n_threads_ == 1 || n_tasks == 1) {
        for (int64_t t = 0; t < n_tasks; ++t) fn(t, 0);
        return;
    }
    job_ = &fn;
    n_tasks_ = n_tasks;
    next_.store(0);
    busy_.store(n_threads_ - 1);
    generation_.fetch_add(1);  // publishes job_/n_tasks_ (seq_cst)
    if (sleeping_.load() > 0) {
        std::lock_guard<std::mutex> lk(mu_);
        cv_.notify_all();
    }
    work(0);
    // Spin while the workers are likely running; yield once they are not (an oversubscribed
    // machine would otherwise burn our timeslice waiting for a descheduled worker).
    for (int spins = 0; busy_.load() > 0; ++spins) {
        if (spins < kSpinIters)
            SLUICE_PAUSE();
        else
            std::this_thread::yield();
    }
    job_ = nullptr;
}

void ThreadPool::wait_until(const std::function<bool()>& ready) {
    for (int spins = 0; !ready(); ++spins) {
        if (spins < kSpinIters)
            SLUICE_PAUSE();
        else
            std::this_thread::yield();
    }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t, int64_t, int)>& fn) {
    if (n <= 0) return;
    grain = std::max<int64_t>(1, grain);
    const int64_t max_chunks = (n + grain - 1) / grain;
    const int64_t n_chunks = std::min<int64_t>(max_chunks, (int64_t)n_threads_ * 4);
    const int64_t per = (n + n_chunks - 1) / n_chunks;
    run(n_chunks, [&](int64_t c, int th) {
        const int64_t b = c * per, e = std::min(n, b + per);
        if (b < e) fn(b, e, th);
    });
}

}  // namespace sluice
