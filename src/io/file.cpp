#include "io/file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <thread>
#include <vector>

#include "core/error.h"

namespace sluice {

File::File(const std::string& path, bool direct) : direct_(direct), path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0));
    if (fd_ < 0 && direct && errno == EINVAL)
        fail(path + ": the file system does not support O_DIRECT (use --io page-cache)");
    if (fd_ < 0) fail(path + ": cannot open: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0) fail(path + ": fstat failed: " + std::strerror(errno));
    size_ = (uint64_t)st.st_size;
}

File::~File() {
    if (fd_ >= 0) ::close(fd_);
}

File& File::operator=(File&& o) noexcept {
    if (this != &o) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = o.fd_;
        direct_ = o.direct_;
        size_ = o.size_;
        path_ = std::move(o.path_);
        o.fd_ = -1;
    }
    return *this;
}

void File::pread_all(void* dst, size_t n, uint64_t off) const {
    uint8_t* p = (uint8_t*)dst;
    while (n > 0) {
        const ssize_t r = ::pread(fd_, p, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0)
            fail(path_ + ": read at " + std::to_string(off) + " failed: " + std::strerror(errno));
        if (r == 0) fail(path_ + ": unexpected end of file at " + std::to_string(off));
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
}

void File::drop_cache() const {
    ::posix_fadvise(fd_, 0, 0, POSIX_FADV_DONTNEED);
}

unsigned File::device_queue_size() const {
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || major(st.st_dev) == 0) return 0;  // 0: overlay, tmpfs, ...
    const std::string dev = "/sys/dev/block/" + std::to_string(major(st.st_dev)) + ":" +
                            std::to_string(minor(st.st_dev));
    // A partition has no queue of its own; its disk's is one level up.
    for (const char* q : {"/queue/nr_requests", "/../queue/nr_requests"}) {
        std::ifstream f(dev + q);
        unsigned n = 0;
        if (f >> n && n > 0) return n;
    }
    return 0;
}

BlockDeviceStat block_device_stat(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || major(st.st_dev) == 0) return {};
    std::ifstream f("/sys/dev/block/" + std::to_string(major(st.st_dev)) + ":" +
                    std::to_string(minor(st.st_dev)) + "/stat");
    // reads, merges, sectors read, read ms, writes, merges, sectors written, write ms,
    // in flight, io ms, ... (Documentation/block/stat.rst; sectors are 512 bytes).
    uint64_t v[10] = {};
    for (uint64_t& x : v)
        if (!(f >> x)) return {};
    return {true, v[2] * 512, v[9]};
}

AlignedBuffer::AlignedBuffer(size_t bytes, size_t align) : n_(bytes) {
    if (bytes == 0) return;
    void* p = nullptr;
    const size_t rounded = (bytes + align - 1) / align * align;
    if (posix_memalign(&p, align, rounded) != 0) throw std::bad_alloc();
    p_ = (uint8_t*)p;
    // Transparent huge pages for large buffers (THP is often in "madvise" mode): weight
    // streams cross fewer TLB entries. No rounding to 2 MiB: the budget counts every byte.
    if (rounded >= (2u << 20)) ::madvise(p, rounded, MADV_HUGEPAGE);
}

void AlignedBuffer::prefault() {
    constexpr size_t kPage = 4096;
    const size_t nt = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 4);
    std::vector<std::thread> ts;
    for (size_t t = 0; t < nt; ++t)
        ts.emplace_back([this, t, nt] {
            for (size_t i = n_ * t / nt / kPage * kPage; i < n_ * (t + 1) / nt; i += kPage)
                p_[i] = 0;
        });
    for (auto& th : ts) th.join();
}

AlignedBuffer::~AlignedBuffer() {
    std::free(p_);
}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& o) noexcept {
    if (this != &o) {
        std::free(p_);
        p_ = o.p_;
        n_ = o.n_;
        o.p_ = nullptr;
        o.n_ = 0;
    }
    return *this;
}

}  // namespace sluice
