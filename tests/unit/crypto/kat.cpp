#include "kat.hpp"

#include <fstream>
#include <stdexcept>
#include <string>

namespace kaban::crypto::test {

nlohmann::json load_vectors(std::string_view file) {
  const std::string path = std::string(KABAN_TEST_DATA_DIR) + "/kat/" + std::string(file);
  std::ifstream in(path);
  if (!in)
    throw std::runtime_error("cannot open " + path);
  auto document = nlohmann::json::parse(in);
  auto vectors = document.at("vectors");
  if (!vectors.is_array() || vectors.empty())
    throw std::runtime_error("no vectors in " + path);
  return vectors;
}

Bytes hex(std::string_view text) {
  auto bytes = from_hex(text);
  if (!bytes)
    throw std::invalid_argument("bad hex in a vector file");
  return std::move(bytes).value();
}

Bytes ascii(std::string_view text) {
  return Bytes(text.begin(), text.end());
}

}  // namespace kaban::crypto::test
