#pragma once
// JSON side files of model directories (config.json, tokenizer.json, index files).
#include <nlohmann/json.hpp>
#include <string>

namespace sluice {

// Parses the file; throws Error naming the path on I/O or syntax errors.
nlohmann::json read_json_file(const std::string& path);

}  // namespace sluice
