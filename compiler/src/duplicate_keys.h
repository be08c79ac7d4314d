// Duplicate keys in a JSON object: nlohmann keeps the last silently (and
// other parsers keep the first), so a manifest saying "padding" twice would
// mean different things to different readers. DuplicateKeys follows the
// parse through nlohmann's parser callback and records every repeat with the
// JSON pointer of the key and the positions of both members.

#ifndef MPSBC_DUPLICATE_KEYS_H_
#define MPSBC_DUPLICATE_KEYS_H_

#include <cstddef>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "field_reader.h"

namespace mpsbc {

class DuplicateKeys {
 public:
  struct Duplicate {
    std::string pointer;         // of the key, e.g. "/layers/0/padding"
    std::string object_pointer;  // of the object holding it, "" for the root
    std::string key;
    size_t first = 0, second = 0;  // 0-based member positions in the object
  };

  // For json::parse(text, keys.callback()). Keeps every value.
  nlohmann::json::parser_callback_t callback() {
    return [this](int /*depth*/, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
      using E = nlohmann::json::parse_event_t;
      switch (event) {
        case E::object_start:
        case E::array_start: {
          std::string pointer = stack_.empty() ? "" : next_child();
          Frame frame;
          frame.object = event == E::object_start;
          frame.pointer = std::move(pointer);
          stack_.push_back(std::move(frame));
          break;
        }
        case E::object_end:
        case E::array_end:
          if (!stack_.empty()) stack_.pop_back();
          break;
        case E::key: {
          Frame& f = stack_.back();
          f.key = parsed.is_string() ? parsed.get<std::string>() : std::string();
          const auto [it, inserted] = f.keys.emplace(f.key, f.count);
          if (!inserted) {
            found_.push_back({child(f.pointer, f.key), f.pointer, f.key, it->second, f.count});
          }
          ++f.count;
          break;
        }
        case E::value:
          if (!stack_.empty() && !stack_.back().object) ++stack_.back().count;
          break;
      }
      return true;
    };
  }

  const std::vector<Duplicate>& found() const { return found_; }

 private:
  struct Frame {
    bool object = false;
    std::string pointer;
    size_t count = 0;  // members or elements so far
    std::string key;   // objects: the key of the member being parsed
    std::map<std::string, size_t> keys;
  };

  // The pointer of the container that starts now inside the top frame.
  std::string next_child() {
    Frame& f = stack_.back();
    if (f.object) return child(f.pointer, f.key);
    return f.pointer + "/" + std::to_string(f.count++);
  }

  std::vector<Frame> stack_;
  std::vector<Duplicate> found_;
};

}  // namespace mpsbc

#endif  // MPSBC_DUPLICATE_KEYS_H_
