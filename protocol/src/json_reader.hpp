// JsonReader: reads one JSON object field by field, checking types and limits, and remembers the
// first problem as an errc plus a sentence naming the field. Internal to kaban::protocol.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "kaban/protocol/error.hpp"
#include "kaban/result.hpp"

namespace kaban::protocol::detail {

/// Whether a parser refuses fields it does not know: requests do (a client bug or an attack
/// should be loud), responses do not (a newer server may add fields).
enum class Unknown { refuse, ignore };

/// Parses `text` (at most `max_size` bytes) into `out`. errc::too_large or errc::malformed.
Result<void> parse_json(std::string_view text, std::size_t max_size, nlohmann::json& out,
                        std::string* why);

class JsonReader {
 public:
  /// `where` names the object in messages ("lesson 3", "request").
  JsonReader(const nlohmann::json& object, std::string where, Unknown unknown);

  /// Each getter returns a default value on a problem and records the first one.
  std::string text(std::string_view key, std::size_t max_bytes, bool required = true);
  std::int64_t integer(std::string_view key, std::int64_t min, std::int64_t max,
                       bool required = true);
  bool boolean(std::string_view key, bool required = true);
  /// An array of at most max_items, or nullptr (problem recorded if required).
  const nlohmann::json* array(std::string_view key, std::size_t max_items, bool required = true);
  /// A nested object, or nullptr (problem recorded if required).
  const nlohmann::json* object(std::string_view key, bool required = true);

  /// Records a problem found by the caller (e.g. a value of the right type but a bad form).
  void fail(errc code, std::string message);
  bool ok() const { return !code_; }
  const std::string& where() const { return where_; }

  /// The first problem, or an unknown field if the reader refuses those. Fills `why`.
  Result<void> finish(std::string* why);

 private:
  const nlohmann::json* field(std::string_view key, bool required);

  const nlohmann::json& object_;
  std::string where_;
  Unknown unknown_;
  std::set<std::string, std::less<>> seen_;
  std::error_code code_;
  std::string message_;
};

}  // namespace kaban::protocol::detail
