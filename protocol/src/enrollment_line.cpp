#include "kaban/protocol/enrollment_line.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>

#include "kaban/protocol/error.hpp"
#include "kaban/protocol/manifest.hpp"

namespace kaban::protocol {
namespace {

constexpr std::string_view kScheme = "kaban://";
constexpr std::size_t kCodeChars = 16;
constexpr std::size_t kCodeGroup = 4;
constexpr std::size_t kMaxHostSize = 253;
constexpr std::size_t kMaxLineSize = 1024;
constexpr std::string_view kCrockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
    s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
    s.remove_suffix(1);
  return s;
}

bool is_host_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.';
}

bool valid_host(std::string_view host) {
  if (host.empty() || host.size() > kMaxHostSize)
    return false;
  if (host.front() == '[')  // IPv6 literal, kept bracketed
    return host.size() > 2 && host.back() == ']' &&
           std::all_of(host.begin() + 1, host.end() - 1, [](char c) {
             return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
           });
  return std::all_of(host.begin(), host.end(), is_host_char) && host.front() != '-' &&
         host.front() != '.';
}

Result<void> fail(errc code, std::string message, std::string* why) {
  if (why)
    *why = std::move(message);
  return code;
}

}  // namespace

Result<std::string> normalize_enrollment_code(std::string_view code) {
  std::string chars;
  for (char c : code) {
    if (c == '-' || c == ' ')
      continue;
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (c == 'O')
      c = '0';
    else if (c == 'I' || c == 'L')
      c = '1';
    if (kCrockford.find(c) == std::string_view::npos)
      return errc::invalid_value;
    chars.push_back(c);
    if (chars.size() > kCodeChars)
      return errc::invalid_value;
  }
  if (chars.size() != kCodeChars)
    return errc::invalid_value;
  std::string out;
  for (std::size_t i = 0; i < chars.size(); ++i) {
    if (i && i % kCodeGroup == 0)
      out.push_back('-');
    out.push_back(chars[i]);
  }
  return out;
}

std::string EnrollmentLine::to_string() const {
  return std::string(kScheme) + host + ":" + std::to_string(port) + "?code=" + code +
         "&ca=" + ca_fingerprint;
}

Result<EnrollmentLine> EnrollmentLine::parse(std::string_view line, std::string* why) {
  line = trim(line);
  if (line.size() > kMaxLineSize) {
    KABAN_TRYV(fail(errc::too_large, "the enrollment line is too long", why));
  }
  if (line.substr(0, kScheme.size()) != kScheme) {
    KABAN_TRYV(fail(errc::malformed, "an enrollment line starts with kaban://", why));
  }
  line.remove_prefix(kScheme.size());
  const std::size_t q = line.find('?');
  if (q == std::string_view::npos) {
    KABAN_TRYV(fail(errc::missing_field, "the enrollment line has no code and fingerprint", why));
  }
  std::string_view authority = line.substr(0, q);
  std::string_view query = line.substr(q + 1);
  if (!authority.empty() && authority.back() == '/')
    authority.remove_suffix(1);

  EnrollmentLine out;
  const std::size_t colon = authority.rfind(':');
  if (colon == std::string_view::npos ||
      (authority.front() == '[' && authority[colon - 1] != ']')) {
    KABAN_TRYV(fail(errc::missing_field, "the enrollment line has no port after the host", why));
  }
  out.host = std::string(authority.substr(0, colon));
  if (!valid_host(out.host)) {
    KABAN_TRYV(
        fail(errc::invalid_value, "the server host in the enrollment line is not valid", why));
  }
  const std::string_view port_text = authority.substr(colon + 1);
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port == 0 ||
      port > 65535) {
    KABAN_TRYV(fail(errc::invalid_value, "the port in the enrollment line is not valid", why));
  }
  out.port = static_cast<std::uint16_t>(port);

  std::map<std::string_view, std::string_view> params;
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    const std::size_t eq = pair.find('=');
    if (eq != std::string_view::npos)
      params[pair.substr(0, eq)] = pair.substr(eq + 1);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
  }
  if (!params.contains("code")) {
    KABAN_TRYV(fail(errc::missing_field, "the enrollment line has no code", why));
  }
  if (!params.contains("ca")) {
    KABAN_TRYV(fail(errc::missing_field, "the enrollment line has no CA fingerprint", why));
  }
  auto code = normalize_enrollment_code(params["code"]);
  if (!code) {
    KABAN_TRYV(fail(errc::invalid_value,
                    "the code in the enrollment line is not 16 letters and digits", why));
  }
  out.code = std::move(code).value();
  std::string ca(params["ca"]);
  std::transform(ca.begin(), ca.end(), ca.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (!is_sha256_hex(ca)) {
    KABAN_TRYV(fail(errc::invalid_value,
                    "the CA fingerprint in the enrollment line is not 64 hex digits", why));
  }
  out.ca_fingerprint = std::move(ca);
  return out;
}

}  // namespace kaban::protocol
