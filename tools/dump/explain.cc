// --explain: the file's first bytes and every region, offset by offset
// (docs/FORMAT.md describes the layout).
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "dump_internal.h"

namespace mpsb::dump::detail {
namespace {

// One byte range of the file and what it holds. Tensor regions also name
// their layer and role.
struct Region {
  Region(uint64_t o, uint64_t s, std::string k, std::string d, int dp = 0)
      : offset(o), size(s), kind(std::move(k)), description(std::move(d)), depth(dp) {}
  uint64_t offset = 0, size = 0;
  std::string kind;         // stable id, see docs/DUMP_JSON.md
  std::string description;  // for humans; names from the file are raw here
  int depth = 0;            // 1 for what lies inside the data segment
  std::optional<std::string> layer, role;
};

uint32_t read_u32(std::span<const std::byte> s, uint64_t at) {
  uint32_t v = 0;
  if (at <= s.size() && s.size() - at >= 4) std::memcpy(&v, s.data() + at, 4);
  return v;
}

uint16_t read_u16(std::span<const std::byte> s, uint64_t at) {
  uint16_t v = 0;
  if (at <= s.size() && s.size() - at >= 2) std::memcpy(&v, s.data() + at, 2);
  return v;
}

uint64_t nonzero_bytes(std::span<const std::byte> s, uint64_t begin, uint64_t end) {
  uint64_t n = 0;
  for (uint64_t i = begin; i < end && i < s.size(); ++i) n += s[i] != std::byte{0};
  return n;
}

std::string padding_text(std::string_view what, uint64_t nonzero) {
  return nonzero == 0 ? fmt::format("{} (all zero)", what)
                      : fmt::format("{} ({} NON-ZERO bytes)", what, nonzero);
}

std::vector<Region> explain_regions(const Bundle& b) {
  const std::span<const std::byte> file = b.file();
  const uint64_t meta_end = b.metadata_bytes().size();
  std::vector<Region> regions;

  // The FlatBuffer's fixed head (docs/FORMAT.md): the size prefix, then the
  // buffer proper, whose offsets count from byte 4.
  const uint32_t prefix = read_u32(file, 0);
  const uint32_t root_offset = read_u32(file, 4);
  const uint64_t root = 4 + uint64_t(root_offset);
  std::vector<Region> meta;
  meta.push_back({0, 4, "size_prefix",
                  fmt::format("size prefix: {}, the FlatBuffer that follows ends at 0x{:x}", prefix,
                              4 + uint64_t(prefix))});
  meta.push_back(
      {4, 4, "root_offset",
       fmt::format("root offset: {}, root table (Bundle) at 0x{:x}", root_offset, root)});
  meta.push_back({8, 4, "file_identifier",
                  fmt::format("file identifier \"{}\"",
                              printable(std::string_view(
                                  reinterpret_cast<const char*>(file.data()) + 8, 4)))});
  // A table starts with a signed offset back to its vtable: vtable = table -
  // soffset. The vtable holds its own size, the table's size, then one slot
  // per field. Bundle::open verified all of it.
  const auto soffset = static_cast<int32_t>(read_u32(file, root));
  const uint64_t vtable = root - static_cast<uint64_t>(static_cast<int64_t>(soffset));
  const uint16_t vtable_size = read_u16(file, vtable);
  const uint16_t table_size = read_u16(file, vtable + 2);
  if (vtable <= meta_end && meta_end - vtable >= vtable_size && vtable_size >= 4) {
    meta.push_back({vtable, vtable_size, "root_vtable",
                    fmt::format("vtable of the root table: {} bytes, {} field slots", vtable_size,
                                (vtable_size - 4) / 2)});
  }
  if (root <= meta_end && meta_end - root >= table_size) {
    meta.push_back({root, table_size, "root_table",
                    fmt::format("root table (Bundle): {} bytes of scalars and offsets, vtable at "
                                "0x{:x}",
                                table_size, vtable)});
  }
  std::sort(meta.begin(), meta.end(),
            [](const Region& x, const Region& y) { return x.offset < y.offset; });
  uint64_t at = 0;
  for (Region& r : meta) {
    if (r.offset > at && at == 12 && nonzero_bytes(file, at, r.offset) == 0 && r.offset - at < 8) {
      // The builder writes back to front and aligns what it writes last, the
      // root's vtable: zeros between the identifier and it are that padding.
      regions.emplace_back(at, r.offset - at, "metadata_padding", "alignment padding (all zero)");
    } else if (r.offset > at) {
      regions.emplace_back(at, r.offset - at, "metadata",
                           "metadata: layer and tensor tables, vectors, strings");
    }
    at = std::max(at, r.offset + r.size);
    regions.push_back(std::move(r));
  }
  if (at < meta_end) {
    regions.push_back(
        {at, meta_end - at, "metadata", "metadata: layer and tensor tables, vectors, strings"});
  }
  const uint64_t seg = b.segment_offset();
  if (seg > meta_end) {
    regions.push_back(
        {meta_end, seg - meta_end, "padding",
         padding_text(fmt::format("padding from the end of the metadata to the segment "
                                  "alignment ({})",
                                  b.segment_alignment()),
                      nonzero_bytes(file, meta_end, seg))});
  }
  const uint64_t seg_size = b.segment().size();
  regions.push_back({seg, seg_size, "segment",
                     fmt::format("data segment: {} tensors, tensor alignment {}", tensor_count(b),
                                 b.tensor_alignment())});

  struct Placed {
    uint64_t offset, size;
    std::string layer, role, text;
  };
  std::vector<Placed> tensors;
  for (const Layer& l : network_order(b)) {
    for (size_t i = 0; i < l.tensor_count(); ++i) {
      const Tensor t = l.tensor(i);
      std::string text = fmt::format("{} {} {}", to_string(t.dtype()), to_string(t.layout()),
                                     shape_text(t.shape()));
      if (holds_folded_values(l, t)) {
        text += ", folded with batch norm " + std::string(l.folded_batchnorm());
      }
      if (mpsb::is_grouped_to_dense(t.transform())) {
        text += fmt::format(" (legalized: dense form of groups {}, source {})",
                            l.legalized_groups(), shape_text(t.source_shape()));
      }
      tensors.push_back({t.offset(), t.size(), std::string(l.name()),
                         std::string(to_string(t.role())), std::move(text)});
    }
  }
  std::stable_sort(tensors.begin(), tensors.end(),
                   [](const Placed& x, const Placed& y) { return x.offset < y.offset; });
  uint64_t pos = 0;  // segment-relative
  for (const Placed& t : tensors) {
    if (t.offset > pos) {
      regions.push_back(
          {seg + pos, t.offset - pos, "tensor_padding",
           padding_text("alignment padding", nonzero_bytes(file, seg + pos, seg + t.offset)), 1});
    }
    Region r{seg + t.offset, t.size, "tensor",
             fmt::format("[{}, {}) {}.{} {}", t.offset, t.offset + t.size, t.layer, t.role, t.text),
             1};
    r.layer = t.layer;
    r.role = t.role;
    regions.push_back(std::move(r));
    pos = std::max(pos, t.offset + t.size);
  }
  if (pos < seg_size) {
    regions.push_back({seg + pos, seg_size - pos, "trailing_padding",
                       padding_text(fmt::format("trailing padding to the segment alignment ({})",
                                                b.segment_alignment()),
                                    nonzero_bytes(file, seg + pos, seg + seg_size)),
                       1});
  }
  return regions;
}

constexpr size_t kExplainHeadBytes = 32;

// xxd-style lines: offset, 16 bytes in hex, the printable ASCII.
void print_hex(std::ostream& out, std::span<const std::byte> bytes, const Style& style) {
  for (size_t line = 0; line < bytes.size(); line += 16) {
    std::string hex, ascii;
    for (size_t i = line; i < line + 16; ++i) {
      if (i == line + 8) hex += ' ';
      if (i < bytes.size()) {
        const auto c = static_cast<unsigned char>(bytes[i]);
        hex += fmt::format("{:02x} ", c);
        ascii += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '.';
      } else {
        hex += "   ";
      }
    }
    out << "  " << style.dim(fmt::format("{:08x}", line)) << "  " << hex << " " << ascii << '\n';
  }
}

}  // namespace

int run_explain(const Options& o, const Bundle& b, std::ostream& out, const Style& style) {
  const std::span<const std::byte> file = b.file();
  const std::vector<Region> regions = explain_regions(b);
  const auto head = file.first(std::min<size_t>(kExplainHeadBytes, file.size()));
  if (o.json) {
    ordered_json j = document("explain");
    j["file"] = o.bundle_path;
    j["file_size"] = file.size();
    std::string hex;
    for (const std::byte c : head) hex += fmt::format("{:02x}", static_cast<unsigned>(c));
    j["head"] = hex;
    ordered_json rs = ordered_json::array();
    for (const Region& r : regions) {
      ordered_json rj;
      rj["offset"] = r.offset;
      rj["size"] = r.size;
      rj["region"] = r.kind;
      rj["description"] = r.description;
      rj["layer"] = r.layer ? ordered_json(*r.layer) : ordered_json(nullptr);
      rj["role"] = r.role ? ordered_json(*r.role) : ordered_json(nullptr);
      rs.push_back(std::move(rj));
    }
    j["regions"] = std::move(rs);
    print_json(out, j);
    return kExitOk;
  }
  Fields f;
  f.add("file", printable(o.bundle_path));
  f.add("file size", fmt::format("{} (0x{:x})", file.size(), file.size()));
  f.print(out);
  out << '\n' << style.bold(fmt::format("first {} bytes", head.size())) << '\n';
  print_hex(out, head, style);
  out << '\n';
  std::vector<std::vector<std::string>> rows;
  for (const Region& r : regions) {
    std::string what(size_t(r.depth) * 2, ' ');
    // The description holds raw names; only the tensor lines have any.
    what += r.kind == "tensor" ? truncate_to_width(printable(r.description), 100) : r.description;
    rows.push_back({fmt::format("0x{:08x}", r.offset), fmt::format("0x{:08x}", r.offset + r.size),
                    fmt::format("{}", r.size), what});
  }
  rows.push_back({fmt::format("0x{:08x}", file.size()), "", "", "end of file"});
  print_table(out, {{"offset", false, "2"}, {"end", false, "2"}, {"size", true}, {"region"}}, rows,
              style);
  return kExitOk;
}

}  // namespace mpsb::dump::detail
