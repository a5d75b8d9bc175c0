#include "formats/json_file.h"

#include "core/error.h"
#include "io/mapped_file.h"

namespace sluice {

nlohmann::json read_json_file(const std::string& path) {
    try {
        return nlohmann::json::parse(read_text_file(path));
    } catch (const nlohmann::json::exception& e) {
        fail(path + ": invalid JSON: " + e.what());
    }
}

}  // namespace sluice
