import KDCore
import KDData

/// Multi-rank checks of the Data layer: each rank's batch (indices, labels, augmented pixels) equals its
/// slice of the one-process batch computed locally, and the gathered shares cover the global batch.
enum DataChecks {
    static let all: [MultiRankCheck] = [
        MultiRankCheck("data.rank_batch_is_slice_of_global") { comm in
            // 37 samples, B = 10 (uneven shares for 3 and 4 ranks), last partial batch kept when it fits.
            let ds = try SyntheticDataset(count: 37, classes: 5, height: 12, width: 12, seed: 2)
            let loader = try BatchLoader(dataset: ds, views: 2, policy: .named("strong"), normalization: .cifar10,
                                         seed: 5)
            let dropLast = 37 % 10 < comm.size
            let one = try Sampler(count: 37, globalBatch: 10, dropLast: dropLast, seed: 8)
            let mine = try Sampler(count: 37, globalBatch: 10, dropLast: dropLast, seed: 8, rank: comm.rank,
                                   worldSize: comm.size)
            let per = 12 * 12 * 3 * 2
            for epoch in 0..<2 {
                for step in 0..<one.stepsPerEpoch {
                    let pos = SamplerPosition(epoch: epoch, step: step)
                    let global = loader.trainBatch(one, at: pos), local = loader.trainBatch(mine, at: pos)
                    let share = local.plan.share
                    guard local.plan.globalSamples == global.count,
                          local.plan.counts.reduce(0, +) == global.count else {
                        throw CheckFailure("rank \(comm.rank) step \(step): plan \(local.plan) "
                                           + "for a batch of \(global.count)")
                    }
                    guard local.indices == Array(global.indices[share]),
                          local.labels == Array(global.labels[share]) else {
                        throw CheckFailure("rank \(comm.rank) epoch \(epoch) step \(step): indices \(local.indices) "
                                           + "!= slice \(Array(global.indices[share]))")
                    }
                    let g = global.images.array, l = local.images.array
                    guard l == Array(g[(share.lowerBound * per)..<(share.upperBound * per)]) else {
                        throw CheckFailure("rank \(comm.rank) epoch \(epoch) step \(step): "
                                           + "augmented pixels differ from the one-process slice")
                    }
                    // Gathered labels and indices cover the global batch in order.
                    let counts = local.plan.counts
                    var labels = [Int](repeating: -1, count: global.count)
                    var idx = [Int](repeating: -1, count: global.count)
                    try local.labels.withUnsafeBufferPointer { s in
                        try labels.withUnsafeMutableBufferPointer { r in
                            try comm.allGatherV(s.baseAddress!, counts: counts, into: r.baseAddress!)
                        }
                    }
                    try local.indices.withUnsafeBufferPointer { s in
                        try idx.withUnsafeMutableBufferPointer { r in
                            try comm.allGatherV(s.baseAddress!, counts: counts, into: r.baseAddress!)
                        }
                    }
                    guard labels == global.labels, idx == global.indices else {
                        throw CheckFailure("epoch \(epoch) step \(step): gathered labels \(labels) / indices \(idx) "
                                           + "!= global \(global.labels) / \(global.indices)")
                    }
                }
            }
        },
        MultiRankCheck("data.eval_shards_cover_eval_split") { comm in
            // 13 evaluation samples in batches of 4: the last batch (1 sample) leaves ranks empty at 2+ ranks.
            let ds = try SyntheticDataset(count: 13, classes: 4, height: 8, width: 8, seed: 3, split: 1)
            let loader = try BatchLoader(dataset: ds, views: 2, policy: .named("standard"), normalization: .cifar10,
                                         seed: 1)
            let batches = EvalSharding.globalBatches(count: 13, batch: 4)
            let mine = EvalSharding.rankBatches(count: 13, batch: 4, rank: comm.rank, worldSize: comm.size)
            let per = 8 * 8 * 3
            for (b, range) in batches.enumerated() {
                let global = loader.load(Array(range), plan: BatchPlan(step: b, globalSamples: range.count),
                                         augment: false)
                let local = loader.load(mine[b].indices, plan: mine[b].plan, augment: false)
                let counts = mine[b].plan.counts
                var labels = [Int](repeating: -1, count: range.count)
                var pixels = [Float](repeating: .nan, count: range.count * per)
                let sendLabels = local.labels.isEmpty ? [0] : local.labels
                let sendPixels = local.count == 0 ? [Float(0)] : local.images.array
                try sendLabels.withUnsafeBufferPointer { s in
                    try labels.withUnsafeMutableBufferPointer { r in
                        try comm.allGatherV(s.baseAddress!, counts: counts, into: r.baseAddress!)
                    }
                }
                try sendPixels.withUnsafeBufferPointer { s in
                    try pixels.withUnsafeMutableBufferPointer { r in
                        try comm.allGatherV(s.baseAddress!, counts: counts.map { $0 * per }, into: r.baseAddress!)
                    }
                }
                guard labels == global.labels, pixels == global.images.array else {
                    throw CheckFailure("eval batch \(b): gathered labels \(labels) / pixels differ "
                                       + "from the one-process batch \(global.labels)")
                }
            }
        },
    ]
}
