/// The `fraction` quantile (0...1) of `sorted` samples by the nearest-rank rule: the smallest
/// sample with at least `fraction` of all samples at or below it, i.e. the one at rank
/// ⌈fraction · n⌉ (1-based). It is always one of the samples, never an interpolation, so a p99
/// of fewer than 100 samples is their maximum. 0 when there are none.
///
/// The one rule for every report: the agent's status and the benchmarks agree on a p99.
public func percentile(_ sorted: [Double], _ fraction: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    let rank = Int((fraction * Double(sorted.count)).rounded(.up)) - 1
    return sorted[min(max(rank, 0), sorted.count - 1)]
}
