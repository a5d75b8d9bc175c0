#pragma once
// The I/O seam: batches of reads of exact byte ranges into caller buffers, completed in any
// order. Implementations: io_uring (deep queue, one thread) and a pread thread pool.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sluice {

struct ReadRequest {
    int fd;
    uint64_t offset;
    uint64_t length;
    void* dst;
    uint64_t tag;  // returned with the completion
};

struct ReadCompletion {
    uint64_t tag;
    int64_t result;  // bytes read, or -errno
};

class IoEngine {
  public:
    virtual ~IoEngine() = default;
    virtual void submit(const ReadRequest* reqs, size_t n) = 0;
    // Appends finished reads to `out`. block: wait until at least one finishes (if any are
    // in flight). Returns the number appended.
    virtual size_t reap(std::vector<ReadCompletion>& out, bool block) = 0;
    virtual size_t in_flight() const = 0;
    virtual const char* name() const = 0;
};

// kind: "uring", "threads" or "auto" (io_uring if the kernel allows it).
std::unique_ptr<IoEngine> make_io_engine(const std::string& kind, unsigned depth);

}  // namespace sluice
