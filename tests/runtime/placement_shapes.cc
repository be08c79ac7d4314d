// place_kernel (mpsb/placement.h) over cases read from stdin, one per line,
// for tests/pytorch/placement_test.py to compare with PyTorch:
//
//   KIND IN OUT GROUPS KH KW SH SW PH PW DH DW OPH OPW H W
//
// KIND is conv2d or conv_transpose2d. Prints one line per case:
//   ok DEST_H DEST_W DEST_C OFFSET_X OFFSET_Y KERNEL_OFFSET_X KERNEL_OFFSET_Y
//   refused MESSAGE
// Exits 2 on a line it cannot parse.

#include <cstdint>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>

#include "mpsb/bundle.h"
#include "mpsb/placement.h"

int main() {
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    std::istringstream in(line);
    std::string kind;
    mpsb::ConvParams p;
    uint64_t h = 0, w = 0;
    in >> kind >> p.in_channels >> p.out_channels >> p.groups >> p.kernel_h >> p.kernel_w >>
        p.stride_h >> p.stride_w >> p.padding_h >> p.padding_w >> p.dilation_h >> p.dilation_w >>
        p.output_padding_h >> p.output_padding_w >> h >> w;
    if (!in || (kind != "conv2d" && kind != "conv_transpose2d")) {
      std::fprintf(stderr, "placement_shapes: cannot parse '%s'\n", line.c_str());
      return 2;
    }
    const auto r = mpsb::place_kernel(
        kind == "conv2d" ? mpsb::LayerKind::kConv2d : mpsb::LayerKind::kConvTranspose2d, p, w, h);
    if (!r) {
      std::cout << "refused " << r.message() << "\n";
      continue;
    }
    std::cout << "ok " << r->destination_height << " " << r->destination_width << " "
              << r->destination_feature_channels << " " << r->offset_x << " " << r->offset_y << " "
              << r->kernel_offset_x << " " << r->kernel_offset_y << "\n";
  }
  return 0;
}
