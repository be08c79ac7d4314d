// mpsb-device-check: runs every probed layer of a bundle on the GPU through
// the kernel factories (runtime/apple/MPSBKernels.h) and compares the result
// with PyTorch's (the probe file, docs/FORMAT.md).
//
//   mpsb-device-check [--tolerance-scale X] PATH...
//
// PATH is a model bundle (its probe file is the same name with .probes.mpsb
// instead of .mpsb) or a folder, whose every CASE.mpsb with a
// CASE.probes.mpsb is checked. For each probed layer it builds the kernel
// with -[MPSBBundle kernelForLayer:device:error:], writes the probe input to
// an MPSImage (float32, HxWxC), encodes it twice — into a destination image
// of PyTorch's size with the offsets the factory set (the destinationImage:
// encode) and through the image-returning encode, where the kernel's
// MPSBPadding sizes the result and sets the offsets — reads both back and
// prints one row per layer: the max relative error of each (max |got -
// want| / max |want|) against the tolerance for the layer's weight
// precision (probe_compare.h). Exit 0 when every row passes, 1 when any
// fails, 2 for a usage or file error or no Metal device.
//
// Built and run on a Mac by scripts/device-check.sh; compiled (not run)
// under GNUstep against the stubs in tests/apple so it keeps building.

#import <Foundation/Foundation.h>
#import <Metal/Metal.h>
#import <MetalPerformanceShaders/MetalPerformanceShaders.h>

#import "MPSBBundle.h"
#import "MPSBKernels.h"

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "device_check/probe_compare.h"
#include "mpsb/bundle.h"
#include "mpsb/types.h"

#if defined(__has_feature) && __has_feature(objc_arc)
#define MPSB_POOL_BEGIN @autoreleasepool {
#define MPSB_POOL_END }
#define MPSB_AUTORELEASE(x) (x)
#else
#define MPSB_POOL_BEGIN \
  {                     \
    NSAutoreleasePool *mpsb_pool = [[NSAutoreleasePool alloc] init];
#define MPSB_POOL_END \
  [mpsb_pool drain];  \
  }
#define MPSB_AUTORELEASE(x) [(x) autorelease]
#endif

namespace {

using mpsb::device_check::FeatureMap;

// Probe files (docs/FORMAT.md §7).
constexpr auto kProbeInput = mpsb::TensorRole::kProbeInput;
constexpr auto kProbeOutput = mpsb::TensorRole::kProbeOutput;
constexpr const char *kProbesForKey = "mpsb.probes_for";

struct Row {
  std::string layer, kind, dtype, shape, note;
  double error_direct = 0, error_padded = 0, tolerance = 0;
  bool ok = false;
};

std::string Str(NSString *s) { return s ? std::string([s UTF8String]) : std::string(); }

NSString *NS(std::string_view s) {
  return MPSB_AUTORELEASE([[NSString alloc] initWithBytes:s.data()
                                                   length:s.size()
                                                 encoding:NSUTF8StringEncoding]);
}

bool EndsWith(const std::string &s, const std::string &tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// (model, probe file) pairs named by PATH.
std::vector<std::pair<std::string, std::string>> Cases(const std::string &path) {
  std::vector<std::pair<std::string, std::string>> out;
  BOOL dir = NO;
  if ([[NSFileManager defaultManager] fileExistsAtPath:NS(path) isDirectory:&dir] && dir) {
    NSArray *names = [[[NSFileManager defaultManager] contentsOfDirectoryAtPath:NS(path) error:NULL]
        sortedArrayUsingSelector:@selector(compare:)];
    for (NSUInteger i = 0; i < [names count]; ++i) {  // GCC's Objective-C++ has no for-in
      const std::string n = Str([names objectAtIndex:i]);
      if (!EndsWith(n, ".mpsb") || EndsWith(n, ".probes.mpsb")) continue;
      const std::string model = path + "/" + n;
      const std::string probes = model.substr(0, model.size() - 5) + ".probes.mpsb";
      if ([[NSFileManager defaultManager] fileExistsAtPath:NS(probes)]) {
        out.push_back({model, probes});
      }
    }
  } else if (EndsWith(path, ".mpsb")) {
    out.push_back({path, path.substr(0, path.size() - 5) + ".probes.mpsb"});
  }
  return out;
}

std::span<const float> Floats(const mpsb::Tensor &t) {
  return {static_cast<const float *>(t.data()), static_cast<size_t>(t.element_count())};
}

MPSImage *NewImage(id<MTLDevice> device, uint64_t w, uint64_t h, uint64_t c) {
  MPSImageDescriptor *d =
      [MPSImageDescriptor imageDescriptorWithChannelFormat:MPSImageFeatureChannelFormatFloat32
                                                     width:w
                                                    height:h
                                           featureChannels:c];
  [d setUsage:MTLTextureUsageShaderRead | MTLTextureUsageShaderWrite];
  return MPSB_AUTORELEASE([[MPSImage alloc] initWithDevice:device imageDescriptor:d]);
}

std::vector<float> ReadImage(MPSImage *image) {
  std::vector<float> v([image width] * [image height] * [image featureChannels]);
  [image readBytes:v.data() dataLayout:MPSDataLayoutHeightxWidthxFeatureChannels imageIndex:0];
  return v;
}

std::string ShapeText(uint64_t h, uint64_t w, uint64_t c) {
  return std::to_string(h) + "x" + std::to_string(w) + "x" + std::to_string(c);
}

// One probed layer, every image of the probe: the largest error of each
// encode. Fills row.note and returns false on an error that is not a
// numeric mismatch.
bool RunLayer(MPSBBundle *model, const mpsb::Layer &layer, const mpsb::Tensor &in,
              const mpsb::Tensor &want_t, id<MTLDevice> device, id<MTLCommandQueue> queue,
              Row &row) {
  NSError *error = nil;
  MPSCNNKernel *kernel = [model kernelForLayer:NS(layer.name()) device:device error:&error];
  if (kernel == nil) {
    row.note = "no kernel: " + Str([error localizedDescription]);
    return false;
  }
  // The image-returning encode must give a readable MPSImage, not a
  // temporary one.
  [kernel setDestinationImageAllocator:[MPSImage defaultAllocator]];
  std::vector<FeatureMap> inputs = mpsb::device_check::split_images(in.shape(), Floats(in));
  std::vector<FeatureMap> wants = mpsb::device_check::split_images(want_t.shape(), Floats(want_t));
  if (inputs.size() != wants.size()) {
    row.note = "probe input and output have different batch sizes";
    return false;
  }
  if (layer.kind() == mpsb::LayerKind::kLinear && layer.linear().flattened()) {
    const mpsb::LinearParams l = layer.linear();
    for (FeatureMap &m : inputs) {
      if (m.values.size() != uint64_t(l.input_c) * l.input_h * l.input_w) {
        row.note = "probe input is not the layer's flattened input";
        return false;
      }
      m = mpsb::device_check::unflatten(m, l.input_c, l.input_h, l.input_w);
    }
  }
  MPSBPadding *padding = nil;
  if ([(id)[kernel padding] isKindOfClass:[MPSBPadding class]]) {
    padding = (MPSBPadding *)[kernel padding];
  }
  for (size_t n = 0; n < inputs.size(); ++n) {
    const FeatureMap &src_map = inputs[n];
    const FeatureMap &want = wants[n];
    // PyTorch's output size: from the policy for convolutions, the input's
    // for the kinds that keep it.
    uint64_t dw = src_map.width, dh = src_map.height, dc = src_map.channels;
    if (padding != nil) {
      MPSBPlacement *p = [padding placementForSourceWidth:src_map.width
                                                   height:src_map.height
                                                    error:&error];
      if (p == nil) {
        row.note = Str([error localizedDescription]);
        return false;
      }
      dw = [p destinationWidth];
      dh = [p destinationHeight];
      dc = [p destinationFeatureChannels];
    }
    row.shape = ShapeText(dh, dw, dc);
    if (dw != want.width || dh != want.height || dc != want.channels) {
      row.note = "mpsb size " + row.shape + ", PyTorch " +
                 ShapeText(want.height, want.width, want.channels);
      row.error_direct = row.error_padded = INFINITY;
      return true;
    }
    MPSImage *src = NewImage(device, src_map.width, src_map.height, src_map.channels);
    [src writeBytes:src_map.values.data()
         dataLayout:MPSDataLayoutHeightxWidthxFeatureChannels
         imageIndex:0];
    MPSImage *direct = NewImage(device, dw, dh, dc);
    id<MTLCommandBuffer> cb = [queue commandBuffer];
    // Reset what the padding policy may have changed on a previous image;
    // the destinationImage: encode reads the offsets as the factory set them.
    MPSCNNKernel *fresh = [model kernelForLayer:NS(layer.name()) device:device error:NULL];
    [fresh encodeToCommandBuffer:cb sourceImage:src destinationImage:direct];
    MPSImage *padded = [kernel encodeToCommandBuffer:cb sourceImage:src];
    [cb commit];
    [cb waitUntilCompleted];
    if ([cb error] != nil) {
      row.note = "GPU error: " + Str([[cb error] localizedDescription]);
      return false;
    }
    const double e1 = mpsb::device_check::max_relative_error(ReadImage(direct), want.values);
    double e2 = INFINITY;
    if ([padded width] == dw && [padded height] == dh && [padded featureChannels] == dc) {
      e2 = mpsb::device_check::max_relative_error(ReadImage(padded), want.values);
    } else {
      row.note = "image-returning encode gave " +
                 ShapeText([padded height], [padded width], [padded featureChannels]);
    }
    row.error_direct = std::max(row.error_direct, e1);
    row.error_padded = std::max(row.error_padded, e2);
  }
  return true;
}

// Every probed layer of one model; false when the pair cannot be checked.
bool RunCase(const std::string &model_path, const std::string &probe_path, id<MTLDevice> device,
             id<MTLCommandQueue> queue, double scale, std::vector<Row> &rows) {
  NSError *error = nil;
  MPSBBundle *model = [MPSBBundle bundleWithPath:NS(model_path) error:&error];
  if (model == nil) {
    std::fprintf(stderr, "%s: %s\n", model_path.c_str(), Str([error localizedDescription]).c_str());
    return false;
  }
  mpsb::Result<mpsb::Bundle> model_ref = mpsb::Bundle::open(model_path);
  mpsb::Result<mpsb::Bundle> probes = mpsb::Bundle::open(probe_path);
  if (!model_ref || !probes) {
    std::fprintf(stderr, "%s\n", (!model_ref ? model_ref : probes).message().c_str());
    return false;
  }
  std::string probes_for;
  for (size_t i = 0; i < probes->metadata_count(); ++i) {
    if (probes->metadata(i).first == kProbesForKey) probes_for = probes->metadata(i).second;
  }
  if (const std::string why = mpsb::device_check::probe_file_mismatch(
          probes_for, model_path, model_ref->segment_checksum());
      !why.empty()) {
    std::fprintf(stderr, "%s: %s\n", probe_path.c_str(), why.c_str());
    return false;
  }
  std::printf("%s (probes for segment %s)\n", model_path.c_str(), probes_for.c_str());
  for (size_t i = 0; i < probes->layer_count(); ++i) {
    const mpsb::Layer probe = probes->layer_in_network_order(i);
    Row row;
    row.layer = std::string(probe.name());
    const std::optional<mpsb::Layer> layer = model_ref->find(probe.name());
    const std::optional<mpsb::Tensor> in = probe.find(kProbeInput);
    const std::optional<mpsb::Tensor> want = probe.find(kProbeOutput);
    if (!layer || !in || !want || in->shape().size() != 4 || want->shape().size() != 4 ||
        in->dtype() != mpsb::DType::kFloat32 || want->dtype() != mpsb::DType::kFloat32) {
      row.note = !layer ? "no such layer in the model" : "not a float32 [N,H,W,C] probe";
      rows.push_back(row);
      continue;
    }
    row.kind = std::string(mpsb::to_string(layer->kind()));
    const std::optional<mpsb::Tensor> weight = layer->find(mpsb::TensorRole::kWeight);
    const bool has_weights = layer->kind() == mpsb::LayerKind::kConv2d ||
                             layer->kind() == mpsb::LayerKind::kConvTranspose2d ||
                             layer->kind() == mpsb::LayerKind::kLinear;
    const mpsb::DType dtype = has_weights && weight ? weight->dtype() : mpsb::DType::kFloat32;
    row.dtype = has_weights ? std::string(mpsb::to_string(dtype)) : "-";
    row.tolerance = mpsb::device_check::tolerance_for(dtype) * scale;
    MPSB_POOL_BEGIN
    if (RunLayer(model, *layer, *in, *want, device, queue, row)) {
      row.ok = row.error_direct <= row.tolerance && row.error_padded <= row.tolerance;
    }
    MPSB_POOL_END
    rows.push_back(row);
  }
  return true;
}

void PrintRows(const std::vector<Row> &rows) {
  std::printf("%-28s %-16s %-8s %-12s %12s %12s %9s  %s\n", "layer", "kind", "weights", "output",
              "err(direct)", "err(padded)", "tolerance", "result");
  for (const Row &r : rows) {
    std::printf("%-28s %-16s %-8s %-12s %12.3g %12.3g %9.1g  %s%s%s\n", r.layer.c_str(),
                r.kind.c_str(), r.dtype.c_str(), r.shape.c_str(), r.error_direct, r.error_padded,
                r.tolerance, r.ok ? "ok" : "FAIL", r.note.empty() ? "" : ": ", r.note.c_str());
  }
}

int Usage() {
  std::fprintf(stderr, "usage: mpsb-device-check [--tolerance-scale X] MODEL.mpsb|FOLDER...\n");
  return 2;
}

}  // namespace

int main(int argc, char **argv) {
  int status = 0;
  MPSB_POOL_BEGIN
  double scale = 1.0;
  std::vector<std::string> paths;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--tolerance-scale" && i + 1 < argc) {
      scale = std::strtod(argv[++i], nullptr);
    } else if (!a.empty() && a[0] == '-') {
      status = Usage();
    } else {
      paths.push_back(a);
    }
  }
  if (paths.empty() || !(scale > 0)) status = Usage();
  id<MTLDevice> device = status == 0 ? MTLCreateSystemDefaultDevice() : nil;
  if (status == 0 && device == nil) {
    std::fprintf(stderr, "mpsb-device-check: no Metal device\n");
    status = 2;
  }
  if (status == 0) {
    std::printf("device: %s\n", [[device name] UTF8String]);
    id<MTLCommandQueue> queue = [device newCommandQueue];
    std::vector<Row> rows;
    size_t cases = 0;
    for (const std::string &p : paths) {
      for (const auto &[model, probes] : Cases(p)) {
        ++cases;
        if (!RunCase(model, probes, device, queue, scale, rows)) status = 2;
      }
    }
    if (cases == 0) {
      std::fprintf(stderr, "mpsb-device-check: no MODEL.mpsb with a MODEL.probes.mpsb found\n");
      status = 2;
    }
    PrintRows(rows);
    size_t failed = 0;
    for (const Row &r : rows) failed += r.ok ? 0 : 1;
    std::printf("%zu layers, %zu failed\n", rows.size(), failed);
    if (status == 0 && (failed > 0 || rows.empty())) status = 1;
  }
  MPSB_POOL_END
  return status;
}
