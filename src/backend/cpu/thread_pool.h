#pragma once
// Persistent workers; the calling thread takes part. No threads are created per call.
// Workers spin briefly on a generation counter before sleeping, because decode issues
// hundreds of small parallel regions per token and a condvar round trip costs tens of µs.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sluice {

class ThreadPool {
  public:
    explicit ThreadPool(int n_threads);  // n_threads >= 1, including the caller
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }
    // Runs fn(task, thread) for task in [0, n_tasks); returns when all are done.
    // Tasks are claimed dynamically, so uneven tasks balance.
    void run(int64_t n_tasks, const std::function<void(int64_t task, int thread)>& fn);
    // Splits [0, n) into chunks of at least `grain` and runs fn(begin, end, thread).
    void parallel_for(int64_t n, int64_t grain,
                      const std::function<void(int64_t, int64_t, int)>& fn);
    // For a task that waits on another task of the same region: spins politely, and yields
    // the core after a while (the awaited thread may have been descheduled).
    static void wait_until(const std::function<bool()>& ready);

  private:
    void worker(int id);
    void work(int id);

    int n_threads_;
    std::vector<std::thread> threads_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::atomic<uint64_t> generation_{0};
    std::atomic<int> busy_{0};  // workers still inside the current job
    std::atomic<int> sleeping_{0};
    std::atomic<bool> stop_{false};
    const std::function<void(int64_t, int)>* job_ = nullptr;
    int64_t n_tasks_ = 0;
    std::atomic<int64_t> next_{0};
};

}  // namespace sluice
