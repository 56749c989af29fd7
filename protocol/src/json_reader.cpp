#include "json_reader.hpp"

#include <utility>

namespace kaban::protocol::detail {

Result<void> parse_json(std::string_view text, std::size_t max_size, nlohmann::json& out,
                        std::string* why) {
  if (text.size() > max_size) {
    if (why)
      *why = "the message is " + std::to_string(text.size()) + " bytes; the limit is " +
             std::to_string(max_size);
    return errc::too_large;
  }
  out = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (out.is_discarded() || !out.is_object()) {
    if (why)
      *why = "the body is not a JSON object";
    return errc::malformed;
  }
  return kaban::ok();
}

JsonReader::JsonReader(const nlohmann::json& object, std::string where, Unknown unknown)
    : object_(object), where_(std::move(where)), unknown_(unknown) {
  if (!object_.is_object())
    fail(errc::malformed, where_ + " is not a JSON object");
}

void JsonReader::fail(errc code, std::string message) {
  if (code_)
    return;
  code_ = code;
  message_ = std::move(message);
}

const nlohmann::json* JsonReader::field(std::string_view key, bool required) {
  seen_.emplace(key);
  if (!object_.is_object())
    return nullptr;
  auto it = object_.find(key);
  if (it == object_.end() || it->is_null()) {
    if (required)
      fail(errc::missing_field, where_ + ": \"" + std::string(key) + "\" is missing");
    return nullptr;
  }
  return &*it;
}

std::string JsonReader::text(std::string_view key, std::size_t max_bytes, bool required) {
  const nlohmann::json* v = field(key, required);
  if (!v)
    return {};
  if (!v->is_string()) {
    fail(errc::malformed, where_ + ": \"" + std::string(key) + "\" must be a string");
    return {};
  }
  const auto& s = v->get_ref<const std::string&>();
  if (s.size() > max_bytes) {
    fail(errc::too_large, where_ + ": \"" + std::string(key) + "\" is longer than " +
                              std::to_string(max_bytes) + " bytes");
    return {};
  }
  return s;
}

std::int64_t JsonReader::integer(std::string_view key, std::int64_t min, std::int64_t max,
                                 bool required) {
  const nlohmann::json* v = field(key, required);
  if (!v)
    return 0;
  if (!v->is_number_integer()) {
    fail(errc::malformed, where_ + ": \"" + std::string(key) + "\" must be an integer");
    return 0;
  }
  // Unsigned values above int64 arrive as number_unsigned; get<int64_t> would wrap them.
  if (v->is_number_unsigned() && v->get<std::uint64_t>() > static_cast<std::uint64_t>(max)) {
    fail(errc::invalid_value, where_ + ": \"" + std::string(key) + "\" is out of range");
    return 0;
  }
  const auto n = v->get<std::int64_t>();
  if (n < min || n > max) {
    fail(errc::invalid_value, where_ + ": \"" + std::string(key) + "\" must be between " +
                                  std::to_string(min) + " and " + std::to_string(max));
    return 0;
  }
  return n;
}

bool JsonReader::boolean(std::string_view key, bool required) {
  const nlohmann::json* v = field(key, required);
  if (!v)
    return false;
  if (!v->is_boolean()) {
    fail(errc::malformed, where_ + ": \"" + std::string(key) + "\" must be true or false");
    return false;
  }
  return v->get<bool>();
}

const nlohmann::json* JsonReader::array(std::string_view key, std::size_t max_items,
                                        bool required) {
  const nlohmann::json* v = field(key, required);
  if (!v)
    return nullptr;
  if (!v->is_array()) {
    fail(errc::malformed, where_ + ": \"" + std::string(key) + "\" must be a list");
    return nullptr;
  }
  if (v->size() > max_items) {
    fail(errc::too_large, where_ + ": \"" + std::string(key) + "\" has more than " +
                              std::to_string(max_items) + " entries");
    return nullptr;
  }
  return v;
}

const nlohmann::json* JsonReader::object(std::string_view key, bool required) {
  const nlohmann::json* v = field(key, required);
  if (!v)
    return nullptr;
  if (!v->is_object()) {
    fail(errc::malformed, where_ + ": \"" + std::string(key) + "\" must be an object");
    return nullptr;
  }
  return v;
}

Result<void> JsonReader::finish(std::string* why) {
  if (!code_ && unknown_ == Unknown::refuse && object_.is_object()) {
    for (const auto& item : object_.items()) {
      if (!seen_.contains(item.key())) {
        fail(errc::unknown_field, where_ + ": unknown field \"" + item.key() + "\"");
        break;
      }
    }
  }
  if (!code_)
    return kaban::ok();
  if (why)
    *why = message_;
  return code_;
}

}  // namespace kaban::protocol::detail
