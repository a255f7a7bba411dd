// Errors that name the field they are about, so that a library names the field ("device") and the
// command line the flag ("--device") without the library knowing flags. The base of every library
// above kernels/.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace astraea {

/// Bad input in one or more named fields. The message template refers to them as {0}, {1}, ...;
/// what() renders them by name ("device 'cuda:9' is not cpu, cuda or cuda:N"), render("--") as
/// flags ("--device 'cuda:9' ...", underscores turned into dashes).
class FieldError : public std::invalid_argument {
 public:
  FieldError(std::vector<std::string> fields, std::string message)
      : std::invalid_argument(fill(fields, message, "")),
        fields_(std::move(fields)),
        message_(std::move(message)) {}
  /// One field, named at the start: FieldError("device", "'cuda:9' is not cpu, cuda or cuda:N").
  FieldError(const char* field, const std::string& rest)
      : FieldError(std::vector<std::string>{field}, "{0} " + rest) {}

  const std::vector<std::string>& fields() const { return fields_; }
  /// The message with every field written as PREFIX + its name (dashed when PREFIX is not empty).
  std::string render(const std::string& prefix) const { return fill(fields_, message_, prefix); }

 private:
  static std::string fill(const std::vector<std::string>& fields, const std::string& message,
                          const std::string& prefix) {
    std::string out;
    for (size_t i = 0; i < message.size(); ++i) {
      const size_t close = message.find('}', i);
      if (message[i] == '{' && close != std::string::npos && close > i + 1 &&
          message.find_first_not_of("0123456789", i + 1) == close) {
        const size_t k = std::stoul(message.substr(i + 1, close - i - 1));
        if (k < fields.size()) {
          std::string name = fields[k];
          if (!prefix.empty())
            for (char& c : name) c = c == '_' ? '-' : c;
          out += prefix + name;
          i = close;
          continue;
        }
      }
      out += message[i];
    }
    return out;
  }
  std::vector<std::string> fields_;
  std::string message_;
};

}  // namespace astraea
