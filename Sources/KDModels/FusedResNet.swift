import KDTensor

/// The inference form of a `ResNet` in eval mode (the frozen teacher, docs/ops.md "Fused inference"):
///
/// - every conv + BatchNorm pair folded into one conv, with `s[o] = γ[o] / √(running_var[o] + ε)`:
///   `W'[o] = s[o]·W[o]`, `b'[o] = β[o] + (b[o] − running_mean[o])·s[o]` (in Double, rounded once);
/// - ReLU and the residual add fused into each conv's epilogue (`FusedConv`: the Winograd output
///   transform, or the GEMM's β = 1 accumulation for the direct algorithm);
/// - no tape, no saved activations: three activation buffers rotate through the blocks;
/// - the blocks run a stage at a time, each stage in groups of images (`imagesPerGroup`), so a group's
///   activations stay in cache from one block to the next;
/// - each conv's algorithm is the `Conv2d.algorithm` of the source layer when this is built, and a
///   Winograd filter transform is computed here once.
///
/// The result equals the model's eval forward up to float rounding (the folding's one rounding per
/// weight, and the chosen algorithm's error, docs/ops.md).
public final class FusedResNet: @unchecked Sendable {
    struct Block { let conv1: FusedConv, conv2: FusedConv, shortcut: FusedConv? }
    let stem: FusedConv
    let blocks: [Block]
    /// The classifier: `Wᵀ` `[F, classes]` panels for the row-invariant GEMM, and the bias (zeros without).
    let fcPacked: RowInvariantGEMM.Packed, fcBias: Tensor
    public let featureSize: Int
    /// (layer name, algorithm) of every fused conv, in forward order.
    public let algorithms: [(String, ConvAlgorithm)]

    /// nil unless `model` is a `ResNet` (other networks keep their own no-grad forward).
    public init?(_ model: any Classifier) {
        guard let r = model as? ResNet else { return nil }
        var names: [(String, ConvAlgorithm)] = []
        func fold(_ name: String, _ conv: Conv2d, _ bn: BatchNorm2d) -> FusedConv {
            let f = FusedResNet.fold(conv, bn)
            names.append((name, f.algorithm))
            return f
        }
        stem = fold("conv1", r.conv1, r.bn1)
        var bl: [Block] = []
        for (si, stage) in [r.layer1, r.layer2, r.layer3].enumerated() {
            for (bi, m) in stage.children.enumerated() {
                guard let b = m.1 as? BasicBlock else { return nil }
                let prefix = "layer\(si + 1).\(bi)."
                var sc: FusedConv? = nil
                if let ds = b.downsample {
                    guard let c = ds.children[0].1 as? Conv2d,
                          let n = ds.children[1].1 as? BatchNorm2d else { return nil }
                    sc = fold(prefix + "downsample.0", c, n)
                }
                bl.append(Block(conv1: fold(prefix + "conv1", b.conv1, b.bn1),
                                conv2: fold(prefix + "conv2", b.conv2, b.bn2), shortcut: sc))
            }
        }
        blocks = bl
        let (classes, features) = (r.fc.weight.shape[0], r.fc.weight.shape[1])
        fcPacked = RowInvariantGEMM.Packed(r.fc.weight.ptr, k: features, n: classes, ldb: features, transposed: true)
        fcBias = r.fc.bias?.copy() ?? Tensor(shape: [classes], repeating: 0)
        featureSize = r.featureSize
        algorithms = names
    }

    /// Images per group of a stage whose blocks output `h×w`: the fewest whose F(4×4) tiles fill `tilesPerGroup`
    /// GEMM rows (so the filter banks are read once per `tilesPerGroup` tiles, as in one layer), at most `n`.
    static func imagesPerGroup(n: Int, h: Int, w: Int) -> Int {
        let tiles = max(1, ((h + 3) / 4) * ((w + 3) / 4)), rows = tilesPerGroup ?? WinogradWorkspace.minTiles
        return max(1, min(n, rows / tiles + (rows % tiles > 0 ? 1 : 0)))   // ⌈rows / tiles⌉, no overflow at Int.max
    }
    /// Tiles per group of images (tests, `kdgraph bench --ops`; `Int.max`: the whole batch at once); nil:
    /// `WinogradWorkspace.minTiles`, the Winograd convolution's chunk.
    package nonisolated(unsafe) static var tilesPerGroup: Int? = nil

    /// BatchNorm (eval statistics) folded into the preceding convolution.
    static func fold(_ conv: Conv2d, _ bn: BatchNorm2d) -> FusedConv {
        let cout = conv.outChannels, per = conv.weight.count / cout
        let w = Tensor(uninitializedShape: conv.weight.shape), b = Tensor(uninitializedShape: [cout])
        for o in 0..<cout {
            let s = Double(bn.weight.ptr[o]) / (Double(bn.runningVar.ptr[o]) + Double(bn.eps)).squareRoot()
            for i in 0..<per { w.ptr[o * per + i] = Float(Double(conv.weight.ptr[o * per + i]) * s) }
            let cb = Double(conv.bias?.ptr[o] ?? 0)
            b.ptr[o] = Float(Double(bn.bias.ptr[o]) + (cb - Double(bn.runningMean.ptr[o])) * s)
        }
        return FusedConv(weight: w, bias: b, stride: conv.stride, padding: conv.padding, algorithm: conv.algorithm)
    }

    /// `(feature [N, F], logits [N, classes])` of NHWC images `[N, H, W, Cin]`, never on the tape.
    public func callAsFunction(_ x: Tensor) throws -> (feature: Tensor, logits: Tensor) {
        guard x.rank == 4, x.shape[3] == stem.cin else {
            throw TensorError.invalidArgument(op: "FusedResNet",
                                              message: "expects NHWC images [N, H, W, \(stem.cin)], got \(x.shape)")
        }
        let n = x.shape[0]
        var h = x.shape[1], w = x.shape[2]
        // The largest activation: every stage keeps or shrinks H·W·C (stride 2 halves H and W, C doubles).
        var largest = 0, (sh, sw) = stem.outputSize(h: h, w: w)
        largest = sh * sw * stem.cout
        for b in blocks {
            (sh, sw) = b.conv1.outputSize(h: sh, w: sw)
            largest = max(largest, sh * sw * b.conv1.cout)
        }
        let size = max(1, n * largest)
        var bufs = [Tensor(uninitializedShape: [size]), Tensor(uninitializedShape: [size]),
                    Tensor(uninitializedShape: [size])]
        var scratch: Tensor? = nil
        stem.run(x.ptr, n: n, h: h, w: w, residual: nil, relu: true, out: bufs[0].ptr, scratch: &scratch)
        (h, w) = stem.outputSize(h: h, w: w)
        var c = stem.cout
        // The blocks a stage at a time (a stage: a block that changes the resolution, the blocks after it at that
        // resolution), each stage in groups of images: a group's activations stay in cache from one block to
        // the next. Each image's values are the same in any group (row-invariant GEMMs, docs/ops.md).
        var first = 0
        while first < blocks.count {
            var last = first + 1
            while last < blocks.count && blocks[last].shortcut == nil { last += 1 }
            let stage = Array(blocks[first..<last])
            // Each block's input size and channels (`dims[i]`) and its output's (`dims[i + 1]`): every group's.
            var dims = [(h: h, w: w, c: c)]
            for b in stage {
                let (h1, w1) = b.conv1.outputSize(h: dims.last!.h, w: dims.last!.w)
                dims.append((h1, w1, b.conv2.cout))
            }
            let group = FusedResNet.imagesPerGroup(n: n, h: dims[1].h, w: dims[1].w)
            var rotated = bufs
            for n0 in stride(from: 0, to: n, by: group) {
                rotated = bufs
                let images = min(group, n - n0)
                for (i, b) in stage.enumerated() {
                    // rotated[0] = block input, [1] = relu(conv1), [2] = projected shortcut; each at its image n0.
                    let (gh, gw, gc) = dims[i], (h1, w1, _) = dims[i + 1]
                    let input = rotated[0].ptr + n0 * gh * gw * gc, mid = rotated[1].ptr + n0 * h1 * w1 * b.conv1.cout
                    b.conv1.run(input, n: images, h: gh, w: gw, residual: nil, relu: true, out: mid, scratch: &scratch)
                    if let sc = b.shortcut {
                        let out = rotated[2].ptr + n0 * h1 * w1 * b.conv2.cout
                        sc.run(input, n: images, h: gh, w: gw, residual: nil, relu: false, out: out, scratch: &scratch)
                        b.conv2.run(mid, n: images, h: h1, w: w1, residual: out, relu: true, out: out,
                                    scratch: &scratch)
                        rotated.swapAt(0, 2)
                    } else {   // identity shortcut: the output overwrites the block input in place
                        b.conv2.run(mid, n: images, h: h1, w: w1, residual: input, relu: true, out: input,
                                    scratch: &scratch)
                    }
                }
            }
            bufs = rotated
            (h, w, c) = dims.last!
            first = last
        }
        return try withNoGrad {
            let act = Tensor(shape: [n, h, w, c], storage: bufs[0].storage)
            let feature = try globalAvgPool(act)
            // logits = b + feature · Wᵀ by the row-invariant GEMM, like the convolutions (docs/ops.md).
            let logits = Tensor(uninitializedShape: [n, fcPacked.n])
            for i in 0..<n { (logits.ptr + i * fcPacked.n).update(from: fcBias.ptr, count: fcPacked.n) }
            RowInvariantGEMM.multiply(m: n, a: feature.ptr, lda: fcPacked.k, b: fcPacked, c: logits.ptr,
                                      ldc: fcPacked.n, accumulate: true)
            return (feature, logits)
        }
    }
}
