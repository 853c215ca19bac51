import Foundation
import KDModels
import KDTensor
import KDTrain

/// Op-level benchmarks (`kdgraph bench --ops`): forward + backward of conv2d and linear beside plain
/// `cblas_sgemm` on exactly the same GEMM shapes, plus batchNorm and pooling timings.
///
/// One JSON line per op and shape with keys `op`, `shape`, `ms` (best-of-N wall time of forward +
/// backward), `gflops` (the GEMMs' FLOPs / time), `sgemm_gflops` (those GEMMs timed alone on
/// preallocated whole-batch buffers, alternating with the op runs so machine load affects both
/// alike), `ratio` = `gflops / sgemm_gflops`, `cpu_ms` / `sgemm_ms`, `clock` and `threads` (OpenBLAS
/// threads). With one BLAS thread the GFLOP/s use the calling thread's CPU time (`clock:
/// thread_cpu`), which does not count time the scheduler gave to other processes; with more threads,
/// wall time. Ops without GEMM work report `gbps` (bytes read + written / time) and null GEMM fields.
/// Run with one BLAS thread (`OPENBLAS_NUM_THREADS=1`, the per-rank setting) and a release build.
public enum OpBench {
    /// A conv2d benchmark case (square images and kernels).
    public struct ConvCase: Sendable {
        public var batch, size, cin, cout, kernel, stride, padding: Int
        public init(batch: Int, size: Int, cin: Int, cout: Int, kernel: Int, stride: Int, padding: Int) {
            self.batch = batch; self.size = size; self.cin = cin; self.cout = cout
            self.kernel = kernel; self.stride = stride; self.padding = padding
        }
    }

    /// The default cases: ResNet-style 3×3 convs at batch 64 and two linear layers.
    public static let defaultConvs: [ConvCase] = [
        ConvCase(batch: 64, size: 32, cin: 32, cout: 32, kernel: 3, stride: 1, padding: 1),
        ConvCase(batch: 64, size: 16, cin: 64, cout: 64, kernel: 3, stride: 1, padding: 1),
        ConvCase(batch: 64, size: 8, cin: 128, cout: 128, kernel: 3, stride: 1, padding: 1),
        ConvCase(batch: 64, size: 4, cin: 256, cout: 256, kernel: 3, stride: 1, padding: 1),
        ConvCase(batch: 64, size: 16, cin: 64, cout: 128, kernel: 3, stride: 2, padding: 1),
        ConvCase(batch: 64, size: 16, cin: 64, cout: 128, kernel: 1, stride: 2, padding: 0),
        ConvCase(batch: 64, size: 8, cin: 128, cout: 128, kernel: 1, stride: 1, padding: 0),
    ]
    /// The fused teacher's stride-1 3×3 layers (resnet32x4, 64 images): F(4×4) with bias, residual and ReLU in
    /// the output transform, the filter transformed beforehand (`teacherLayerLine`).
    public static let teacherLayers: [ConvCase] = [
        ConvCase(batch: 64, size: 32, cin: 64, cout: 64, kernel: 3, stride: 1, padding: 1),
        ConvCase(batch: 64, size: 16, cin: 128, cout: 128, kernel: 3, stride: 1, padding: 1),
        ConvCase(batch: 64, size: 8, cin: 256, cout: 256, kernel: 3, stride: 1, padding: 1),
    ]
    /// The stride-2 3×3 layers of resnet32x4 and resnet8x4 at 64 images (`stridedLayerLine`).
    public static let stridedLayers: [ConvCase] = [
        ConvCase(batch: 64, size: 32, cin: 64, cout: 128, kernel: 3, stride: 2, padding: 1),
        ConvCase(batch: 64, size: 16, cin: 128, cout: 256, kernel: 3, stride: 2, padding: 1),
    ]
    /// Linear cases as (batch, in, out).
    public static let defaultLinears: [(Int, Int, Int)] = [(64, 256, 100), (64, 512, 128), (64, 2048, 1024)]
    /// GEMM shapes of the teacher's forward (resnet32x4, 64 images): Winograd F(4×4) per-ξ products
    /// (tiles × Cin · Cin × Cout) and an im2col product, for `RowInvariantGEMM` beside `cblas_sgemm`.
    public static let defaultGEMMs: [(m: Int, k: Int, n: Int)] = [(256, 64, 64), (256, 128, 128), (256, 256, 256),
                                                                 (4096, 576, 64), (4096, 2304, 256)]

    /// A fused teacher to time whole (`fusedTeacherLine`): a zoo network on `batch` random `size`×`size`×3 images.
    public struct FusedTeacherCase: Sendable {
        public var network: String, batch, size: Int
        public init(network: String, batch: Int, size: Int) {
            self.network = network; self.batch = batch; self.size = size
        }
    }
    /// The bench configs' teacher: resnet32x4 on 64 CIFAR-sized images.
    public static let defaultFusedTeachers = [FusedTeacherCase(network: "resnet32x4", batch: 64, size: 32)]

    /// Runs every case `iterations` times (after one warm-up) and returns one JSON line per case.
    public static func run(iterations: Int = 5, convs: [ConvCase] = defaultConvs,
                           linears: [(Int, Int, Int)] = defaultLinears,
                           gemms: [(m: Int, k: Int, n: Int)] = defaultGEMMs,
                           teacherLayers: [ConvCase] = teacherLayers,
                           stridedLayers: [ConvCase] = stridedLayers,
                           fusedTeachers: [FusedTeacherCase] = defaultFusedTeachers,
                           includeOtherOps: Bool = true) -> [String] {
        let iters = max(1, iterations)
        var lines: [String] = []
        func add(_ op: String, _ body: () throws -> String) {
            do { lines.append(try body()) } catch {
                let text = String(describing: error).replacingOccurrences(of: "\"", with: "'")
                lines.append("{\"op\":\"\(op)\",\"error\":\"\(text)\"}")
            }
        }
        for c in convs { add("conv2d") { try benchConv(c, iterations: iters) } }
        for c in convs where ConvAlgorithm.winogradApplies(kernelSize: c.kernel, stride: c.stride, padding: c.padding) {
            do { lines += try benchWinograd(c, iterations: iters) } catch {
                let text = String(describing: error).replacingOccurrences(of: "\"", with: "'")
                lines.append("{\"op\":\"winograd\",\"error\":\"\(text)\"}")
            }
        }
        for c in teacherLayers { lines.append(teacherLayerLine(c, iterations: iters)) }
        for c in stridedLayers { lines.append(stridedLayerLine(c, iterations: iters)) }
        for t in fusedTeachers { add("teacher_fused") { try fusedTeacherLine(t, iterations: iters) } }
        for (n, fin, fout) in linears {
            add("linear") { try benchLinear(n: n, fin: fin, fout: fout, iterations: iters) }
        }
        for g in gemms { lines.append(benchRowInvariantGEMM(m: g.m, k: g.k, n: g.n, iterations: iters)) }
        if includeOtherOps {
            add("batchNorm") { try benchBatchNorm([64, 32, 32, 32], iterations: iters) }
            add("batchNorm") { try benchBatchNorm([64, 8, 8, 128], iterations: iters) }
            add("batchNormBlockReLU") { try benchBatchNorm([64, 32, 32, 64], blockReLU: true, iterations: iters) }
            add("batchNormBlockReLU") { try benchBatchNorm([64, 8, 8, 256], blockReLU: true, iterations: iters) }
            add("maxPool2d") { try benchMaxPool([64, 32, 32, 64], iterations: iters) }
            add("globalAvgPool") { try benchGlobalAvgPool([64, 4, 4, 512], iterations: iters) }
        }
        return lines
    }

    // MARK: - Cases

    static func benchConv(_ c: ConvCase, iterations: Int) throws -> String {
        guard c.batch >= 1, c.size >= 1, c.cin >= 1, c.cout >= 1, c.kernel >= 1, c.stride >= 1, c.padding >= 0,
              c.size + 2 * c.padding >= c.kernel else {
            throw TensorError.invalidArgument(op: "conv2d", message:
                "kernel \(c.kernel)×\(c.kernel) with padding \(c.padding) does not fit input "
                    + "\(c.size)×\(c.size) (bench case \(c))")
        }
        var rng = KDRandom(keys: 0xBE4C, UInt64(c.cin), UInt64(c.size), UInt64(c.kernel))
        let x = Tensor.randn([c.batch, c.size, c.size, c.cin], rng: &rng)
        let w = Tensor.randn([c.cout, c.kernel, c.kernel, c.cin], std: 0.05, rng: &rng)
        let g = ConvGeometry(n: c.batch, h: c.size, w: c.size, cin: c.cin, kh: c.kernel, kw: c.kernel,
                             stride: c.stride, padding: c.padding)
        let m = g.n * g.pixelsPerImage, k = g.k, cout = c.cout
        let gy = Tensor.randn([c.batch, g.ho, g.wo, cout], rng: &rng)
        x.requiresGrad = true; w.requiresGrad = true
        // The same three GEMMs alone, on whole-batch buffers: Y = col·Wᵀ, dW = dYᵀ·col, and for dx either
        // dcol = dY·W (then col2im) or, for stride 1, dx = im2col(dY)·W'ᵀ (see conv2d).
        let col = Tensor.randn([m, k], rng: &rng)
        let y = Tensor(uninitializedShape: [m, cout]), dw = Tensor(uninitializedShape: [cout, k])
        let tg = transposedBackwardGeometry(g, cout: cout)
        let inRows = g.n * g.h * g.w
        let dxM = tg == nil ? m : inRows, dxN = tg == nil ? k : g.cin, dxK = tg?.k ?? cout
        let dxA = Tensor.randn([dxM, dxK], rng: &rng), dxB = Tensor.randn([dxN, dxK], rng: &rng)
        let dxC = Tensor(uninitializedShape: [dxM, dxN])
        let (opMs, gemmMs) = try bestPairMs(iterations, op: {
            x.grad = nil; w.grad = nil
            let y = try conv2d(x, weight: w, bias: nil, stride: c.stride, padding: c.padding)
            Tape.backward(y, seed: gy)
        }, gemm: {
            sgemm(transB: true, m: m, n: cout, k: k, a: col.ptr, lda: k, b: w.ptr, ldb: k, c: y.ptr, ldc: cout)
            sgemm(transA: true, m: cout, n: k, k: m, a: gy.ptr, lda: cout, b: col.ptr, ldb: k, c: dw.ptr, ldc: k)
            if tg == nil {
                sgemm(m: m, n: k, k: cout, a: gy.ptr, lda: cout, b: w.ptr, ldb: k, c: dxC.ptr, ldc: k)
            } else {
                sgemm(transB: true, m: dxM, n: dxN, k: dxK, a: dxA.ptr, lda: dxK, b: dxB.ptr, ldb: dxK,
                      c: dxC.ptr, ldc: dxN)
            }
        })
        x.grad = nil; w.grad = nil
        let flops = 2 * 2 * Double(m) * Double(cout) * Double(k) + 2 * Double(dxM) * Double(dxN) * Double(dxK)
        let shape = "\(c.batch)x\(c.size)x\(c.size)x\(c.cin)->\(cout) k\(c.kernel) s\(c.stride) p\(c.padding)"
        return gemmLine(op: "conv2d", shape: shape, ms: opMs, gemmMs: gemmMs, flops: flops)
    }

    /// Winograd beside direct for a stride-1 3×3 case: forward alone (`conv2d_fwd` direct,
    /// `winograd2_fwd`, `winograd4_fwd`, the inference path) and forward + backward (`winograd2`,
    /// `winograd4`, beside the `conv2d` line). `gflops` is effective: the direct algorithm's FLOPs over
    /// the time; `sgemm_gflops` times the direct algorithm's GEMMs alone (forward: `col·Wᵀ`);
    /// `max_rel_err` = max |y − y_direct| / max |y_direct| of the forward. The weight gradient alone too
    /// (`conv2d_wgrad`, `winograd2_wgrad`, `winograd4_wgrad`: `dYᵀ·col` and its error against the direct one).
    static func benchWinograd(_ c: ConvCase, iterations: Int) throws -> [String] {
        var rng = KDRandom(keys: 0xBE51, UInt64(c.cin), UInt64(c.size))
        let x = Tensor.randn([c.batch, c.size, c.size, c.cin], rng: &rng)
        let w = Tensor.randn([c.cout, 3, 3, c.cin], std: Float((2.0 / Double(9 * c.cout)).squareRoot()), rng: &rng)
        let g = ConvGeometry(n: c.batch, h: c.size, w: c.size, cin: c.cin, kh: 3, kw: 3, stride: 1, padding: c.padding)
        let m = g.n * g.pixelsPerImage, k = g.k, cout = c.cout
        let gy = Tensor.randn([c.batch, g.ho, g.wo, cout], rng: &rng)
        let col = Tensor.randn([m, k], rng: &rng), y = Tensor(uninitializedShape: [m, cout])
        let fwdGemm = {
            sgemm(transB: true, m: m, n: cout, k: k, a: col.ptr, lda: k, b: w.ptr, ldb: k, c: y.ptr, ldc: cout)
        }
        let fwdFlops = 2 * Double(m) * Double(cout) * Double(k)
        let shape = "\(c.batch)x\(c.size)x\(c.size)x\(c.cin)->\(cout) k3 s1 p\(c.padding)"
        let reference = try withNoGrad { try conv2d(x, weight: w, bias: nil, stride: 1, padding: c.padding) }
        var lines: [String] = []
        for alg in ConvAlgorithm.allCases {
            var out = reference
            let (opMs, gemmMs) = try bestPairMs(iterations, op: {
                out = try withNoGrad {
                    try conv2d(x, weight: w, bias: nil, stride: 1, padding: c.padding, algorithm: alg)
                }
            }, gemm: fwdGemm)
            let name = alg == .direct ? "conv2d_fwd" : alg.rawValue + "_fwd"
            let line = gemmLine(op: name, shape: shape, ms: opMs, gemmMs: gemmMs, flops: fwdFlops)
            lines.append(String(line.dropLast()) + ",\"max_rel_err\":\(relativeError(out, reference))}")
        }
        // The weight gradient alone (`conv2d_wgrad` direct, `winograd2_wgrad`, `winograd4_wgrad`), beside the
        // direct algorithm's dW GEMM; `max_rel_err` = max |dW − dW_direct| / max |dW_direct|.
        let dw = Tensor(uninitializedShape: [cout, k])
        let dwGemm = {
            sgemm(transA: true, m: cout, n: k, k: m, a: gy.ptr, lda: cout, b: col.ptr, ldb: k, c: dw.ptr, ldc: k)
        }
        let dwReference = try conv3x3WeightGradient(x, outputGradient: gy, padding: c.padding, algorithm: .direct)
        for alg in ConvAlgorithm.allCases {
            var out = dwReference
            let (opMs, gemmMs) = try bestPairMs(iterations, op: {
                out = try conv3x3WeightGradient(x, outputGradient: gy, padding: c.padding, algorithm: alg)
            }, gemm: dwGemm)
            let name = (alg == .direct ? "conv2d" : alg.rawValue) + "_wgrad"
            let line = gemmLine(op: name, shape: shape, ms: opMs, gemmMs: gemmMs, flops: fwdFlops)
            lines.append(String(line.dropLast()) + ",\"max_rel_err\":\(relativeError(out, dwReference))}")
        }
        // Forward + backward (dx and dW), effective FLOPs = the direct algorithm's three GEMMs.
        x.requiresGrad = true; w.requiresGrad = true
        defer { x.requiresGrad = false; w.requiresGrad = false; x.grad = nil; w.grad = nil }
        for alg in [ConvAlgorithm.winograd2, .winograd4] {
            let (opMs, gemmMs) = try bestPairMs(iterations, op: {
                x.grad = nil; w.grad = nil
                let out = try conv2d(x, weight: w, bias: nil, stride: 1, padding: c.padding, algorithm: alg)
                Tape.backward(out, seed: gy)
            }, gemm: {
                fwdGemm()
                sgemm(transA: true, m: cout, n: k, k: m, a: gy.ptr, lda: cout, b: col.ptr, ldb: k, c: dw.ptr, ldc: k)
                sgemm(m: m, n: k, k: cout, a: gy.ptr, lda: cout, b: w.ptr, ldb: k, c: col.ptr, ldc: k)
            })
            lines.append(gemmLine(op: alg.rawValue, shape: shape, ms: opMs, gemmMs: gemmMs, flops: 3 * fwdFlops))
        }
        return lines
    }

    /// One layer of the fused teacher as it runs (`winogradConvolve`, F(4×4), bias + residual + ReLU, the filter
    /// bank made beforehand), and where its time goes: `gemm_ms` times its 36 ξ products alone
    /// (`RowInvariantGEMM`, tiles × Cin · Cin × Cout, on preallocated operands, alternating with the layer), and
    /// `transform_ms` = `ms − gemm_ms` is the input and output transforms with the epilogue.
    /// `input_transform_ms` and `output_transform_ms` time the two transforms alone, chunk by chunk as the layer
    /// runs them, over the whole batch; `input_transform_cached_ms` is the input transform of one image run once
    /// per image of the batch (the same work with the input in cache: the difference is waiting on memory). `gflops` is
    /// effective (the direct algorithm's FLOPs over the time), `gemm_gflops` the GEMMs' own FLOPs over their
    /// time. `filter_bank_ms` and `flipped_bank_ms` time making the layer's filter banks (`WinogradFilter`), the
    /// forward's and the input gradient's: the teacher makes its banks once, a trained student both each step.
    static func teacherLayerLine(_ c: ConvCase, iterations: Int) -> String {
        var rng = KDRandom(keys: 0x7EAC, UInt64(c.cin), UInt64(c.size))
        let x = Tensor.randn([c.batch, c.size, c.size, c.cin], rng: &rng)
        let w = Tensor.randn([c.cout, 3, 3, c.cin], std: Float((2.0 / Double(9 * c.cout)).squareRoot()), rng: &rng)
        let bias = Tensor.randn([c.cout], rng: &rng)
        let residual = Tensor.randn([c.batch, c.size, c.size, c.cout], rng: &rng)
        let out = Tensor(uninitializedShape: residual.shape)
        let filter = WinogradFilter(weight: w.ptr, cout: c.cout, cin: c.cin, variant: .f4)
        let tiles = c.batch * ((c.size + 3) / 4) * ((c.size + 3) / 4)
        let v = Tensor.randn([tiles, c.cin], rng: &rng), m = Tensor(uninitializedShape: [tiles, c.cout])
        let (layer, gemm) = bestPairMs(iterations, op: {
            winogradConvolve(x.ptr, n: c.batch, h: c.size, w: c.size, padding: 1, filter: filter, bias: bias.ptr,
                             residual: residual.ptr, relu: true, out: out.ptr)
        }, gemm: {
            for xi in 0..<36 {
                RowInvariantGEMM.multiply(m: tiles, a: v.ptr, lda: c.cin, b: filter.panels[xi], c: m.ptr,
                                          ldc: c.cout, accumulate: false)
            }
        })
        let tiling = WinogradTiling(variant: .f4, h: c.size, w: c.size, padding: 1)
        let chunk = WinogradWorkspace.tilesPerChunk(total: tiles, alpha: 6, cin: c.cin, cout: c.cout)
        let vLayout = WinogradLayout(variant: .f4, tiles: chunk, channels: c.cin)
        let mLayout = WinogradLayout(variant: .f4, tiles: chunk, channels: c.cout)
        let vChunk = Tensor(shape: [vLayout.count], repeating: 0), mChunk = Tensor.randn([mLayout.count], rng: &rng)
        let scratch = UnsafeMutablePointer<WVec>.allocate(capacity: 2 * 36)   // 2·α², as winogradConvolve's
        defer { scratch.deallocate() }
        func inputTransform(_ range: Range<Int>) {
            for t0 in stride(from: range.lowerBound, to: range.upperBound, by: chunk) {
                winogradInputTransform(x.ptr, cin: c.cin, tiling: tiling, tiles: t0..<min(range.upperBound, t0 + chunk),
                                       into: vChunk.ptr, layout: vLayout, scratch: scratch)
            }
        }
        let (input, output) = bestPairMs(iterations, op: { inputTransform(0..<tiles) }, gemm: {
            for t0 in stride(from: 0, to: tiles, by: chunk) {
                winogradOutputTransform(mChunk.ptr, cout: c.cout, tiling: tiling, tiles: t0..<min(tiles, t0 + chunk),
                                        layout: mLayout, bias: bias.ptr, residual: residual.ptr, relu: true,
                                        out: out.ptr, scratch: scratch)
            }
        })
        let (cached, _) = bestPairMs(iterations, op: {
            for _ in 0..<c.batch { inputTransform(0..<tiling.perImage) }
        }, gemm: {})
        let (bank, flipped) = bestPairMs(iterations, op: {
            _ = WinogradFilter(weight: w.ptr, cout: c.cout, cin: c.cin, variant: .f4)
        }, gemm: {
            _ = WinogradFilter(weight: w.ptr, cout: c.cout, cin: c.cin, variant: .f4, flipTransposed: true)
        })
        let direct = 2 * Double(c.batch * c.size * c.size) * Double(9 * c.cin * c.cout)
        let gemmFlops = 2 * 36 * Double(tiles) * Double(c.cin * c.cout)
        let shape = "\(c.batch)x\(c.size)x\(c.size)x\(c.cin)->\(c.cout) k3 s1 p1"
        return "{\"op\":\"teacher_layer_f4\",\"shape\":\"\(shape)\",\"ms\":\(fmt(layer.best)),"
            + "\"gflops\":\(fmt(direct / (layer.best * 1e6))),\"gemm_ms\":\(fmt(gemm.best)),"
            + "\"gemm_gflops\":\(fmt(gemmFlops / (gemm.best * 1e6))),"
            + "\"transform_ms\":\(fmt(layer.best - gemm.best)),\"input_transform_ms\":\(fmt(input.best)),"
            + "\"output_transform_ms\":\(fmt(output.best)),\"input_transform_cached_ms\":\(fmt(cached.best)),"
            + "\"filter_bank_ms\":\(fmt(bank.best)),"
            + "\"flipped_bank_ms\":\(fmt(flipped.best)),\"clock\":\"\(clockName)\","
            + "\"gemm_kernel\":\"\(RowInvariantGEMM.wideKernel ? "avx512 12x32" : "avx2 6x16")\"}"
    }

    /// A stride-2 3×3 layer with padding 1 as inference runs it (weights prepared once, bias, ReLU): `ms` by
    /// the strided Winograd F(4×4, 2×2) over the input's phases (`stridedWinogradConvolve`), `direct_ms` by
    /// im2col + GEMM (`FusedConv`, direct), alternating; `ratio` = `direct_ms / ms`; `gflops` effective (the
    /// direct algorithm's FLOPs over the time); `filter_bank_ms` makes the strided bank (a trained student
    /// makes it each step); `max_rel_err` = `max|Δ| / max|y|` against the direct result. `train_ms` and
    /// `direct_train_ms`: a student's forward and backward (`conv2d` with `winograd4` — the strided forward and
    /// input gradient, the direct weight gradient, both banks made in the call — and with `direct`), alternating.
    static func stridedLayerLine(_ c: ConvCase, iterations: Int) -> String {
        var rng = KDRandom(keys: 0x57D2, UInt64(c.cin), UInt64(c.size))
        let x = Tensor.randn([c.batch, c.size, c.size, c.cin], rng: &rng)
        let w = Tensor.randn([c.cout, 3, 3, c.cin], std: Float((2.0 / Double(9 * c.cout)).squareRoot()), rng: &rng)
        let bias = Tensor.randn([c.cout], rng: &rng)
        let ho = (c.size - 1) / 2 + 1
        let out = Tensor(uninitializedShape: [c.batch, ho, ho, c.cout]), ref = Tensor(uninitializedShape: out.shape)
        let filter = StridedWinogradFilter(weight: w.ptr, cout: c.cout, cin: c.cin)
        let direct = FusedConv(weight: w, bias: bias, stride: 2, padding: 1, algorithm: .direct)
        var scratch: Tensor? = nil
        let (strided, plain) = bestPairMs(iterations, op: {
            stridedWinogradConvolve(x.ptr, n: c.batch, h: c.size, w: c.size, filter: filter, bias: bias.ptr,
                                    residual: nil, relu: true, out: out.ptr)
        }, gemm: {
            direct.run(x.ptr, n: c.batch, h: c.size, w: c.size, residual: nil, relu: true, out: ref.ptr,
                       scratch: &scratch)
        })
        let bank = bestMs(iterations) { _ = StridedWinogradFilter(weight: w.ptr, cout: c.cout, cin: c.cin) }
        let gy = Tensor.randn(out.shape, rng: &rng)
        func train(_ a: ConvAlgorithm) {
            x.requiresGrad = true; w.requiresGrad = true; x.grad = nil; w.grad = nil
            defer { x.requiresGrad = false; w.requiresGrad = false; x.grad = nil; w.grad = nil; Tape.reset() }
            Tape.reset()
            guard let y = try? conv2d(x, weight: w, bias: nil, stride: 2, padding: 1, algorithm: a) else { return }
            Tape.backward(y, seed: gy)
        }
        let (trainStrided, trainDirect) = bestPairMs(iterations, op: { train(.winograd4) }, gemm: { train(.direct) })
        let flops = 2 * Double(c.batch * ho * ho) * Double(9 * c.cin * c.cout)
        let shape = "\(c.batch)x\(c.size)x\(c.size)x\(c.cin)->\(c.cout) k3 s2 p1"
        return "{\"op\":\"strided_layer_f4\",\"shape\":\"\(shape)\",\"ms\":\(fmt(strided.best)),"
            + "\"gflops\":\(fmt(flops / (strided.best * 1e6))),\"direct_ms\":\(fmt(plain.best)),"
            + "\"direct_gflops\":\(fmt(flops / (plain.best * 1e6))),\"ratio\":\(fmt(plain.best / strided.best)),"
            + "\"filter_bank_ms\":\(fmt(bank.best)),\"max_rel_err\":\"\(relativeError(out, ref))\","
            + "\"train_ms\":\(fmt(trainStrided.best)),\"direct_train_ms\":\(fmt(trainDirect.best)),"
            + "\"clock\":\"\(clockName)\"}"
    }

    /// The fused teacher as the step runs it (`FusedResNet`, eval mode; direct below
    /// `ConvAlgorithmTuner.stemChannels` input channels as the `auto` rule, else F(4×4) — on the stride-2 layers
    /// F(4×4, 2×2) —, which the rule picks on every such layer of the bench configs' resnet32x4, its errors
    /// within tolerance): `ms` with its stages in
    /// groups of images (the default), `whole_batch_ms` with each layer over the whole batch at once,
    /// alternating; `ratio` = `whole_batch_ms / ms`. Both give the same bits
    /// (`FusedResNetTests.testImageGroupsKeepTheBits`).
    static func fusedTeacherLine(_ t: FusedTeacherCase, iterations: Int) throws -> String {
        let model = try ModelZoo.make(name: t.network, classes: 100, inputChannels: 3, imageSize: [t.size, t.size],
                                      seed: 1)
        model.eval()
        for (_, m) in model.namedModules() {
            guard let conv = m as? Conv2d, conv.winogradApplies || conv.stridedWinogradApplies else { continue }
            conv.algorithm = conv.inChannels < ConvAlgorithmTuner.stemChannels ? .direct : .winograd4
        }
        guard let fused = FusedResNet(model) else {
            throw TensorError.invalidArgument(op: "teacher_fused", message: "\(t.network) is not a ResNet")
        }
        var rng = KDRandom(keys: 0xF05E, UInt64(t.size))
        let x = Tensor.randn([t.batch, t.size, t.size, 3], rng: &rng)
        defer { FusedResNet.tilesPerGroup = nil }
        let (grouped, whole) = try bestPairMs(iterations, op: {
            FusedResNet.tilesPerGroup = nil
            _ = try fused(x)
        }, gemm: {
            FusedResNet.tilesPerGroup = Int.max
            _ = try fused(x)
        })
        return "{\"op\":\"teacher_fused\",\"shape\":\"\(t.network) \(t.batch)x\(t.size)x\(t.size)x3\","
            + "\"ms\":\(fmt(grouped.best)),\"whole_batch_ms\":\(fmt(whole.best)),"
            + "\"ratio\":\(fmt(whole.best / grouped.best)),\"clock\":\"\(clockName)\",\"threads\":\(blasThreads())}"
    }

    /// `max |a − b| / max |b|`, printed `%.2e`.
    static func relativeError(_ a: Tensor, _ b: Tensor) -> String {
        var maxB: Float = 0, maxD: Float = 0
        for i in 0..<b.count { maxB = max(maxB, abs(b.ptr[i])); maxD = max(maxD, abs(a.ptr[i] - b.ptr[i])) }
        return String(format: "%.2e", Double(maxD / max(maxB, 1e-30)))
    }

    /// `RowInvariantGEMM.multiply` (B packed beforehand, as the teacher packs its weights once) against
    /// `cblas_sgemm` on the same `C[m, n] = A[m, k] · B[k, n]`.
    static func benchRowInvariantGEMM(m: Int, k: Int, n: Int, iterations: Int) -> String {
        var rng = KDRandom(keys: 31, UInt64(m), UInt64(k))
        let a = Tensor.randn([m, k], rng: &rng), b = Tensor.randn([k, n], rng: &rng)
        let c = Tensor(shape: [m, n], repeating: 0), packed = RowInvariantGEMM.Packed(b.ptr, k: k, n: n, ldb: n)
        let (ms, gemmMs) = bestPairMs(iterations, op: {
            RowInvariantGEMM.multiply(m: m, a: a.ptr, lda: k, b: packed, c: c.ptr, ldc: n, accumulate: false)
        }, gemm: {
            sgemm(m: m, n: n, k: k, a: a.ptr, lda: k, b: b.ptr, ldb: n, beta: 0, c: c.ptr, ldc: n)
        })
        return gemmLine(op: "row_invariant_gemm", shape: "\(m)x\(k)x\(n)", ms: ms, gemmMs: gemmMs,
                        flops: 2 * Double(m * k * n))
    }

    static func benchLinear(n: Int, fin: Int, fout: Int, iterations: Int) throws -> String {
        guard n >= 1, fin >= 1, fout >= 1 else {
            throw TensorError.invalidArgument(op: "linear",
                                              message: "bench sizes \(n)×\(fin)→\(fout) must be positive")
        }
        var rng = KDRandom(keys: 0xBE4D, UInt64(fin), UInt64(fout))
        let x = Tensor.randn([n, fin], rng: &rng), w = Tensor.randn([fout, fin], std: 0.05, rng: &rng)
        let b = Tensor.randn([fout], rng: &rng), gy = Tensor.randn([n, fout], rng: &rng)
        x.requiresGrad = true; w.requiresGrad = true; b.requiresGrad = true
        let y = Tensor(uninitializedShape: [n, fout]), dx = Tensor(uninitializedShape: [n, fin])
        let dw = Tensor(uninitializedShape: [fout, fin])
        let (opMs, gemmMs) = try bestPairMs(iterations, op: {
            x.grad = nil; w.grad = nil; b.grad = nil
            let y = try linear(x, weight: w, bias: b)
            Tape.backward(y, seed: gy)
        }, gemm: {
            sgemm(transB: true, m: n, n: fout, k: fin, a: x.ptr, lda: fin, b: w.ptr, ldb: fin, c: y.ptr, ldc: fout)
            sgemm(m: n, n: fin, k: fout, a: gy.ptr, lda: fout, b: w.ptr, ldb: fin, c: dx.ptr, ldc: fin)
            sgemm(transA: true, m: fout, n: fin, k: n, a: gy.ptr, lda: fout, b: x.ptr, ldb: fin, c: dw.ptr, ldc: fin)
        })
        x.grad = nil; w.grad = nil; b.grad = nil
        let flops = 3 * 2 * Double(n) * Double(fin) * Double(fout)
        return gemmLine(op: "linear", shape: "\(n)x\(fin)->\(fout)", ms: opMs, gemmMs: gemmMs, flops: flops)
    }

    /// BatchNorm's forward and backward in training; `blockReLU`: as the bench step's student runs it, block
    /// BatchNorm over blocks of the whole batch with the ReLU fused (`batchNormBlockReLU`).
    static func benchBatchNorm(_ shape: [Int], blockReLU: Bool = false, iterations: Int) throws -> String {
        var rng = KDRandom(keys: 0xBE4E, UInt64(shape.last!))
        let c = shape.last!
        let x = Tensor.randn(shape, rng: &rng), gy = Tensor.randn(shape, rng: &rng)
        let gamma = Tensor(shape: [c], repeating: 1), beta = Tensor.zeros([c])
        let rm = Tensor.zeros([c]), rv = Tensor(shape: [c], repeating: 1)
        x.requiresGrad = true; gamma.requiresGrad = true; beta.requiresGrad = true
        let ms = try bestMs(iterations) {
            x.grad = nil; gamma.grad = nil; beta.grad = nil
            let y = try batchNorm(x, gamma: gamma, beta: beta, runningMean: rm, runningVar: rv, training: true,
                                  blockRows: blockReLU ? shape[0] : nil, relu: blockReLU)
            Tape.backward(y, seed: gy)
        }
        x.grad = nil
        // Forward reads x twice and writes y; backward reads x, dy twice and writes dx (+ seed copy).
        let bytes = Double(x.count) * 4 * 8
        return memoryLine(op: blockReLU ? "batchNormBlockReLU" : "batchNorm",
                          shape: shape.map(String.init).joined(separator: "x"), ms: ms, bytes: bytes)
    }

    static func benchMaxPool(_ shape: [Int], iterations: Int) throws -> String {
        var rng = KDRandom(keys: 0xBE4F)
        let x = Tensor.randn(shape, rng: &rng)
        x.requiresGrad = true
        let outShape = [shape[0], (shape[1] + 2 - 3) / 2 + 1, (shape[2] + 2 - 3) / 2 + 1, shape[3]]
        let gy = Tensor.randn(outShape, rng: &rng)
        let ms = try bestMs(iterations) {
            x.grad = nil
            let y = try maxPool2d(x, kernel: 3, stride: 2, padding: 1)
            Tape.backward(y, seed: gy)
        }
        x.grad = nil
        let bytes = Double(x.count) * 4 * 2 + Double(gy.count) * 4 * 4
        return memoryLine(op: "maxPool2d", shape: shape.map(String.init).joined(separator: "x") + " k3 s2 p1",
                          ms: ms, bytes: bytes)
    }

    static func benchGlobalAvgPool(_ shape: [Int], iterations: Int) throws -> String {
        var rng = KDRandom(keys: 0xBE50)
        let x = Tensor.randn(shape, rng: &rng)
        x.requiresGrad = true
        let gy = Tensor.randn([shape[0], shape[3]], rng: &rng)
        let ms = try bestMs(iterations) {
            x.grad = nil
            let y = try globalAvgPool(x)
            Tape.backward(y, seed: gy)
        }
        x.grad = nil
        return memoryLine(op: "globalAvgPool", shape: shape.map(String.init).joined(separator: "x"),
                          ms: ms, bytes: Double(x.count) * 4 * 2)
    }

    // MARK: - Timing and formatting

    /// Best-of-N wall time and calling-thread CPU time, in milliseconds.
    struct Timing {
        var wall = Double.infinity, cpu = Double.infinity
        /// The clock the GFLOP/s use: thread CPU time with one BLAS thread (all work runs on this thread,
        /// and time the scheduler gives to other processes is not counted), wall time otherwise.
        var best: Double { blasThreads() == 1 ? cpu : wall }
        mutating func measure(_ body: () throws -> Void) rethrows {
            let w0 = DispatchTime.now().uptimeNanoseconds, c0 = threadCPUNanoseconds()
            try body()
            cpu = min(cpu, Double(threadCPUNanoseconds() - c0) / 1e6)
            wall = min(wall, Double(DispatchTime.now().uptimeNanoseconds - w0) / 1e6)
        }
    }

    static func threadCPUNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    static var clockName: String { blasThreads() == 1 ? "thread_cpu" : "wall" }

    /// Best-of-`iterations` times of `body`, after one warm-up run.
    static func bestMs(_ iterations: Int, _ body: () throws -> Void) rethrows -> Timing {
        try body()
        var t = Timing()
        for _ in 0..<iterations { try t.measure(body) }
        return t
    }

    /// Best-of-`iterations` times of `op` and `gemm`, run alternately so that load from other
    /// processes affects both alike.
    static func bestPairMs(_ iterations: Int, op: () throws -> Void,
                           gemm: () throws -> Void) rethrows -> (Timing, Timing) {
        try op(); try gemm()
        var a = Timing(), b = Timing()
        for _ in 0..<iterations { try a.measure(op); try b.measure(gemm) }
        return (a, b)
    }

    static func fmt(_ v: Double) -> String { String(format: "%.3f", v) }

    static func gemmLine(op: String, shape: String, ms: Timing, gemmMs: Timing, flops: Double) -> String {
        let gf = flops / (ms.best * 1e6), sg = flops / (gemmMs.best * 1e6)
        return "{\"op\":\"\(op)\",\"shape\":\"\(shape)\",\"ms\":\(fmt(ms.wall)),\"gflops\":\(fmt(gf)),"
            + "\"sgemm_gflops\":\(fmt(sg)),\"ratio\":\(fmt(gf / sg)),\"cpu_ms\":\(fmt(ms.cpu)),"
            + "\"sgemm_ms\":\(fmt(gemmMs.wall)),\"clock\":\"\(clockName)\",\"threads\":\(blasThreads())}"
    }

    static func memoryLine(op: String, shape: String, ms: Timing, bytes: Double) -> String {
        "{\"op\":\"\(op)\",\"shape\":\"\(shape)\",\"ms\":\(fmt(ms.wall)),\"gflops\":null,\"sgemm_gflops\":null,"
            + "\"ratio\":null,\"gbps\":\(fmt(bytes / (ms.best * 1e6))),\"cpu_ms\":\(fmt(ms.cpu)),"
            + "\"clock\":\"\(clockName)\",\"threads\":\(blasThreads())}"
    }
}
