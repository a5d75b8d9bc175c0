#include "stream/stats.h"

#include <sys/resource.h>

#include <fstream>
#include <string>

namespace sluice {

uint64_t process_disk_read_bytes() {
    std::ifstream f("/proc/self/io");
    std::string key;
    uint64_t v;
    while (f >> key >> v)
        if (key == "read_bytes:") return v;
    return 0;
}

uint64_t process_peak_rss_bytes() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_maxrss * 1024;
}

uint64_t process_rss_bytes() {
    std::ifstream f("/proc/self/statm");
    uint64_t size = 0, rss = 0;
    f >> size >> rss;
    return rss * 4096;
}

}  // namespace sluice
