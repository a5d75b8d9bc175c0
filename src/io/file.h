#pragma once
// File handles and aligned buffers for explicit reads (experts arrive by reads into known
// buffers, not by page faults).
#include <cstddef>
#include <cstdint>
#include <string>

namespace sluice {

constexpr size_t kDirectAlign = 4096;  // O_DIRECT offset/length/address alignment

// The 4 KiB-aligned range covering [off, off + n), as O_DIRECT reads need it; the data
// starts `skip` bytes into what is read.
struct DirectSpan {
    uint64_t start, len, skip;
};
inline DirectSpan direct_span(uint64_t off, uint64_t n) {
    const uint64_t s = off / kDirectAlign * kDirectAlign;
    const uint64_t e = (off + n + kDirectAlign - 1) / kDirectAlign * kDirectAlign;
    return {s, e - s, off - s};
}

class File {
  public:
    File() = default;
    File(const std::string& path, bool direct);  // throws Error naming the path
    ~File();
    File(File&& o) noexcept
        : fd_(o.fd_), direct_(o.direct_), size_(o.size_), path_(std::move(o.path_)) {
        o.fd_ = -1;
    }
    File& operator=(File&& o) noexcept;
    File(const File&) = delete;
    File& operator=(const File&) = delete;

    int fd() const { return fd_; }
    bool direct() const { return direct_; }
    uint64_t size() const { return size_; }
    const std::string& path() const { return path_; }
    // Reads exactly n bytes at off (retrying short reads); throws Error on failure or EOF.
    void pread_all(void* dst, size_t n, uint64_t off) const;
    // Tells the kernel these cached pages will not be needed again (after a one-time copy).
    void drop_cache() const;
    // The request queue size (nr_requests) of the block device holding the file; 0 if unknown.
    unsigned device_queue_size() const;

  private:
    int fd_ = -1;
    bool direct_ = false;
    uint64_t size_ = 0;
    std::string path_;
};

class AlignedBuffer {
  public:
    AlignedBuffer() = default;
    AlignedBuffer(size_t bytes, size_t align = kDirectAlign);
    ~AlignedBuffer();
    AlignedBuffer(AlignedBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
    AlignedBuffer& operator=(AlignedBuffer&& o) noexcept;
    AlignedBuffer(const AlignedBuffer&) = delete;
    AlignedBuffer& operator=(const AlignedBuffer&) = delete;

    uint8_t* data() const { return p_; }
    size_t size() const { return n_; }
    // Touches every page now. A first touch costs a fault and zeroing (on the dev VM, with
    // host-side backing, 0.2 GB/s: slower than the disk), which must not land in the middle
    // of a read stream.
    void prefault();

  private:
    uint8_t* p_ = nullptr;
    size_t n_ = 0;
};

// Counters of the block device (or partition) holding `path`, from /sys/dev/block/M:m/stat:
// bytes read and milliseconds during which it had I/O in flight (iostat's %util), for every
// process using it. ok = false where there is no such device (tmpfs, overlay, ...).
struct BlockDeviceStat {
    bool ok = false;
    uint64_t bytes_read = 0;
    uint64_t busy_ms = 0;
};
BlockDeviceStat block_device_stat(const std::string& path);

}  // namespace sluice
