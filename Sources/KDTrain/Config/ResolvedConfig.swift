import Yams

/// The fully resolved configuration as YAML (defaults filled in), written to `output.dir/config.yaml`
/// and hashed into checkpoints as the config digest: the config model's encoding (ConfigCoding.swift),
/// every key in declaration order.
extension KDConfig {
    public var resolvedYAML: String {
        let body: String
        do { body = try Yams.serialize(node: try resolvedTree(), width: -1, allowUnicode: true) } catch {
            preconditionFailure("the config encodes to a YAML tree: \(error)")
        }
        return "# resolved KDGraph configuration (from \(file))\n" + body
    }

    /// The encoded config without what cannot apply to this run, so the file says what the run used: the
    /// synthetic-only sizes of a file source, and the teacher of a supervised run (reading the YAML back
    /// restores them as defaults, which nothing reads).
    func resolvedTree() throws -> Node {
        var unused: [String: Set<String>] = [:]
        if data.source != .synthetic { unused["data"] = ["train_size", "eval_size"] }
        let tree = try ConfigNodeEncoder.node(self)
        guard let sections = tree.mapping else { return tree }
        let pairs: [(Node, Node)] = sections.compactMap { key, value in
            let name = key.string ?? ""
            if name == "teacher" && mode == .supervised { return nil }
            guard let drop = unused[name], let fields = value.mapping else { return (key, value) }
            return (key, .mapping(Node.Mapping(fields.filter { !drop.contains($0.key.string ?? "") })))
        }
        return .mapping(Node.Mapping(pairs))
    }
}

extension KDConfig {
    /// The keys whose values differ between two resolved configs (`kdgraph.config` of a checkpoint and
    /// the current run), as `key: old → new`, in file order; keys only one of them has show `(none)`.
    /// A digest alone says that something changed, not what.
    public static func differences(from old: String, to new: String) -> [String] {
        func flatten(_ yaml: String) -> [(String, String)] {
            guard let root = try? Yams.compose(yaml: yaml) else { return [] }
            var out: [(String, String)] = []
            func walk(_ n: Node, _ path: String) {
                switch n {
                case .mapping(let m):
                    for (k, v) in m { walk(v, path.isEmpty ? (k.string ?? "?") : "\(path).\(k.string ?? "?")") }
                case .sequence(let seq) where seq.contains(where: { $0.mapping != nil }):
                    for (i, e) in seq.enumerated() { walk(e, "\(path).\(i)") }
                case .sequence(let seq):
                    out.append((path, "[" + seq.map { $0.string ?? "?" }.joined(separator: ", ") + "]"))
                case .scalar(let s): out.append((path, s.string))
                case .alias: out.append((path, "*alias"))
                }
            }
            walk(root, "")
            return out
        }
        let a = flatten(old), b = flatten(new)
        let aMap = Dictionary(a, uniquingKeysWith: { x, _ in x }), bMap = Dictionary(b, uniquingKeysWith: { x, _ in x })
        var keys = b.map(\.0)
        keys += a.map(\.0).filter { bMap[$0] == nil }
        return keys.compactMap { k in
            let x = aMap[k], y = bMap[k]
            guard x != y else { return nil }
            return "\(k): \(abbreviated(x ?? "(none)", limit: 60)) → \(abbreviated(y ?? "(none)", limit: 60))"
        }
    }
}
