import XCTest
import KDFormats
import KDTensor
import KDTestSupport
@testable import KDModels

final class CheckpointTests: XCTestCase {
    var tmp: TemporaryDirectory!
    var dir: String { tmp.path }

    override func setUpWithError() throws { tmp = try TemporaryDirectory(prefix: "kdckpt-") }

    override func tearDownWithError() throws { tmp?.remove() }

    /// A resnet8 with non-trivial buffers and an SGD optimizer that has taken one step.
    func trainedLike(seed: UInt64) throws -> (any Classifier, SGD) {
        let m = try ModelZoo.make(name: "resnet8", classes: 10, seed: seed)
        var rng = KDRandom(keys: seed, 99)
        for (n, b) in m.namedBuffers() {
            if n.hasSuffix("num_batches_tracked") {
                b.ptr[0] = 5
            } else {
                for i in 0..<b.count { b.ptr[i] = rng.nextFloat() + 0.5 }
            }
        }
        let opt = try SGD(parameters: m.namedParameters(), learningRate: 0.1, momentum: 0.9)
        for (_, p) in m.namedParameters() { p.grad = Tensor.randn(p.shape, std: 0.1, rng: &rng) }
        try opt.step()
        return (m, opt)
    }

    func testRoundTripBitIdentical() throws {
        let (a, optA) = try trainedLike(seed: 1)
        let path = dir + "/ckpt.safetensors"
        let extra = Tensor(shape: [2], data: [3, 4])
        XCTAssertTrue(try Checkpoint.save(path: path, model: a, optimizer: optA, extraTensors: [("state.extra", extra)],
                                          metadata: ["step": "17", "epoch": "2", "rng": "12345"]))
        let (b, optB) = try trainedLike(seed: 2)
        let meta = try Checkpoint.load(path: path, into: b, optimizer: optB)
        XCTAssertEqual(meta["step"], "17")
        XCTAssertEqual(meta["epoch"], "2")
        XCTAssertEqual(meta["optim.step_count"], "1")
        XCTAssertEqual(meta[Safetensors.checksumKey]?.count, 64)
        for (x, y) in zip(a.stateEntries(), b.stateEntries()) {
            XCTAssertEqual(x.name, y.name)
            XCTAssertEqual(x.tensor.array.map(\.bitPattern), y.tensor.array.map(\.bitPattern), x.name)
        }
        for ((n, x), (_, y)) in zip(optA.stateTensors(), optB.stateTensors()) {
            XCTAssertEqual(x.array.map(\.bitPattern), y.array.map(\.bitPattern), n)
        }
        XCTAssertEqual(optB.stepCount, 1)
        // The weights file is exactly the model's state_dict; the training state sits beside it.
        let w = try Checkpoint.read(path: path)
        XCTAssertEqual(w.names, a.stateEntries().map(\.name))
        XCTAssertEqual(Checkpoint.statePath(of: path), dir + "/ckpt.state.safetensors")
        let f = try XCTUnwrap(try Checkpoint.readState(path: path, weights: w))
        XCTAssertEqual(f.file, dir + "/ckpt.state.safetensors")
        XCTAssertEqual(try f.tensor("state.extra").floatValues(), [3, 4])
        XCTAssertTrue(f.names.contains("optim.layer1.0.conv1.weight.momentum_buffer"))
        XCTAssertEqual(f.metadata[Checkpoint.weightsChecksumKey], w.metadata[Safetensors.checksumKey])
        XCTAssertEqual(f.metadata["step"], "17")
        // Issue 24 item 11: the state file named where weights are expected says what it is.
        let expected = "is a checkpoint's optimizer-state file, not its weights: use the weights file beside it, "
            + path
        for read in [{ _ = try Checkpoint.read(path: f.file) }, { try Checkpoint.loadWeights(path: f.file, into: b) }] {
            XCTAssertThrowsError(try read()) { XCTAssertTrue("\($0)".contains(expected), "\($0)") }
        }
    }

    /// A state file from another write of the weights (a crash between the two writes) is refused.
    func testMismatchedStateFileIsRefused() throws {
        let (a, opt) = try trainedLike(seed: 1)
        let path = dir + "/p.safetensors"
        try Checkpoint.save(path: path, model: a, optimizer: opt, metadata: ["step": "1"])
        let oldState = try SafetensorsIO.readAll(path: Checkpoint.statePath(of: path))
        try Checkpoint.save(path: path, model: a, optimizer: opt, metadata: ["step": "2"])
        try Data(oldState).write(to: URL(fileURLWithPath: Checkpoint.statePath(of: path)))
        XCTAssertThrowsError(try Checkpoint.load(path: path, into: a, optimizer: opt)) {
            XCTAssertTrue("\($0)".contains("p.state.safetensors: was written with other weights than \(path)"), "\($0)")
        }
        try FileManager.default.removeItem(atPath: Checkpoint.statePath(of: path))
        XCTAssertThrowsError(try Checkpoint.load(path: path, into: a, optimizer: opt)) {
            XCTAssertTrue("\($0)".contains("no optimizer state (neither \(self.dir)/p.state.safetensors"), "\($0)")
        }
    }

    /// Checkpoints written before the split (optimizer and state tensors inside the weights file, data
    /// checksum only) still resume.
    func testOldSingleFileCheckpointIsRead() throws {
        let (a, opt) = try trainedLike(seed: 1)
        var tensors = Checkpoint.modelTensors(a)
        let layouts = Dictionary(uniqueKeysWithValues: a.stateEntries().map { ($0.name, $0.layout) })
        for (n, t) in opt.stateTensors() {
            let layout = layouts[Checkpoint.paramName(ofSlot: n)]!
            tensors.append(("optim." + n, Checkpoint.export(t, layout: layout, integer: false)))
        }
        let bytes = try Safetensors.serialize(tensors,
                                              metadata: ["optim.step_count": "1", "optim.kind": "SGD", "step": "5"])
        // The older writer's data-section checksum, added to an otherwise identical header.
        let f = try Safetensors.parse(bytes)
        var data = [UInt8](); for n in f.names { data += f.tensors[n]!.bytes }
        let header = #""__metadata__":{"#
        let text = String(decoding: bytes, as: UTF8.self)
        XCTAssertTrue(text.contains(header))
        let withDigest = editedHeader(bytes) {
            $0.replacingOccurrences(of: header, with: header + #""kdgraph.data_sha256":""# + sha256Hex(data) + #"","#)
        }
        let path = dir + "/old.safetensors"
        try Data(withDigest).write(to: URL(fileURLWithPath: path))
        let (b, optB) = try trainedLike(seed: 2)
        let meta = try Checkpoint.load(path: path, into: b, optimizer: optB)
        XCTAssertEqual(meta["step"], "5")
        XCTAssertEqual(optB.stepCount, 1)
        XCTAssertEqual(b.namedParameters()[0].1.array, a.namedParameters()[0].1.array)
        XCTAssertEqual(optB.stateTensors()[0].1.array, opt.stateTensors()[0].1.array)
    }

    /// As PyTorch does: a state_dict without num_batches_tracked loads (the counters start at 0), and
    /// 16-bit floats are converted with a warning naming the file.
    func testPyTorchStyleFilesLoad() throws {
        let (a, _) = try trainedLike(seed: 1)
        let path = dir + "/torch.safetensors"
        var tensors = Checkpoint.modelTensors(a).filter { !$0.0.hasSuffix("num_batches_tracked") }
        let i = tensors.firstIndex { $0.0 == "fc.bias" }!
        let halves = tensors[i].1.floatValues().map { Float16($0).bitPattern }
        var raw = [UInt8](); for h in halves { raw += [UInt8(h & 0xFF), UInt8(h >> 8)] }
        tensors[i].1 = SafetensorsTensor(dtype: .F16, shape: tensors[i].1.shape, bytes: raw)
        try Safetensors.write(tensors, to: path)
        var warnings: [String] = []
        let saved = Checkpoint.warn
        Checkpoint.warn = { warnings.append($0) }
        defer { Checkpoint.warn = saved }
        let (b, _) = try trainedLike(seed: 2)
        try Checkpoint.loadWeights(path: path, into: b)
        XCTAssertEqual(warnings, ["checkpoint \(path): 1 tensor(s) stored in 16-bit floats (fc.bias) "
                                  + "converted to float32: their values carry 16-bit precision only"])
        for (n, t) in b.namedBuffers() where n.hasSuffix("num_batches_tracked") { XCTAssertEqual(t.array, [0], n) }
        let fcBias = b.namedParameters().first { $0.0 == "fc.bias" }!.1.array
        XCTAssertEqual(fcBias, a.namedParameters().first { $0.0 == "fc.bias" }!.1.array.map { Float(Float16($0)) })
    }

    /// Conv weights are stored as PyTorch's [Cout, Cin, kh, kw]; num_batches_tracked as int64.
    func testPyTorchLayout() throws {
        let m = try ModelZoo.make(name: "resnet8", classes: 10, seed: 5) as! ResNet
        let path = dir + "/w.safetensors"
        try Checkpoint.save(path: path, model: m)
        let f = try Checkpoint.read(path: path)
        let w = try f.tensor("conv1.weight")
        XCTAssertEqual(w.shape, [16, 3, 3, 3])
        let inner = m.conv1.weight  // [16, 3(kh), 3(kw), 3(Cin)]
        let v = w.floatValues()
        // PyTorch [o=2, c=1, y=0, x=2] == internal [o=2, y=0, x=2, c=1]
        XCTAssertEqual(v[((2 * 3 + 1) * 3 + 0) * 3 + 2], inner.ptr[((2 * 3 + 0) * 3 + 2) * 3 + 1])
        XCTAssertEqual(try f.tensor("bn1.num_batches_tracked").dtype, .I64)
        XCTAssertEqual(try f.tensor("bn1.num_batches_tracked").shape, [])
        XCTAssertEqual(try f.tensor("fc.weight").shape, [10, 64])
        XCTAssertEqual(f.names.count, m.stateEntries().count)
    }

    func testCorruptedByteIsDetected() throws {
        let (a, _) = try trainedLike(seed: 1)
        let path = dir + "/c.safetensors"
        try Checkpoint.save(path: path, model: a)
        var bytes = try SafetensorsIO.readAll(path: path)
        bytes[bytes.count - 1000] ^= 0x10
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try Checkpoint.load(path: path, into: a)) { e in
            let m = "\(e)"
            XCTAssertTrue(m.contains(path) && m.contains("checksum mismatch"), m)
        }
    }

    /// Issue 18 item 4: a resumed run must not start from an edited header. Flipping the step and
    /// swapping two same-sized tensors' offsets are both refused, naming the file.
    func testEditedHeaderIsDetected() throws {
        let (a, opt) = try trainedLike(seed: 1)
        let path = dir + "/h.safetensors"
        try Checkpoint.save(path: path, model: a, optimizer: opt, metadata: ["kdgraph.step": "10"])
        let bytes = try SafetensorsIO.readAll(path: path)
        func edited(_ edit: (String) -> String) -> [UInt8] { editedHeader(bytes, edit) }
        // bn1.weight and bn1.bias are both F32 [16]: their offsets swap without any structural error.
        func offsets(_ header: String, _ name: String) -> String {
            let rest = header[header.range(of: "\"\(name)\":{")!.upperBound...]
            let start = rest.range(of: "\"data_offsets\":")!.upperBound
            return String(rest[start...].prefix { $0 != "]" }) + "]"
        }
        let cases = [
            edited { $0.replacingOccurrences(of: #""kdgraph.step":"10""#, with: #""kdgraph.step":"11""#) },
            edited { h in
                let (w, b) = (offsets(h, "bn1.weight"), offsets(h, "bn1.bias"))
                return h.replacingOccurrences(of: w, with: "@").replacingOccurrences(of: b, with: w)
                    .replacingOccurrences(of: "@", with: b)
            },
        ]
        for c in cases {
            XCTAssertNotEqual(c, bytes)
            try Data(c).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try Checkpoint.load(path: path, into: a, optimizer: opt)) { e in
                let m = "\(e)"
                XCTAssertTrue(m.contains(path) && m.contains("checksum mismatch"), m)
            }
        }
    }

    func testTruncatedFileIsDetected() throws {
        let (a, _) = try trainedLike(seed: 1)
        let path = dir + "/t.safetensors"
        try Checkpoint.save(path: path, model: a)
        let bytes = try SafetensorsIO.readAll(path: path)
        for keep in [4, 100, bytes.count - 7] {
            try Data(bytes.prefix(keep)).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try Checkpoint.load(path: path, into: a)) { e in
                let m = "\(e)"
                XCTAssertTrue(m.contains(path) && m.contains("truncated"), m)
            }
        }
    }

    func testMismatchedModelListsDifferences() throws {
        let a = try ModelZoo.make(name: "resnet8", classes: 10)
        let path = dir + "/m.safetensors"
        try Checkpoint.save(path: path, model: a)
        let wider = try ModelZoo.make(name: "resnet8", classes: 100)
        XCTAssertThrowsError(try Checkpoint.load(path: path, into: wider)) {
            XCTAssertEqual("\($0)", "checkpoint \(path): does not match the model: shape mismatch 2: "
                               + "fc.weight: checkpoint [10, 64] vs model [100, 64]; "
                               + "fc.bias: checkpoint [10] vs model [100]")
        }
        let deeper = try ModelZoo.make(name: "resnet14", classes: 10)
        XCTAssertThrowsError(try Checkpoint.load(path: path, into: deeper)) {
            let m = "\($0)"
            // num_batches_tracked may be absent
            XCTAssertTrue(m.contains("missing 30: layer1.1.conv1.weight, layer1.1.bn1.weight"), m)
            XCTAssertFalse(m.contains("unexpected"), m)
        }
        let b = try ModelZoo.make(name: "resnet14", classes: 10)
        let path2 = dir + "/m2.safetensors"
        try Checkpoint.save(path: path2, model: b)
        XCTAssertThrowsError(try Checkpoint.load(path: path2, into: a)) {
            XCTAssertTrue("\($0)".contains("unexpected 36: layer1.1.conv1.weight"), "\($0)")
        }
    }

    func testOptimizerStateRequiredWhenAsked() throws {
        let a = try ModelZoo.make(name: "resnet8", classes: 10)
        let path = dir + "/noopt.safetensors"
        try Checkpoint.save(path: path, model: a)
        let opt = try SGD(parameters: a.namedParameters(), learningRate: 0.1, momentum: 0.9)
        XCTAssertThrowsError(try Checkpoint.load(path: path, into: a, optimizer: opt)) {
            XCTAssertTrue("\($0)".contains("no optimizer state"), "\($0)")
        }
        let (b, sgd) = try trainedLike(seed: 1)
        try Checkpoint.save(path: path, model: b, optimizer: sgd)
        XCTAssertThrowsError(try Checkpoint.load(path: path, into: b,
                                                 optimizer: try AdamW(parameters: b.namedParameters()))) {
            XCTAssertEqual("\($0)",
                           "checkpoint \(Checkpoint.statePath(of: path)): optimizer state is for SGD, not AdamW")
        }
        // Weights alone load from the same file.
        try Checkpoint.loadWeights(path: path, into: a)
    }

    func testUnwritableLocationKeepsPreviousCheckpoint() throws {
        let a = try ModelZoo.make(name: "resnet8", classes: 10, seed: 1)
        XCTAssertThrowsError(try Checkpoint.save(path: dir + "/no/such/dir/x.safetensors", model: a)) {
            XCTAssertTrue("\($0)".contains("cannot create temporary file"), "\($0)")
        }
        let path = dir + "/keep.safetensors"
        try Checkpoint.save(path: path, model: a)
        let before = try SafetensorsIO.readAll(path: path)
        // Block the temporary file's name with a directory: the write fails before the rename.
        let tmp = dir + "/.keep.safetensors.tmp-\(ProcessInfo.processInfo.processIdentifier)"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: false)
        let b = try ModelZoo.make(name: "resnet8", classes: 10, seed: 2)
        XCTAssertThrowsError(try Checkpoint.save(path: path, model: b)) {
            XCTAssertTrue("\($0)".contains("cannot write"), "\($0)")
        }
        XCTAssertEqual(try SafetensorsIO.readAll(path: path), before)
        try Checkpoint.load(path: path, into: b)
        XCTAssertEqual(b.namedParameters()[0].1.array, a.namedParameters()[0].1.array)
    }

    /// Issue 18 item 2: no checkpoint holds NaN/Inf. The writer names the tensor and the file, writes
    /// nothing, and leaves an earlier checkpoint at the same path as it was.
    func testNonFiniteTensorsAreRefused() throws {
        let (a, opt) = try trainedLike(seed: 1)
        let path = dir + "/nf.safetensors"
        try Checkpoint.save(path: path, model: a, optimizer: opt)
        let before = try SafetensorsIO.readAll(path: path)
        let rv = a.namedBuffers().first { $0.0 == "layer1.0.bn2.running_var" }!.1
        rv.ptr[3] = .infinity
        rv.ptr[5] = .nan
        XCTAssertThrowsError(try Checkpoint.save(path: path, model: a, optimizer: opt)) {
            XCTAssertEqual("\($0)", "checkpoint \(path): tensor 'layer1.0.bn2.running_var' holds 2 NaN/Inf value(s) "
                           + "of 16: a checkpoint is never written with non-finite values")
        }
        XCTAssertEqual(try SafetensorsIO.readAll(path: path), before)
        rv.ptr[3] = 1; rv.ptr[5] = 1
        let m = opt.stateTensors()[2].1
        m.ptr[0] = -.infinity
        XCTAssertThrowsError(try Checkpoint.save(path: path, model: a, optimizer: opt)) {
            XCTAssertTrue("\($0)".contains("tensor 'optim.\(opt.stateTensors()[2].0)' holds 1 NaN/Inf"), "\($0)")
        }
        m.ptr[0] = 0
        XCTAssertThrowsError(try Checkpoint.save(path: path, model: a,
                                                 extraTensors: [("state.head.w", Tensor(shape: [1], data: [.nan]))])) {
            XCTAssertTrue("\($0)".contains("tensor 'state.head.w' holds 1 NaN/Inf value(s) of 1"), "\($0)")
        }
    }

    /// `StepRollback` puts back parameters, buffers and optimizer state exactly as captured, and finds
    /// the first non-finite tracked tensor.
    func testStepRollbackRestoresEverything() throws {
        let (m, opt) = try trainedLike(seed: 3)
        let tracked = m.namedParameters() + m.namedBuffers()
        let rollback = StepRollback(tensors: tracked, optimizer: opt)
        func snapshot() -> [[UInt32]] {
            (tracked + opt.stateTensors()).map { $0.1.array.map(\.bitPattern) } + [[UInt32(opt.stepCount)]]
        }
        rollback.capture()
        let before = snapshot()
        XCTAssertNil(rollback.firstNonFinite())
        // A training-mode forward (running statistics), then an optimizer step (parameters, momentum).
        var rng = KDRandom(keys: 4, 4)
        m.train()
        _ = try m(Tensor.randn([4, 32, 32, 3], rng: &rng))
        Tape.reset()
        for (_, p) in m.namedParameters() { p.grad = Tensor.randn(p.shape, std: 1e30, rng: &rng) }
        try opt.step()
        XCTAssertNotEqual(snapshot(), before)
        XCTAssertEqual(opt.stepCount, 2)
        m.namedBuffers()[1].1.ptr[0] = .nan
        XCTAssertEqual(rollback.firstNonFinite()?.name, m.namedBuffers()[1].0)
        try rollback.restore()
        XCTAssertEqual(snapshot(), before)
        XCTAssertNil(rollback.firstNonFinite())
    }

    func testOnlyRankZeroWrites() throws {
        let a = try ModelZoo.make(name: "resnet8", classes: 10)
        let path = dir + "/r1.safetensors"
        XCTAssertFalse(try Checkpoint.save(path: path, model: a, rank: 1))
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
    }
}

/// Rewrites the JSON header of a safetensors file (the length prefix follows; the data is kept).
func editedHeader(_ bytes: [UInt8], _ edit: (String) -> String) -> [UInt8] {
    var n = 0
    for k in 0..<8 { n |= Int(bytes[k]) << (8 * k) }
    let header = Array(edit(String(decoding: bytes[8..<(8 + n)], as: UTF8.self)).utf8)
    var m = UInt64(header.count).littleEndian
    var out = [UInt8]()
    withUnsafeBytes(of: &m) { out.append(contentsOf: $0) }
    return out + header + bytes[(8 + n)...]
}
