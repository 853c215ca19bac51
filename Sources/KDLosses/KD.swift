import KDTensor

/// Knowledge distillation (Hinton et al. 2015; source: mdistiller `distillers/KD.py`), with an
/// optional supervised cross-entropy, as one fused op over the rows `rows` of global logits:
///
///     share = T² · (1/n) Σ_{i∈rows} KL(σ(z^T_i/T) ‖ σ(z^S_i/T))
///             +  w_CE · (1/n) Σ_{i∈rows} CE(z^S_i, y_i)
///
/// `n` (`count`) is the global number of rows, so the shares of disjoint row ranges add up to the
/// one-process loss. Backward:
/// `∂/∂z^S_i = (T/n)(σ(z^S_i/T) − σ(z^T_i/T)) + (w_CE/n)(σ(z^S_i) − onehot(y_i))`.
/// The student may be the gathered global matrix or only the local rows (`rows` indexes `student`).
/// Terms: `kd` and `ce` (shares, unweighted).
public func kdLoss(student: Tensor, teacher: Tensor, temperature: Float = KDTerm.defaultTemperature,
                   rows: Range<Int>? = nil, count: Int? = nil, labels: [Int]? = nil,
                   ceWeight: Float = 0) throws -> LossShare {
    let name = "kd"
    try check2D(name, "student logits", student)
    try check2D(name, "teacher logits", teacher, rows: student.shape[0], cols: student.shape[1])
    guard temperature > 0, temperature.isFinite else {
        throw LossError.invalidArgument(loss: name, message: "temperature must be > 0, got \(temperature)")
    }
    let n = student.shape[0], c = student.shape[1]
    let rows = rows ?? 0..<n
    try checkRows(name, rows, n)
    let total = count ?? n
    guard total > 0 else {
        throw LossError.invalidArgument(loss: name, message: "normaliser count must be > 0, got \(total)")
    }
    if ceWeight != 0 {
        guard let labels else { throw LossError.missingInput(loss: "kd (ce_weight \(ceWeight))", input: "labels") }
        guard labels.count == n else {
            throw LossError.invalidArgument(loss: name, message: "\(labels.count) labels for \(n) logit rows")
        }
    }
    let wantGrad = needsGrad(student)
    let grad: Tensor? = wantGrad ? Tensor.zeros([rows.count, c]) : nil    // the rows' gradient, row i at i − r0
    let r0 = rows.lowerBound
    let T = Double(temperature), invT = 1 / T
    var ls = [Double](repeating: 0, count: c), lt = [Double](repeating: 0, count: c)
    var kd = 0.0, ce = 0.0
    for i in rows {
        let zs = student.ptr + i * c, zt = teacher.ptr + i * c
        rowLogSoftmax(zs, count: c, invT: invT, into: &ls)
        rowLogSoftmax(zt, count: c, invT: invT, into: &lt)
        kd += rowKLDivergence(logP: lt, logQ: ls, count: c)
        if let g = grad {
            rowKLGradient(logP: lt, logQ: ls, count: c, scale: T / Double(total), into: g.ptr + (i - r0) * c,
                          accumulate: false)
        }
        if ceWeight != 0, let labels {
            let y = labels[i]
            guard y >= 0 && y < c else {
                throw LossError.invalidArgument(loss: "kd (ce)", message: "label \(y) of row \(i) outside 0..<\(c)")
            }
            ce += rowCrossEntropy(zs, count: c, label: y, scale: Double(ceWeight) / Double(total),
                                  grad: grad.map { $0.ptr + (i - r0) * c }, scratch: &ls)
        }
    }
    let kdShare = T * T * kd / Double(total), ceShare = ce / Double(total)
    let out = scalarTensor(kdShare + Double(ceWeight) * ceShare)
    recordFused(name, output: out, inputs: [student], rowGrads: [grad.map { RowGradient(rows: rows, values: $0) }])
    var terms: [(name: String, value: Double)] = [("kd", kdShare)]
    if ceWeight != 0 { terms.append(("ce", ceShare)) }
    return LossShare(value: out, terms: terms)
}

/// Supervised cross-entropy `(1/n) Σ_{i∈rows} −log σ(z_i)_{y_i}` as one fused op (`n` = `count`, the
/// global row count). Backward: `(σ(z_i) − onehot(y_i)) / n`. Term: `ce`.
public func crossEntropyLoss(logits: Tensor, labels: [Int], rows: Range<Int>? = nil,
                             count: Int? = nil) throws -> LossShare {
    let name = "ce"
    try check2D(name, "logits", logits)
    let n = logits.shape[0], c = logits.shape[1]
    guard labels.count == n else {
        throw LossError.invalidArgument(loss: name, message: "\(labels.count) labels for \(n) logit rows")
    }
    let rows = rows ?? 0..<n
    try checkRows(name, rows, n)
    let total = count ?? n
    guard total > 0 else {
        throw LossError.invalidArgument(loss: name, message: "normaliser count must be > 0, got \(total)")
    }
    let grad: Tensor? = needsGrad(logits) ? Tensor.zeros([rows.count, c]) : nil   // row i at i − rows.lowerBound
    var scratch = [Double](repeating: 0, count: c)
    var ce = 0.0
    for i in rows {
        guard labels[i] >= 0 && labels[i] < c else {
            throw LossError.invalidArgument(loss: name, message: "label \(labels[i]) of row \(i) outside 0..<\(c)")
        }
        ce += rowCrossEntropy(logits.ptr + i * c, count: c, label: labels[i], scale: 1 / Double(total),
                              grad: grad.map { $0.ptr + (i - rows.lowerBound) * c }, scratch: &scratch)
    }
    let share = ce / Double(total)
    let out = scalarTensor(share)
    recordFused(name, output: out, inputs: [logits], rowGrads: [grad.map { RowGradient(rows: rows, values: $0) }])
    return LossShare(value: out, terms: [("ce", share)])
}

/// `kd`: Hinton KD over all rows (`B·V`, normaliser `1/(B·V)`), optional supervised CE.
public struct KDTerm: LossTerm {
    public let kind = "kd"
    public var weight: Float, temperature: Float, ceWeight: Float
    public var needs: LossNeeds {
        ceWeight != 0 ? [.studentLogits, .teacherLogits, .labels] : [.studentLogits, .teacherLogits]
    }
    public func evaluate(_ x: LossInputs) throws -> LossShare {
        try x.validate(kind)
        let zs = try x.require(x.studentLogits, kind, "student logits")
        let zt = try x.require(x.teacherLogits, kind, "teacher logits")
        let labels = ceWeight != 0 ? try x.rowLabels("kd (ce_weight)") : nil
        return try kdLoss(student: zs, teacher: zt, temperature: temperature, rows: x.shardRows, count: x.rowCount,
                          labels: labels, ceWeight: ceWeight)
    }

    /// The `kd` keys, their defaults and ranges.
    public static let parameters: [LossParameter] = [
        .number("temperature", 4, min: 0, exclusiveMin: true),
        .number("ce_weight", 0, min: 0),
    ]
    /// The default temperature `T` (`kdLoss`'s default too).
    public static let defaultTemperature = LossParameterValues(defaults: parameters).float("temperature")

    public static let descriptor = LossDescriptor(kind: "kd", parameters: parameters,
                                                  fixtures: [("kd", runFixture)]) { weight, v in
        KDTerm(weight: weight, temperature: v.float("temperature"), ceWeight: v.float("ce_weight"))
    }

    /// Fixture `kd`: inputs `student_logits`, `teacher_logits`; parameter `temperature`.
    static func runFixture(_ f: any LossFixture) throws -> (loss: Double, outputs: [(String, Tensor)]) {
        let zs = try f.input("student_logits"), zt = try f.input("teacher_logits")
        zs.requiresGrad = true
        let rows = f.share(samples: zs.shape[0])
        let v = LossParameterValues(parameters, fixture: f)
        let r = try kdLoss(student: zs, teacher: zt, temperature: v.float("temperature"), rows: rows,
                           count: zs.shape[0])
        r.value.backward()
        return (Double(r.value.item), [("grad_student_logits", zs.grad ?? Tensor.zeros(zs.shape))])
    }
}

/// `ce`: supervised cross-entropy with the ground-truth labels.
public struct CETerm: LossTerm {
    public let kind = "ce"
    public var weight: Float
    public init(weight: Float) { self.weight = weight }
    public var needs: LossNeeds { [.studentLogits, .labels] }
    public func evaluate(_ x: LossInputs) throws -> LossShare {
        try x.validate(kind)
        let zs = try x.require(x.studentLogits, kind, "student logits")
        let s = try crossEntropyLoss(logits: zs, labels: try x.rowLabels(kind), rows: x.shardRows, count: x.rowCount)
        return LossShare(value: s.value, terms: [])     // one part: the objective's `loss/ce` is all
    }

    /// `{kind: ce, weight: 1}` (the objective of `mode: supervised`): no parameters.
    public static let descriptor = LossDescriptor(kind: "ce") { weight, _ in CETerm(weight: weight) }
}
