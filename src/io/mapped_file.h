#pragma once
// Read-only access to a file: whole-file mmap for parsers and resident weights.
// Streaming reads (pread/io_uring/O_DIRECT) live beside this, behind their own interface.
#include <cstddef>
#include <cstdint>
#include <string>

namespace sluice {

class MappedFile {
  public:
    explicit MappedFile(const std::string& path);  // throws Error naming the path
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    const std::string& path() const { return path_; }

  private:
    std::string path_;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
};

// Whole file as a string (small text/JSON files). Throws Error naming the path.
std::string read_text_file(const std::string& path);

}  // namespace sluice
