// Collects the errors and warnings of one compile, each naming the file and
// the place, so that a user sees every problem of a manifest in one run.

#ifndef MPSBC_DIAGNOSTICS_H_
#define MPSBC_DIAGNOSTICS_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mpsb_text.h"
#include "mpsbc/report.h"

namespace mpsbc {

class Diagnostics {
 public:
  // `file` names the manifest in every message about it.
  explicit Diagnostics(std::string file) : file_(std::move(file)) {}

  // "<manifest>: <pointer>: <text>". `pointer` is a JSON pointer into the
  // manifest; empty for the document as a whole.
  void error(std::string_view pointer, std::string_view text) {
    add(Diagnostic::Severity::kError, file_, pointer, text);
  }
  void warning(std::string_view pointer, std::string_view text) {
    add(Diagnostic::Severity::kWarning, file_, pointer, text);
  }
  // About another file (the output) or an option: "<file>: <text>".
  void error_in(std::string_view file, std::string_view text) {
    add(Diagnostic::Severity::kError, file, {}, text);
  }
  void warning_in(std::string_view file, std::string_view text) {
    add(Diagnostic::Severity::kWarning, file, {}, text);
  }

  // A documented MPS limit the layer breaks: MPS would refuse or misread it.
  // A warning, or an error under --strict.
  void mps_limit(std::string_view pointer, std::string_view text) {
    add(strict_ ? Diagnostic::Severity::kError : Diagnostic::Severity::kWarning, file_, pointer,
        std::string(text) + (strict_ ? " (--strict)" : ""));
  }
  void set_strict(bool strict) { strict_ = strict; }

  // A field the manifest format does not have: an error, or a warning
  // ("..., ignored") under --allow-unknown-fields. `text` says what it is
  // not a field of; `hint` (may be empty) what was probably meant.
  void unknown_field(std::string_view pointer, std::string_view text, std::string_view hint) {
    std::string message(text);
    if (allow_unknown_fields_) message += ", ignored";
    if (!hint.empty()) message += "; " + std::string(hint);
    add(allow_unknown_fields_ ? Diagnostic::Severity::kWarning : Diagnostic::Severity::kError,
        file_, pointer, message);
  }
  void set_allow_unknown_fields(bool allow) { allow_unknown_fields_ = allow; }

  bool has_errors() const { return errors_ > 0; }
  const std::string& file() const { return file_; }
  std::vector<Diagnostic>& all() { return all_; }

 private:
  void add(Diagnostic::Severity severity, std::string_view file, std::string_view pointer,
           std::string_view text) {
    Diagnostic d;
    d.severity = severity;
    d.file = std::string(file);
    d.pointer = std::string(pointer);
    d.text = std::string(text);
    // The message goes to a terminal: names and bytes from the manifest (and
    // the JSON parser's quotes of them) are escaped as mpsb-dump escapes
    // them, so U+202E or bytes that are not UTF-8 cannot reach it raw. The
    // fields stay exact for programs.
    const auto safe = [](std::string_view s) {
      return mpsb::text::escape(s, mpsb::text::Backslash::kKeep);
    };
    d.message = safe(d.file) + ": ";
    if (!pointer.empty()) d.message += safe(d.pointer) + ": ";
    if (severity == Diagnostic::Severity::kWarning) d.message += "warning: ";
    d.message += safe(d.text);
    if (severity == Diagnostic::Severity::kError) ++errors_;
    all_.push_back(std::move(d));
  }

  std::string file_;
  std::vector<Diagnostic> all_;
  size_t errors_ = 0;
  bool strict_ = false;
  bool allow_unknown_fields_ = false;
};

}  // namespace mpsbc

#endif  // MPSBC_DIAGNOSTICS_H_
